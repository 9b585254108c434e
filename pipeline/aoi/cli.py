"""``pipeline aoi check`` and ``pipeline aoi new``: the analyst's AOI commands.

``aoi new`` makes an AOI from a bounding box or a polygon file. Where no UNOSAT assessment
covers it (a city hit last week), or with ``--no-labels``, the AOI is map-only: scenes and
damage maps with a trained model, no labels and no training role.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import unicodedata
from pathlib import Path

import pyogrio
import shapely
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from contract.atomic import write_text_atomic
from pipeline.aoi import discover_aoi_files, validate_aoi_file
from pipeline.aoi.fields import AFTER_EARLIEST, DateWindow, parse_window
from pipeline.aoi.validation import NO_UNOSAT_AREA
from pipeline.aoi.writer import aoi_feature, dump_aoi_json
from pipeline.errors import InputFileError, PipelineError, PipelineUsageError
from pipeline.geo import reproject_geometry
from pipeline.reference import find_unosat_area

#: Default before window: the 2021 growing season, before the invasion (the study's rule).
DEFAULT_BEFORE = "2021-05-01/2021-09-30"
#: Default after window: the last days up to today, so "a city hit last week" needs no dates.
DEFAULT_AFTER_DAYS = 30


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
        raise InputFileError("\n".join(errors))
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
    return nums  # type: ignore[return-value]


def _run_check(args: argparse.Namespace) -> int:
    files = [Path(f) for f in args.files] or discover_aoi_files(args.aoi_dir)
    if not files:
        raise PipelineError(f"no AOI files found in {args.aoi_dir}")
    lines, errors, warnings = check_aois(files)
    for line in lines:
        print(line)
    for w in warnings:
        print(f"warning: {w}")
    for e in errors:
        print(f"error: {e}")
    print(f"{len(lines)} of {len(files)} AOI files valid")
    return 1 if errors else 0


def _run_new(args: argparse.Namespace) -> int:
    geometry = (
        polygon_from_file(Path(args.polygon))
        if args.polygon
        else bbox_geometry(parse_bbox(args.bbox))
    )
    path = new_aoi(
        args.name,
        geometry,
        args.before,
        args.after,
        Path(args.aoi_dir),
        args.labels,
        args.unosat_aoi,
        args.no_labels,
        args.force,
    )
    aoi, _, _ = validate_aoi_file(path)
    role = (
        "with labels from " + aoi.labels.path
        if aoi.labels
        else "map-only: no UNOSAT labels, use it with a trained model"
    )
    print(
        f"wrote {path} ({role}; before {aoi.before}, after {aoi.after}); "
        f"check or refine it, then run: pipeline aoi check {path}"
    )
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "aoi",
        help="check or create AOI files",
        description="Validate AOI files or write a new one.",
    )
    aoi_sub = p.add_subparsers(dest="aoi_command", required=True, metavar="ACTION")
    c = aoi_sub.add_parser(
        "check",
        help="validate AOI files and print one line each",
        description="Validate AOI files. Prints name, area, UTM EPSG code "
        "and dates per AOI; exits 1 naming file and field for "
        "every problem.",
    )
    c.add_argument("files", nargs="*", help="AOI files (default: every file in --aoi-dir)")
    c.add_argument("--aoi-dir", default="aois", help="AOI folder (default: %(default)s)")
    c.set_defaults(func=_run_check)
    n = aoi_sub.add_parser(
        "new",
        help="write a new AOI file from a bounding box or a polygon file",
        description="Write <aoi-dir>/<slug>.geojson from a bounding box or a polygon file. "
        "Without a UNOSAT assessment area (or with --no-labels) the AOI is "
        "map-only: it gets damage maps from a trained model, no labels.",
    )
    where = n.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--bbox",
        nargs="+",
        metavar="W S E N",
        help="bounding box in degrees (EPSG:4326): W S E N or W,S,E,N",
    )
    where.add_argument(
        "--polygon",
        metavar="FILE",
        help="vector file (GeoJSON, GeoPackage, shapefile, any CRS) whose polygons form the AOI",
    )
    n.add_argument("name", help="city name, e.g. 'Borodianka'; the slug is derived from it")
    n.add_argument(
        "--before",
        default=DEFAULT_BEFORE,
        help="before date YYYY-MM-DD, month YYYY-MM or window START/END (default: %(default)s)",
    )
    n.add_argument(
        "--after",
        help=f"after date or window (default: the last {DEFAULT_AFTER_DAYS} days up to today)",
    )
    n.add_argument("--labels", help="UNOSAT file path (default: data/unosat/<slug>.zip)")
    n.add_argument(
        "--no-labels",
        action="store_true",
        help="write a map-only AOI even where a UNOSAT area overlaps",
    )
    n.add_argument(
        "--unosat-aoi",
        help=f"UNOSAT area code (default: the one the AOI overlaps, or {NO_UNOSAT_AREA!r})",
    )
    n.add_argument("--aoi-dir", default="aois", help="AOI folder (default: %(default)s)")
    n.add_argument("--force", action="store_true", help="overwrite an existing file")
    n.set_defaults(func=_run_new)
