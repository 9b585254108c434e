"""Per-pixel targets from what the labels really are: points, or a change map.

UNOSAT gives one point per damaged structure, placed to about 10-30 m (1-3 px). Burning a whole
patch, or a wide disc, as damage teaches a pixel model that the ground beside a building is
damaged; calling the ground near a site negative teaches it that the damage UNOSAT saw is not
there. So, on the grid of the after scene:

- 1 (damage): pixels within ``disc_px`` of a site whose first assessment in a target class
  (default destroyed and severe damage) is dated on or before the after scene;
- 255 (ignore): pixels within ``ring_px`` of every site of any class and date (moderate and
  possible damage, sites damaged later, "No Visible Damage" sites), ground outside the AOI's
  assessment area, and pixels without a valid observation (cloud, nodata);
- 0 (negative): the rest of the assessed ground.

A change map (OSCD's, written by ``pipeline oscd``) already is a per-pixel target: it is taken
as it is, after checking it holds only 1, 0 and 255 (:func:`check_target_raster`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from contract.atomic import output_set
from contract.labels import DAMAGE, NO_DAMAGE, UNKNOWN, VALUES_TEXT
from pipeline.aoi import AOI
from pipeline.errors import InputFileError, PipelineUsageError
from pipeline.grid import Grid
from pipeline.labels.rasterise import burn_points, known_labels, read_aoi_sites
from pipeline.labels.unosat_values import ClassMap
from pipeline.rasters import write_cog
from pipeline.tiles import DEFAULT_DISC_PX, DEFAULT_RING_PX, DEFAULT_TARGET_CLASSES

log = logging.getLogger(__name__)
TARGET_VALUES = (NO_DAMAGE, DAMAGE, UNKNOWN)


@dataclass(frozen=True)
class TargetOptions:
    """How sites become pixels: which classes are positive, disc and ring radii in pixels."""

    classes: Sequence[int] = DEFAULT_TARGET_CLASSES
    disc_px: float = DEFAULT_DISC_PX
    ring_px: float = DEFAULT_RING_PX
    after_date: dt.date | None = None
    class_map: ClassMap | None = None

    def check(self) -> None:
        if self.disc_px < 0 or self.ring_px < self.disc_px:
            raise PipelineUsageError(
                f"--disc-px must be >= 0 and --ring-px at least --disc-px, got "
                f"{self.disc_px} and {self.ring_px}"
            )


def near_sites(grid: Grid, xs: np.ndarray, ys: np.ndarray, radius_px: float) -> np.ndarray:
    """(H, W) bool: pixels whose centre lies within ``radius_px`` of a point, or that hold one.

    The same geometry as the label step's burn (:func:`pipeline.labels.rasterise.burn_points`),
    so a disc of 1 px here is the label raster's default 10 m radius.
    """
    mask = np.zeros(grid.shape, dtype=np.uint8)
    if len(xs):
        burn_points(mask, xs, ys, grid, radius_px * grid.resolution)
    return mask == DAMAGE


def point_targets(
    known: np.ndarray, grid: Grid, sites_xy: np.ndarray, positive: np.ndarray, opts: TargetOptions
) -> np.ndarray:
    """(H, W) uint8 targets from all site points (n, 2) and which of them are positive.

    A positive disc wins over the ring of a neighbouring site: the disc is where the damage is.
    """
    xs, ys = sites_xy[:, 0], sites_xy[:, 1]
    ring = near_sites(grid, xs, ys, opts.ring_px)
    disc = near_sites(grid, xs[positive], ys[positive], opts.disc_px)
    target = np.where(ring, UNKNOWN, NO_DAMAGE).astype(np.uint8)
    target[disc] = DAMAGE
    target[~known] = UNKNOWN
    return target


def make_point_targets(
    aoi: AOI,
    grid_path: str | Path,
    unosat_path: str | Path,
    out: str | Path,
    opts: TargetOptions = TargetOptions(),
) -> dict[str, Any]:
    """Write the target raster of one AOI from its UNOSAT points; return the summary."""
    grid_path, unosat_path, out = Path(grid_path), Path(unosat_path), Path(out)
    opts.check()
    grid, after, _, sites = read_aoi_sites(
        aoi, grid_path, unosat_path, opts.classes, opts.after_date, opts.class_map
    )
    frame = sites.frame.to_crs(grid.crs)
    xy = np.column_stack([frame.geometry.x.to_numpy(), frame.geometry.y.to_numpy()])
    first = frame["first_date"].to_numpy(dtype="datetime64[D]")
    dated = ~np.isnat(first)
    positive = dated & (first <= np.datetime64(after))
    known = known_labels(aoi, grid, grid_path) == NO_DAMAGE
    target = point_targets(known, grid, xy, positive, opts)
    summary = _summary(aoi, unosat_path, grid_path, after, opts, positive, dated, target)
    summary["sites_read"] = int(len(frame))
    if not (target != UNKNOWN).any():
        raise InputFileError(
            f"{unosat_path}: every pixel of {aoi.slug}'s targets on {grid_path} is ignored "
            "(no assessed, observed ground away from the sites); check the AOI's assessment "
            "area and the scene's valid pixels"
        )
    if not summary["damage_pixels"]:
        log.warning(
            "%s: no damage pixel in the targets (no site of classes %s dated on or before "
            "%s on the grid)",
            aoi.slug,
            list(opts.classes),
            after,
        )
    _write(out, target, grid, summary, aoi, unosat_path)
    return summary


def _summary(
    aoi: AOI,
    unosat_path: Path,
    grid_path: Path,
    after: dt.date,
    opts: TargetOptions,
    positive: np.ndarray,
    dated: np.ndarray,
    target: np.ndarray,
) -> dict[str, Any]:
    return {
        "aoi": aoi.slug,
        "unosat_file": str(unosat_path),
        "grid": str(grid_path),
        "after_date": after.isoformat(),
        "target_classes": [int(c) for c in opts.classes],
        "disc_px": opts.disc_px,
        "ring_px": opts.ring_px,
        "positive_sites": int(positive.sum()),
        "excluded_by_date": int((dated & ~positive).sum()),
        "damage_pixels": int((target == DAMAGE).sum()),
        "negative_pixels": int((target == NO_DAMAGE).sum()),
        "ignored_pixels": int((target == UNKNOWN).sum()),
    }


def _write(
    out: Path,
    target: np.ndarray,
    grid: Grid,
    summary: dict[str, Any],
    aoi: AOI,
    unosat_path: Path,
) -> None:
    tags = {
        "AOI": aoi.slug,
        "AFTER_DATE": summary["after_date"],
        "TARGET_CLASSES": ",".join(map(str, summary["target_classes"])),
        "DISC_PX": str(summary["disc_px"]),
        "RING_PX": str(summary["ring_px"]),
        "VALUES": VALUES_TEXT,
        "UNOSAT_FILE": unosat_path.name,
    }
    with output_set() as outputs:  # the COG and its JSON, both or neither
        write_cog(
            outputs.path(out),
            target,
            grid,
            nodata=UNKNOWN,
            descriptions=["damage_target"],
            tags=tags,
            resampling="NEAREST",
        )
        text = json.dumps(summary, indent=2) + "\n"
        outputs.path(out.with_suffix(".json")).write_text(text, encoding="utf-8")
    log.info(
        "%s: %d positive sites, %d damage, %d negative and %d ignored pixels -> %s",
        aoi.slug,
        summary["positive_sites"],
        summary["damage_pixels"],
        summary["negative_pixels"],
        summary["ignored_pixels"],
        out,
    )


def check_target_raster(path: str | Path) -> None:
    """Refuse a target raster (label or change map) with codes other than 1, 0 and 255.

    A change map saved as 0/255 (a common image convention) or with a class code would
    otherwise be read as "ignore everything" or as a silent positive.
    """
    path = Path(path)
    with rasterio.open(path) as src:
        if src.count != 1:
            raise InputFileError(f"{path}: a target raster has one band, this one has {src.count}")
        found: set[int] = set()
        for _, window in src.block_windows(1):
            found.update(int(v) for v in np.unique(src.read(1, window=window)))
    bad = sorted(found - set(TARGET_VALUES))
    if bad:
        raise InputFileError(
            f"{path}: values {bad[:8]} in a target raster; expected {VALUES_TEXT} (write change "
            "maps with 'pipeline oscd' or UNOSAT targets with 'pipeline targets')"
        )
