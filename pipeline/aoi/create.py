"""Making AOI files: from a bounding box or a polygon file, checked before they are kept.

``pipeline aoi new`` (:mod:`.cli`) calls :func:`new_aoi`. Where no UNOSAT assessment covers the
area (a city hit last week), or with ``no_labels``, the AOI is map-only: scenes and damage maps
with a trained model, no labels and no training role.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from pathlib import Path

import pyogrio
import shapely
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from contract.atomic import write_text_atomic
from pipeline.aoi.fields import (
    AFTER_EARLIEST,
    DEFAULT_AFTER_DAYS,
    DEFAULT_BEFORE,
    NO_UNOSAT_AREA,
    DateWindow,
    parse_window,
)
from pipeline.aoi.model import one_line, validate_aoi_file
from pipeline.aoi.writer import aoi_feature, dump_aoi_json
from pipeline.errors import InputFileError, PipelineUsageError
from pipeline.geo import reproject_geometry
from pipeline.reference import find_unosat_area


def check_aois(files: list[Path]) -> tuple[list[str], list[str], list[str]]:
    """Validate AOI files; return (summary lines, errors, warnings)."""
    lines, errors, warnings = [], [], []
    for path in files:
        aoi, errs, warns = validate_aoi_file(path)
        errors += errs
        warnings += warns
        if aoi is not None:
            role = "" if aoi.has_labels else "  map-only (no labels)"
            lines.append(
                f"{aoi.slug:<14} {aoi.name:<22} {aoi.area_km2():8.2f} km2  "
                f"EPSG:{aoi.utm_epsg}  before {aoi.before}  after {aoi.after}  "
                f"{aoi.unosat_aoi}{role}"
            )
    return lines, errors, warnings


def slugify(name: str) -> str:
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def default_after(today: dt.date | None = None) -> str:
    """The last :data:`DEFAULT_AFTER_DAYS` days up to ``today`` (never before March 2022)."""
    end = today or dt.date.today()
    start = max(end - dt.timedelta(days=DEFAULT_AFTER_DAYS), AFTER_EARLIEST)
    return str(DateWindow(start, end))


def bbox_geometry(bbox: tuple[float, float, float, float]) -> BaseGeometry:
    west, south, east, north = bbox
    if not (west < east and south < north):
        raise PipelineUsageError(f"--bbox must be W S E N with W < E and S < N, got {bbox}")
    return box(west, south, east, north)


def polygon_from_file(path: Path) -> BaseGeometry:
    """The union of a vector file's polygons, in EPSG:4326 (any format and CRS GDAL reads)."""
    try:
        df = pyogrio.read_dataframe(path)
    except Exception as exc:  # pyogrio raises DataSourceError, DataLayerError, OSError, ...
        raise InputFileError(f"{path}: cannot read as a vector file ({exc})") from exc
    polys = [g for g in df.geometry if g is not None and g.geom_type.endswith("Polygon")]
    if not polys:
        raise InputFileError(
            f"{path}: no polygon in the file (found "
            f"{sorted({str(g.geom_type) for g in df.geometry if g})})"
        )
    if df.crs is None:
        raise InputFileError(f"{path}: the file has no CRS; save it with one (EPSG:4326)")
    return reproject_geometry(shapely.union_all(polys), df.crs, "EPSG:4326")


def new_aoi(
    name: str,
    geometry: BaseGeometry,
    before: str = DEFAULT_BEFORE,
    after: str | None = None,
    out_dir: Path = Path("aois"),
    labels: str | None = None,
    unosat_aoi: str | None = None,
    no_labels: bool = False,
    force: bool = False,
) -> Path:
    """Write ``out_dir/<slug>.geojson``; validate it before returning, remove it if invalid."""
    slug = slugify(name)
    if not slug:
        raise PipelineUsageError(f"cannot make a file name from {name!r}")
    path = out_dir / f"{slug}.geojson"
    if path.exists() and not force:
        raise PipelineUsageError(f"{path} already exists (use --force to overwrite)")
    try:
        windows = parse_window(before), parse_window(after or default_after())
    except ValueError as exc:
        raise PipelineUsageError(f"--before/--after: {exc}") from exc
    code = unosat_aoi or find_unosat_area(geometry) or NO_UNOSAT_AREA
    label_source = (
        None
        if no_labels or code == NO_UNOSAT_AREA
        else {"path": labels or f"data/unosat/{slug}.zip"}
    )
    doc = aoi_feature(
        name=name,
        slug=slug,
        geometry=geometry,
        before=windows[0],
        after=windows[1],
        unosat_aoi=code,
        labels=label_source,
    )
    write_text_atomic(path, dump_aoi_json(doc))
    _, errors, _ = validate_aoi_file(path)
    if errors:
        path.unlink()
        raise InputFileError(one_line(path, errors))
    return path


def parse_bbox(values: list[str]) -> tuple[float, float, float, float]:
    """``W S E N`` as four values or one ``W,S,E,N`` string."""
    parts = values[0].split(",") if len(values) == 1 else values
    try:
        nums = tuple(float(v) for v in parts)
    except ValueError as exc:
        raise PipelineUsageError(f"--bbox: not numbers: {values}") from exc
    if len(nums) != 4:
        raise PipelineUsageError(f"--bbox needs W S E N (4 numbers), got {len(nums)}")
    return nums[0], nums[1], nums[2], nums[3]
