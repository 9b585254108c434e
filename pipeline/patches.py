"""Aligned patch pairs on a regular grid, cut window by window.

Before, after and label rasters of one AOI share one grid. Patches of ``size`` px are taken every
``stride`` px; a patch is dropped when any pixel has no observation in either epoch or any label
is unknown (255), and is labelled damaged when at least ``min_damage_pixels`` damage pixels fall
in it. The rasters are read in horizontal strips sized to a memory budget and kept patches are
spooled to disk, so scenes larger than memory are cut with bounded memory.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.windows import Window
from tqdm import tqdm

from contract.atomic import output_set, storage_problem
from contract.bands import BANDS
from contract.cli import bar_disabled
from contract.labels import DAMAGE, UNKNOWN
from contract.npz import SpooledArray, save_npz
from contract.npz_keys import PROCESSING_LEVEL
from contract.scene_scale import check_scene_scale
from contract.windows import (
    gather_windows,
    nodata_pixels,
    plan_strips,
    rows_per_strip,
    window_any,
    window_positions,
    window_sum,
)
from pipeline.defaults import DEFAULT_MEMORY_MB, DEFAULT_PATCH_SIZE
from pipeline.errors import PipelineError
from pipeline.grid import Grid, require_same_grid
from pipeline.rasters import scene_level

log = logging.getLogger(__name__)


@dataclass
class PatchCounts:
    """What happened to every candidate window."""

    candidates: int = 0
    damaged: int = 0
    no_damage: int = 0
    dropped_nodata: int = 0
    dropped_unknown: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "candidates": self.candidates,
            "kept": self.damaged + self.no_damage,
            "damaged": self.damaged,
            "no_damage": self.no_damage,
            "dropped_nodata": self.dropped_nodata,
            "dropped_unknown": self.dropped_unknown,
        }


#: bytes per pixel of one strip: two uint16 scenes and the labels, plus working copies
STRIP_BYTES_PER_PX = (2 * len(BANDS) * 2 + 1) * 3


def cut_patches(
    aoi_slug: str,
    before: str | Path,
    after: str | Path,
    labels: str | Path,
    out: str | Path,
    size: int = DEFAULT_PATCH_SIZE,
    stride: int = DEFAULT_PATCH_SIZE,
    min_damage_pixels: int = 1,
    memory_mb: float = DEFAULT_MEMORY_MB,
    progress: bool = True,
) -> PatchCounts:
    """Cut aligned patch pairs and write them with their positions to ``out`` (NPZ)."""
    if size < 1 or stride < 1 or min_damage_pixels < 1:
        raise PipelineError("--size, --stride and --min-damage-pixels must be positive")
    rasters = {"before": before, "after": after, "labels": labels}
    grid = require_same_grid(rasters)
    for scene in (before, after):
        check_scene_scale(scene)
    if size > grid.height or size > grid.width:
        raise PipelineError(
            f"patch size {size} px is larger than the scene {before} "
            f"({grid.width} x {grid.height} px)"
        )
    level = scene_level(Path(before), Path(after))
    cut = _Cut(aoi_slug, size, stride, min_damage_pixels, memory_mb, progress)
    counts = PatchCounts(
        candidates=len(window_positions(grid.height, size, stride))
        * len(window_positions(grid.width, size, stride))
    )
    out = Path(out)
    summary = {
        "aoi": aoi_slug,
        "size": size,
        "stride": stride,
        "min_damage_pixels": min_damage_pixels,
    }
    with tempfile.TemporaryDirectory(
        dir=out.parent if out.parent.exists() else None, prefix=".patches-"
    ) as spool:
        kept = _spool_patches(cut, rasters, grid, Path(spool), counts, out)
        summary.update(counts.as_dict())
        arrays = _patch_arrays(cut, kept, grid, Path(spool), summary, level)
        with output_set() as outputs:  # the NPZ and its JSON, both or neither
            save_npz(outputs.path(out), arrays)
            text = json.dumps(summary, indent=2) + "\n"
            outputs.path(out.with_suffix(".json")).write_text(text, encoding="utf-8")
    log.info(
        "%s: %d candidate patches: %d damaged, %d no damage, dropped %d for nodata and %d "
        "for unknown labels -> %s",
        *(aoi_slug, counts.candidates, counts.damaged, counts.no_damage),
        *(counts.dropped_nodata, counts.dropped_unknown, out),
    )
    return counts


@dataclass(frozen=True)
class _Cut:
    """How the patches of one AOI are cut."""

    aoi: str
    size: int
    stride: int
    min_damage_pixels: int
    memory_mb: float
    progress: bool


@dataclass
class _Kept:
    """Origins and damage pixel counts of the kept windows, in the order spooled."""

    rows: np.ndarray
    cols: np.ndarray
    damage: np.ndarray


def _spool_patches(
    cut: _Cut,
    rasters: dict[str, str | Path],
    grid: Grid,
    spool: Path,
    counts: PatchCounts,
    out: Path,
) -> _Kept:
    """Read the rasters strip by strip; spool kept windows to ``before.bin``/``after.bin``."""
    rpos = window_positions(grid.height, cut.size, cut.stride)
    cpos = window_positions(grid.width, cut.size, cut.stride)
    per_strip = rows_per_strip(
        grid.width, cut.size, cut.stride, cut.memory_mb, STRIP_BYTES_PER_PX, reserve_overlap=True
    )
    rows, cols, dmg = [], [], []
    # GDAL's block cache defaults to 5 % of RAM; keep it inside the budget too
    with (
        rasterio.Env(GDAL_CACHEMAX=max(8, int(cut.memory_mb // 4))),
        rasterio.open(rasters["before"]) as sb,
        rasterio.open(rasters["after"]) as sa,
        rasterio.open(rasters["labels"]) as sl,
        open(spool / "before.bin", "wb") as fb,
        open(spool / "after.bin", "wb") as fa,
        tqdm(
            total=len(rpos), desc=f"{cut.aoi} patches", unit="row",
            disable=bar_disabled(cut.progress),
        ) as bar,
    ):  # fmt: skip
        for strip in plan_strips(rpos, cut.size, per_strip):
            win = Window(0, strip.top, grid.width, strip.height)
            r, c, d, pb, pa = _cut_strip(
                sb.read(window=win),
                sa.read(window=win),
                sl.read(1, window=win),
                *(strip.local_rows, cpos, cut.size, cut.min_damage_pixels, counts),
            )
            rows.append(r + strip.top)
            cols.append(c)
            dmg.append(d)
            _spool(pb, fb, out)
            _spool(pa, fa, out)
            bar.update(strip.last - strip.first)
    return _Kept(
        np.concatenate(rows).astype(np.int32),
        np.concatenate(cols).astype(np.int32),
        np.concatenate(dmg).astype(np.int32),
    )


def _spool(windows: np.ndarray, fh: Any, out: Path) -> None:
    """Append windows to a spool file beside ``out``; a full disk is named as such."""
    try:
        windows.tofile(fh)
    except OSError as exc:  # numpy says "N requested and M written", without an errno
        raise (storage_problem(out.parent, exc) or exc) from exc


def _patch_arrays(
    cut: _Cut,
    kept: _Kept,
    grid: Grid,
    spool: Path,
    summary: dict[str, Any],
    level: str | None,
) -> dict[str, np.ndarray | SpooledArray]:
    """The patch file's arrays: the spooled windows, labels, positions and provenance."""
    shape = (len(kept.rows), len(BANDS), cut.size, cut.size)
    t = grid.transform
    x = t.c + (kept.cols + cut.size / 2) * t.a
    y = t.f + (kept.rows + cut.size / 2) * t.e
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(x, y)
    arrays: dict[str, np.ndarray | SpooledArray] = {
        "before": SpooledArray(spool / "before.bin", np.dtype(np.uint16), shape),
        "after": SpooledArray(spool / "after.bin", np.dtype(np.uint16), shape),
        "label": (kept.damage >= cut.min_damage_pixels).astype(np.uint8),
        "damage_pixels": kept.damage,
        "row": kept.rows,
        "col": kept.cols,
        "x": x,
        "y": y,
        "lon": np.asarray(lon),
        "lat": np.asarray(lat),
        "crs": np.array(grid.crs.to_wkt()),
        "transform": np.array(list(t)[:6]),
        "aoi": np.array(cut.aoi),
        "bands": np.array(BANDS),
        "summary": np.array(json.dumps(summary)),
    }
    if level is not None:  # the scenes' processing level, carried to the dataset
        arrays[PROCESSING_LEVEL] = np.array(level)
    return arrays


def _cut_strip(
    b: np.ndarray,
    a: np.ndarray,
    lab: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    size: int,
    min_damage: int,
    counts: PatchCounts,
):
    """Patches of one strip: (rows, cols, damage pixels, before, after) of the kept ones.

    ``rows`` are window origins relative to the strip, ``cols`` across the whole width.
    """
    nodata = window_any(nodata_pixels(b, a), rows, cols, size)
    unknown = window_any(lab == UNKNOWN, rows, cols, size) & ~nodata
    damage = window_sum(lab == DAMAGE, rows, cols, size)
    keep = ~nodata & ~unknown
    counts.dropped_nodata += int(nodata.sum())
    counts.dropped_unknown += int(unknown.sum())
    is_damaged = keep & (damage >= min_damage)
    counts.damaged += int(is_damaged.sum())
    counts.no_damage += int((keep & ~is_damaged).sum())
    pr, pc = np.nonzero(keep)
    return (
        rows[pr],
        cols[pc],
        damage[pr, pc],
        gather_windows(b, rows[pr], cols[pc], size),
        gather_windows(a, rows[pr], cols[pc], size),
    )
