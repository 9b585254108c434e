"""Label rasters from UNOSAT damage sites, on exactly the grid of a scene.

1 = damage: a site whose first assessment in a damage class is dated on or before the after
scene's acquisition date burns the pixels whose centres lie within ``radius_m`` of it (and always
the pixel holding it). 0 = assessed and not damaged. 255 = unknown: outside the UNOSAT
assessment area, outside the AOI, or no valid observation in the scene. Unassessed ground is
never called undamaged.

UNOSAT's "No Visible Damage" sites (class 6) are hard negatives for later steps: every site
assessed NVD and not damaged (in any damage class) on or before the after date, on the grid and
in the AOI, is written to ``<out stem>_nvd.gpkg`` (layer ``nvd_sites``, points in the grid CRS
with ``site_id``, ``last_nvd_date``, ``damaged_later``, ``row``, ``col`` and the ``label`` of
that pixel), always written, empty when there are none.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyogrio
import rasterio
from rasterio.features import geometry_mask

from contract.atomic import atomic_path, output_set
from contract.gpkg import pinned_ogr_time
from contract.labels import DAMAGE, NO_DAMAGE, UNKNOWN, VALUES_TEXT
from pipeline.aoi import AOI
from pipeline.errors import InputFileError, PipelineUsageError
from pipeline.geo import reproject_geometry
from pipeline.grid import Grid, grid_of
from pipeline.labels import DEFAULT_RADIUS_M
from pipeline.labels.unosat import DEFAULT_DAMAGE_CLASSES, Sites, read_sites
from pipeline.labels.unosat_values import CLASS_NAMES, ClassMap, class_map_from
from pipeline.rasters import write_cog
from pipeline.reference import unosat_area

log = logging.getLogger(__name__)

NVD_LAYER = "nvd_sites"


def after_date_of(scene: Path) -> dt.date:
    """The after scene's acquisition date from its tags (the latest, for a mosaic)."""
    with rasterio.open(scene) as src:
        value = src.tags().get("ACQUISITION_DATE")
    if not value:
        raise InputFileError(f"{scene}: no ACQUISITION_DATE tag; pass --after-date YYYY-MM-DD")
    return max(dt.date.fromisoformat(v.strip()[:10]) for v in value.split(","))


def assessed_area(aoi: AOI):
    """The AOI polygon intersected with its UNOSAT assessment area (EPSG:4326)."""
    area = aoi.assessment_area if aoi.assessment_area is not None else unosat_area(aoi.unosat_aoi)
    return aoi.geometry.intersection(area)


def check_assessed(aoi: AOI) -> None:
    """Refuse an AOI where UNOSAT assessed nothing: every label would be unknown, and a raster
    of nothing but 255 would pass silently into the dataset as an AOI without patches."""
    where = aoi.source_file or aoi.slug
    if aoi.assessment_area is None and not aoi.has_unosat_area:
        raise InputFileError(
            f"{where}: AOI {aoi.slug} has labels but no assessment area "
            f"(unosat_aoi is {aoi.unosat_aoi!r} and no assessment_area): "
            "ground outside an assessment is unknown, so no label could be "
            "known; set unosat_aoi or assessment_area"
        )
    if assessed_area(aoi).is_empty:
        raise InputFileError(
            f"{where}: AOI {aoi.slug} lies entirely outside its assessment "
            "area: every label would be unknown; check the polygon, "
            "unosat_aoi or assessment_area"
        )


def burn_points(
    labels: np.ndarray, xs: np.ndarray, ys: np.ndarray, grid: Grid, radius_m: float
) -> None:
    """Set ``DAMAGE`` at pixels whose centre is within ``radius_m`` of a point, and at the
    pixel containing it, where the label is known."""
    res = grid.resolution
    k = int(math.ceil(radius_m / res)) + 1
    offs = np.arange(-k, k + 1)
    col_f = (xs - grid.transform.c) / res
    row_f = (grid.transform.f - ys) / res
    col0, row0 = np.floor(col_f).astype(int), np.floor(row_f).astype(int)
    rr = row0[:, None, None] + offs[None, :, None]
    cc = col0[:, None, None] + offs[None, None, :]
    rr, cc = np.broadcast_arrays(rr, cc)
    cx = grid.transform.c + (cc + 0.5) * res
    cy = grid.transform.f - (rr + 0.5) * res
    dist = np.hypot(cx - xs[:, None, None], cy - ys[:, None, None])
    hit = (dist <= radius_m + 1e-9) | ((rr == row0[:, None, None]) & (cc == col0[:, None, None]))
    hit &= (rr >= 0) & (rr < grid.height) & (cc >= 0) & (cc < grid.width)
    r, c = rr[hit], cc[hit]
    known = labels[r, c] != UNKNOWN
    labels[r[known], c[known]] = DAMAGE


def make_labels(
    aoi: AOI,
    grid_path: str | Path,
    unosat_path: str | Path,
    out: str | Path,
    classes: Sequence[int] = DEFAULT_DAMAGE_CLASSES,
    radius_m: float = DEFAULT_RADIUS_M,
    after_date: dt.date | None = None,
    class_map: ClassMap | None = None,
) -> dict[str, Any]:
    """Rasterise the UNOSAT file onto the grid of ``grid_path``; return the summary.

    ``class_map`` (from ``--class-map``) extends and overrides the AOI file's
    ``labels.class_map``.
    """
    grid_path, unosat_path, out = Path(grid_path), Path(unosat_path), Path(out)
    if radius_m < 0:
        raise PipelineUsageError(f"--radius-m must be >= 0, got {radius_m}")
    grid, after, mapping, sites = read_aoi_sites(
        aoi, grid_path, unosat_path, classes, after_date, class_map
    )
    frame = sites.frame.to_crs(grid.crs)
    xs, ys = frame.geometry.x.to_numpy(), frame.geometry.y.to_numpy()
    in_aoi = _sites_in_aoi(frame, xs, ys, grid, aoi, unosat_path, grid_path)
    labels = known_labels(aoi, grid, grid_path)
    first = frame["first_date"].to_numpy(dtype="datetime64[D]")
    damaged = ~np.isnat(first)
    positive = damaged & (first <= np.datetime64(after)) & in_aoi
    late = damaged & (first > np.datetime64(after)) & in_aoi
    burn_points(labels, xs[positive], ys[positive], grid, radius_m)
    summary: dict[str, Any] = {
        "aoi": aoi.slug,
        "unosat_file": str(unosat_path),
        "layer": sites.layer,
        "date_columns": sites.date_columns,
        "class_columns": sites.class_columns,
        "grid": str(grid_path),
        "after_date": after.isoformat(),
        "damage_classes": list(map(int, classes)),
        "radius_m": radius_m,
        "sites_read": int(len(frame)),
        "sites_per_class": _per_class(frame),
        "positives_used": int(positive.sum()),
        "excluded_by_date": int(late.sum()),
        "damaged_undated": int((frame["damaged_undated"].to_numpy() & in_aoi).sum()),
        "outside_aoi": int((~in_aoi).sum()),
        "damage_pixels": int((labels == DAMAGE).sum()),
        "no_damage_pixels": int((labels == NO_DAMAGE).sum()),
        "unknown_pixels": int((labels == UNKNOWN).sum()),
    }
    _refuse_all_undated(summary, unosat_path)
    nvd = nvd_sites(frame, in_aoi, after, labels, grid)
    summary.update(
        {"class_map": mapping, "nvd_sites": int(len(nvd)), "nvd_file": nvd_path(out).name}
    )
    _write_labels(out, labels, grid, summary, nvd, unosat_path)
    return summary


def _refuse_all_undated(summary: dict[str, Any], unosat_path: Path) -> None:
    """No positive because every damaged site lacks a date: a misread file, not an intact AOI."""
    if summary["positives_used"] == 0 and summary["damaged_undated"] > 0:
        raise InputFileError(
            f"{unosat_path}: no damage site to label in {summary['aoi']}: "
            f"{summary['damaged_undated']} damaged sites in the AOI have no date, so none can "
            "be placed before the after scene; check the date columns of the UNOSAT file"
        )


def read_aoi_sites(
    aoi: AOI,
    grid_path: Path,
    unosat_path: Path,
    classes: Sequence[int],
    after_date: dt.date | None,
    class_map: ClassMap | None,
) -> tuple[Grid, dt.date, ClassMap, Sites]:
    """An assessed AOI's grid, after date, class map and damage sites, or a refusal.

    The first step of every raster made from the sites: the label raster here, and the pixel
    model's targets (:mod:`pipeline.tiles.targets`).
    """
    if aoi.labels is None:
        raise InputFileError(
            f"{aoi.source_file or aoi.slug}: AOI {aoi.slug} is map-only (no "
            "labels property): it has no UNOSAT labels to rasterise; add "
            "labels.path to the AOI file, or use it only for damage maps"
        )
    check_assessed(aoi)
    grid = grid_of(grid_path)
    after = after_date or after_date_of(grid_path)
    mapping = {
        **class_map_from(aoi.labels.class_map, f"{aoi.source_file or aoi.slug}: labels"),
        **(class_map or {}),
    }
    return grid, after, mapping, read_sites(unosat_path, aoi.labels.fields, classes, mapping)


def _sites_in_aoi(
    frame: gpd.GeoDataFrame,
    xs: np.ndarray,
    ys: np.ndarray,
    grid: Grid,
    aoi: AOI,
    unosat_path: Path,
    grid_path: Path,
) -> np.ndarray:
    """Which sites lie on the grid and in the AOI; none on the grid is the wrong file."""
    left, bottom, right, top = grid.bounds
    on_grid = (xs >= left) & (xs < right) & (ys > bottom) & (ys <= top)
    if not on_grid.any():
        raise InputFileError(
            f"{unosat_path}: none of its {len(frame)} sites falls on the grid "
            f"of {grid_path} ({grid.describe()}); wrong file for AOI {aoi.slug}?"
        )
    aoi_grid_geom = reproject_geometry(aoi.geometry, "EPSG:4326", grid.crs)
    return frame.geometry.within(aoi_grid_geom).to_numpy() & on_grid


def known_labels(aoi: AOI, grid: Grid, grid_path: Path) -> np.ndarray:
    """(H, W) uint8: 0 on assessed ground the scene observes, 255 elsewhere (unknown)."""
    known_geom = reproject_geometry(assessed_area(aoi), "EPSG:4326", grid.crs)
    labels = np.full(grid.shape, UNKNOWN, dtype=np.uint8)
    if not known_geom.is_empty:
        inside = geometry_mask(
            [known_geom], out_shape=grid.shape, transform=grid.transform, invert=True
        )
        labels[inside] = NO_DAMAGE
    with rasterio.open(grid_path) as src:
        for _, window in src.block_windows(1):
            valid = src.dataset_mask(window=window) > 0
            r0, c0 = int(window.row_off), int(window.col_off)
            block = labels[r0 : r0 + int(window.height), c0 : c0 + int(window.width)]
            block[~valid] = UNKNOWN
    return labels


def _per_class(frame: gpd.GeoDataFrame) -> dict[str, int]:
    """Sites per class name (the first damage class, else the last class assessed)."""
    per_class: Counter[str] = Counter()
    for fc, lc in zip(frame["first_class"], frame["last_class"], strict=True):
        code = fc if not np.isnan(fc) else lc
        per_class[
            CLASS_NAMES.get(int(code), str(int(code))) if not np.isnan(code) else "not assessed"
        ] += 1
    return dict(sorted(per_class.items()))


def _write_labels(
    out: Path,
    labels: np.ndarray,
    grid: Grid,
    summary: dict[str, Any],
    nvd: gpd.GeoDataFrame,
    unosat_path: Path,
) -> None:
    """The NVD sites, the label COG and its JSON, published together or not at all."""
    tags = {
        "AOI": summary["aoi"],
        "AFTER_DATE": summary["after_date"],
        "DAMAGE_CLASSES": ",".join(map(str, summary["damage_classes"])),
        "RADIUS_M": str(summary["radius_m"]),
        "VALUES": VALUES_TEXT,
        "UNOSAT_FILE": unosat_path.name,
    }
    with output_set() as outputs:
        write_nvd(nvd, outputs.path(nvd_path(out)))
        write_cog(
            outputs.path(out),
            labels,
            grid,
            nodata=UNKNOWN,
            descriptions=["damage_label"],
            tags=tags,
            resampling="NEAREST",
        )
        text = json.dumps(summary, indent=2) + "\n"
        outputs.path(out.with_suffix(".json")).write_text(text, encoding="utf-8")
    log.info(
        "%s: %d of %d sites positive (%d first damaged after %s, %d outside the AOI); "
        "%d damage pixels -> %s",
        summary["aoi"],
        summary["positives_used"],
        summary["sites_read"],
        summary["excluded_by_date"],
        summary["after_date"],
        summary["outside_aoi"],
        summary["damage_pixels"],
        out,
    )


def nvd_path(out: str | Path) -> Path:
    """``labels.tif`` -> ``labels_nvd.gpkg``: the "No Visible Damage" sites beside a label file."""
    out = Path(out)
    return out.with_name(f"{out.stem}_nvd.gpkg")


def nvd_sites(
    frame: gpd.GeoDataFrame, in_aoi: np.ndarray, after: dt.date, labels: np.ndarray, grid: Grid
) -> gpd.GeoDataFrame:
    """Sites assessed NVD and not damaged by the after date, on the grid and in the AOI."""
    after64 = np.datetime64(after)
    first_any = frame["first_any_damage"].to_numpy(dtype="datetime64[D]")
    damaged_by_after = ~np.isnat(first_any) & (first_any <= after64)
    keep = (
        ~np.isnat(frame["last_nvd_date"].to_numpy(dtype="datetime64[D]"))
        & ~damaged_by_after
        & in_aoi
    )
    sites = frame[keep]
    xs, ys = sites.geometry.x.to_numpy(), sites.geometry.y.to_numpy()
    rows = np.floor((grid.transform.f - ys) / grid.resolution).astype(np.int32)
    cols = np.floor((xs - grid.transform.c) / grid.resolution).astype(np.int32)
    later = first_any[keep]
    return gpd.GeoDataFrame(
        {
            "site_id": sites["site_id"].astype(str).to_numpy(),
            "last_nvd_date": [
                str(d) for d in sites["last_nvd_date"].to_numpy(dtype="datetime64[D]")
            ],
            "damaged_later": (~np.isnat(later)).astype(np.int32),
            "row": rows,
            "col": cols,
            "label": labels[rows, cols].astype(np.int32),
        },
        geometry=sites.geometry.to_numpy(),
        crs=grid.crs,
    )


def write_nvd(nvd: gpd.GeoDataFrame, path: Path) -> None:
    """Write the NVD sites atomically (an empty layer when there are none)."""
    with atomic_path(path) as tmp, pinned_ogr_time():  # same sites, same bytes
        pyogrio.write_dataframe(nvd, tmp, layer=NVD_LAYER, driver="GPKG", geometry_type="Point")
