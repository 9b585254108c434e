"""Aligned before/after/target tiles of one AOI, the pixel model's samples.

Tiles of ``size`` px are cut side by side (stride = size, so no two tiles share ground and a
tile lies in one ground block whenever the block side is a multiple of it). Unlike a patch, a
tile is not dropped for a cloud or an unknown pixel: those pixels become 255 in its target and
the loss skips them. A tile is dropped only when fewer than ``min_labelled`` of its pixels are
labelled. The rasters are read in strips of tile rows and kept tiles are spooled to disk, so
scenes larger than memory are cut with bounded memory.

A *temporal negative* pair (``all_negative``) is two dates before the war of the same place:
nothing there is war damage, so every observed pixel is a negative, buildings included (the
clean negatives on buildings that points cannot give). Both scenes must be dated before
2022-02-24.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.windows import Window

from contract.atomic import output_set
from contract.bands import BANDS
from contract.labels import DAMAGE, NO_DAMAGE, UNKNOWN
from contract.npz import SpooledArray, save_npz
from contract.npz_keys import DAMAGE_PIXELS, DATASET_KIND, PROCESSING_LEVEL, TILES
from contract.scene_scale import check_scene_scale
from contract.windows import gather_windows, nodata_pixels, window_positions
from pipeline.aoi.fields import INVASION_DATE
from pipeline.defaults import DEFAULT_MEMORY_MB
from pipeline.errors import InputFileError, PipelineUsageError
from pipeline.grid import Grid, require_same_grid
from pipeline.labels.rasterise import after_date_of
from pipeline.rasters import scene_level
from pipeline.tiles import DEFAULT_TILE_SIZE, PAIR, PREWAR, WAR
from pipeline.tiles.targets import check_target_raster

log = logging.getLogger(__name__)
#: bytes per pixel of one strip: two uint16 scenes, the targets, and working copies
STRIP_BYTES_PER_PX = (2 * len(BANDS) * 2 + 1) * 3


@dataclass
class TileCounts:
    """What happened to every candidate tile, and the pixels of the kept ones."""

    candidates: int = 0
    kept: int = 0
    with_damage: int = 0
    dropped_unlabelled: int = 0
    pixels: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("1", "0", "255"), 0))

    def as_dict(self) -> dict[str, Any]:
        return {
            "candidates": self.candidates,
            "kept": self.kept,
            "with_damage": self.with_damage,
            "dropped_unlabelled": self.dropped_unlabelled,
            "damage_pixels": self.pixels["1"],
            "negative_pixels": self.pixels["0"],
            "ignored_pixels": self.pixels["255"],
        }


@dataclass
class _Kept:
    """Tiles kept so far: positions and damage counts in memory, images spooled to disk."""

    before: BinaryIO
    after: BinaryIO
    target: BinaryIO
    rows: list[np.ndarray] = field(default_factory=list)
    cols: list[np.ndarray] = field(default_factory=list)
    damage: list[np.ndarray] = field(default_factory=list)


def _check_prewar(before: Path, after: Path) -> None:
    for path in (before, after):
        date = after_date_of(path)
        if date >= INVASION_DATE:
            raise InputFileError(
                f"{path}: acquired {date}, not before {INVASION_DATE}: a temporal negative pair "
                "(--all-negative) must be two dates before the war"
            )


def cut_tiles(
    aoi_slug: str,
    before: str | Path,
    after: str | Path,
    targets: str | Path | None,
    out: str | Path,
    size: int = DEFAULT_TILE_SIZE,
    min_labelled: int = 1,
    memory_mb: float = DEFAULT_MEMORY_MB,
) -> TileCounts:
    """Cut tiles of the pair and write them with positions and targets to ``out`` (NPZ).

    Without ``targets`` the pair is a temporal negative pair: every observed pixel is 0.
    """
    before, after, out = Path(before), Path(after), Path(out)
    if size < 1 or min_labelled < 1:
        raise PipelineUsageError("--size and --min-labelled must be positive")
    rasters, grid = _check_inputs(before, after, targets, size)
    level = scene_level(before, after)
    counts = TileCounts()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".tiles-") as spool:
        spooled = {k: Path(spool) / f"{k}.bin" for k in ("before", "after", "target")}
        with (
            open(spooled["before"], "wb") as fb,
            open(spooled["after"], "wb") as fa,
            open(spooled["target"], "wb") as ft,
        ):
            kept = _Kept(fb, fa, ft)
            _cut_all(rasters, grid, size, min_labelled, memory_mb, kept, counts)
        arrays = _tile_arrays(aoi_slug, grid, size, kept, spooled, counts, targets is None)
        if level is not None:
            arrays[PROCESSING_LEVEL] = np.array(level)
        summary = json.loads(str(arrays["summary"]))
        with output_set() as outputs:  # the NPZ and its JSON, both or neither
            save_npz(outputs.path(out), arrays)
            text = json.dumps(summary, indent=2) + "\n"
            outputs.path(out.with_suffix(".json")).write_text(text, encoding="utf-8")
    log.info(
        "%s: %d of %d tiles kept (%d with damage; %d damage, %d negative, %d ignored pixels) -> %s",
        aoi_slug,
        counts.kept,
        counts.candidates,
        counts.with_damage,
        counts.pixels["1"],
        counts.pixels["0"],
        counts.pixels["255"],
        out,
    )
    return counts


def _check_inputs(
    before: Path, after: Path, targets: str | Path | None, size: int
) -> tuple[dict[str, str | Path], Grid]:
    """The rasters to read and their one grid, or a refusal naming the file at fault."""
    rasters: dict[str, str | Path] = {"before": before, "after": after}
    if targets is not None:
        check_target_raster(targets)
        rasters["targets"] = Path(targets)
    else:
        _check_prewar(before, after)
    grid = require_same_grid(rasters)
    for scene in (before, after):
        check_scene_scale(scene)
    if size > min(grid.height, grid.width):
        raise PipelineUsageError(
            f"tile size {size} px is larger than the scene {before} ({grid.width} x "
            f"{grid.height} px)"
        )
    return rasters, grid


def _cut_all(
    rasters: dict[str, str | Path],
    grid: Grid,
    size: int,
    min_labelled: int,
    memory_mb: float,
    kept: _Kept,
    counts: TileCounts,
) -> None:
    """Read the rasters strip by strip (whole tile rows) and keep the labelled tiles."""
    rpos = window_positions(grid.height, size, size)
    cpos = window_positions(grid.width, size, size)
    counts.candidates = len(rpos) * len(cpos)
    tile_rows = max(1, int(memory_mb * 2**20 // (grid.width * size * STRIP_BYTES_PER_PX)))
    with rasterio.Env(GDAL_CACHEMAX=max(8, int(memory_mb // 4))):
        srcs = {k: rasterio.open(p) for k, p in rasters.items()}
        try:
            for first in range(0, len(rpos), tile_rows):
                rows = rpos[first : first + tile_rows]
                win = Window(0, int(rows[0]), grid.width, int(rows[-1]) + size - int(rows[0]))
                b, a = srcs["before"].read(window=win), srcs["after"].read(window=win)
                nodata = nodata_pixels(b, a)
                if "targets" in srcs:
                    y = srcs["targets"].read(1, window=win)
                    y[nodata] = UNKNOWN
                else:
                    y = np.where(nodata, UNKNOWN, NO_DAMAGE).astype(np.uint8)
                top = int(rows[0])
                _keep_strip(b, a, y, (rows - top, cpos, top), size, min_labelled, kept, counts)
        finally:
            for src in srcs.values():
                src.close()


def _keep_strip(
    b: np.ndarray,
    a: np.ndarray,
    y: np.ndarray,
    where: tuple[np.ndarray, np.ndarray, int],
    size: int,
    min_labelled: int,
    kept: _Kept,
    counts: TileCounts,
) -> None:
    """Tiles of one strip: spool the kept ones, count everything.

    ``where`` is (tile rows relative to the strip, tile columns, the strip's first row).
    """
    rows, cols, top = where
    rr, cc = (g.ravel() for g in np.meshgrid(rows, cols, indexing="ij"))
    target = gather_windows(y[None], rr, cc, size)[:, 0]
    labelled = (target != UNKNOWN).sum(axis=(1, 2))
    keep = labelled >= min_labelled
    counts.dropped_unlabelled += int((~keep).sum())
    target = target[keep]
    damage = (target == DAMAGE).sum(axis=(1, 2)).astype(np.int32)
    counts.kept += int(keep.sum())
    counts.with_damage += int((damage > 0).sum())
    for code in (DAMAGE, NO_DAMAGE, UNKNOWN):
        counts.pixels[str(code)] += int((target == code).sum())
    kept.rows.append(rr[keep] + top)
    kept.cols.append(cc[keep])
    kept.damage.append(damage)
    gather_windows(b, rr[keep], cc[keep], size).astype(np.uint16).tofile(kept.before)
    gather_windows(a, rr[keep], cc[keep], size).astype(np.uint16).tofile(kept.after)
    np.ascontiguousarray(target).tofile(kept.target)


def _tile_arrays(
    aoi_slug: str,
    grid: Grid,
    size: int,
    kept: _Kept,
    spooled: dict[str, Path],
    counts: TileCounts,
    prewar: bool,
) -> dict[str, Any]:
    """The tile file's arrays: the patch file's keys, with an (N, T, T) ``label``."""
    rows = np.concatenate(kept.rows).astype(np.int32)
    cols = np.concatenate(kept.cols).astype(np.int32)
    n = len(rows)
    t = grid.transform
    x = t.c + (cols + size / 2) * t.a
    y = t.f + (rows + size / 2) * t.e
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(x, y)
    summary = {"aoi": aoi_slug, "size": size, "stride": size, PAIR: PREWAR if prewar else WAR}
    summary.update(counts.as_dict())
    scene_shape = (n, len(BANDS), size, size)
    return {
        "before": SpooledArray(spooled["before"], np.dtype(np.uint16), scene_shape),
        "after": SpooledArray(spooled["after"], np.dtype(np.uint16), scene_shape),
        "label": SpooledArray(spooled["target"], np.dtype(np.uint8), (n, size, size)),
        DAMAGE_PIXELS: np.concatenate(kept.damage).astype(np.int32),
        "row": rows,
        "col": cols,
        "x": x,
        "y": y,
        "lon": np.asarray(lon),
        "lat": np.asarray(lat),
        "crs": np.array(grid.crs.to_wkt()),
        "transform": np.array(list(t)[:6]),
        "aoi": np.array(aoi_slug),
        "bands": np.array(BANDS),
        "summary": np.array(json.dumps(summary)),
        DATASET_KIND: np.array(TILES),
        PAIR: np.array(PREWAR if prewar else WAR),
    }
