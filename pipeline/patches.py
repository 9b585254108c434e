"""Aligned patch pairs on a regular grid, cut window by window.

Before, after and label rasters of one AOI share one grid. Patches of ``size`` px are taken every
``stride`` px; a patch is dropped when any pixel has no observation in either epoch or any label
is unknown (255), and is labelled damaged when at least ``min_damage_pixels`` damage pixels fall
in it. The rasters are read in horizontal strips sized to a memory budget and kept patches are
spooled to disk, so scenes larger than memory are cut with bounded memory.
"""

from __future__ import annotations

import argparse
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

from contract.atomic import write_text_atomic
from contract.bands import BANDS
from contract.cli import bar_disabled
from contract.labels import DAMAGE, UNKNOWN
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
from pipeline.aoi import load_aoi
from pipeline.errors import PipelineError
from pipeline.grid import require_same_grid
from pipeline.npz import SpooledArray, save_npz

log = logging.getLogger(__name__)
DEFAULT_MEMORY_MB = 256.0


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
    size: int = 16,
    stride: int = 16,
    min_damage_pixels: int = 1,
    memory_mb: float = DEFAULT_MEMORY_MB,
    progress: bool = True,
) -> PatchCounts:
    """Cut aligned patch pairs and write them with their positions to ``out`` (NPZ)."""
    if size < 1 or stride < 1 or min_damage_pixels < 1:
        raise PipelineError("--size, --stride and --min-damage-pixels must be positive")
    grid = require_same_grid({"before": before, "after": after, "labels": labels})
    for scene in (before, after):
        check_scene_scale(scene)
    if size > grid.height or size > grid.width:
        raise PipelineError(
            f"patch size {size} px is larger than the scene {before} "
            f"({grid.width} x {grid.height} px)"
        )
    rpos = window_positions(grid.height, size, stride)
    cpos = window_positions(grid.width, size, stride)
    per_strip = rows_per_strip(
        grid.width, size, stride, memory_mb, STRIP_BYTES_PER_PX, reserve_overlap=True
    )
    counts = PatchCounts(candidates=len(rpos) * len(cpos))
    out = Path(out)
    kept_rows: list[np.ndarray] = []
    kept_cols: list[np.ndarray] = []
    kept_dmg: list[np.ndarray] = []
    # GDAL's block cache defaults to 5 % of RAM; keep it inside the budget too
    cache_mb = max(8, int(memory_mb // 4))
    with (
        tempfile.TemporaryDirectory(
            dir=out.parent if out.parent.exists() else None, prefix=".patches-"
        ) as spool,
        rasterio.Env(GDAL_CACHEMAX=cache_mb),
        rasterio.open(before) as sb,
        rasterio.open(after) as sa,
        rasterio.open(labels) as sl,
    ):
        fb = open(Path(spool) / "before.bin", "wb")  # noqa: SIM115 - closed below
        fa = open(Path(spool) / "after.bin", "wb")  # noqa: SIM115
        try:
            bar = tqdm(
                total=len(rpos),
                desc=f"{aoi_slug} patches",
                unit="row",
                disable=bar_disabled(progress),
            )
            for strip in plan_strips(rpos, size, per_strip):
                win = Window(0, strip.top, grid.width, strip.height)
                b = sb.read(window=win)
                a = sa.read(window=win)
                lab = sl.read(1, window=win)
                rows, cols, dmg, pb, pa = _cut_strip(
                    b, a, lab, strip.local_rows, cpos, size, min_damage_pixels, counts
                )
                kept_rows.append(rows + strip.top)
                kept_cols.append(cols)
                kept_dmg.append(dmg)
                pb.tofile(fb)
                pa.tofile(fa)
                bar.update(strip.last - strip.first)
            bar.close()
        finally:
            fb.close()
            fa.close()
        rows = np.concatenate(kept_rows).astype(np.int32)
        cols = np.concatenate(kept_cols).astype(np.int32)
        damage = np.concatenate(kept_dmg).astype(np.int32)
        n = len(rows)
        shape = (n, len(BANDS), size, size)
        mb = SpooledArray(Path(spool) / "before.bin", np.dtype(np.uint16), shape)
        ma = SpooledArray(Path(spool) / "after.bin", np.dtype(np.uint16), shape)
        t = grid.transform
        x = t.c + (cols + size / 2) * t.a
        y = t.f + (rows + size / 2) * t.e
        lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(x, y)
        label = (damage >= min_damage_pixels).astype(np.uint8)
        summary = {
            "aoi": aoi_slug,
            "size": size,
            "stride": stride,
            "min_damage_pixels": min_damage_pixels,
            **counts.as_dict(),
        }
        save_npz(
            out,
            {
                "before": mb,
                "after": ma,
                "label": label,
                "damage_pixels": damage,
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
            },
        )
    write_text_atomic(out.with_suffix(".json"), json.dumps(summary, indent=2) + "\n")
    log.info(
        "%s: %d candidate patches: %d damaged, %d no damage, dropped %d for nodata and %d "
        "for unknown labels -> %s",
        aoi_slug,
        counts.candidates,
        counts.damaged,
        counts.no_damage,
        counts.dropped_nodata,
        counts.dropped_unknown,
        out,
    )
    return counts


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


def _run(args: argparse.Namespace) -> int:
    slug = load_aoi(args.aoi_file).slug
    cut_patches(
        slug,
        args.before,
        args.after,
        args.labels,
        args.out,
        size=args.size,
        stride=args.stride,
        min_damage_pixels=args.min_damage_pixels,
        memory_mb=args.memory_mb,
        progress=not args.quiet,
    )
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "patches",
        help="cut aligned before/after/label patch pairs of one AOI",
        description="Cut patch pairs on a regular grid from before, after and label rasters of "
        "one AOI (same grid). Drops patches with nodata in either epoch or unknown "
        "labels; writes before/after (N, 4, S, S) uint16, label, damage_pixels, "
        "row/col, x/y, lon/lat, crs, transform and aoi to an NPZ, and counts per "
        "class and drop reason to a JSON beside it.",
    )
    p.add_argument("aoi_file", help="AOI GeoJSON file (names the patches)")
    p.add_argument("--before", required=True, help="before scene GeoTIFF")
    p.add_argument("--after", required=True, help="after scene GeoTIFF")
    p.add_argument("--labels", required=True, help="label GeoTIFF (1 damage, 0 no, 255 unknown)")
    p.add_argument("--out", required=True, help="output NPZ")
    p.add_argument("--size", type=int, default=16, help="patch side in px (default: %(default)s)")
    p.add_argument(
        "--stride",
        type=int,
        default=16,
        help="step between patches in px; equal to --size for non-overlapping "
        "patches (default: %(default)s)",
    )
    p.add_argument(
        "--min-damage-pixels",
        type=int,
        default=1,
        help="damage pixels needed to label a patch damaged (default: %(default)s)",
    )
    p.add_argument(
        "--memory-mb",
        type=float,
        default=DEFAULT_MEMORY_MB,
        help="memory budget for reading the rasters, in MiB (default: %(default)s)",
    )
    p.set_defaults(func=_run)
