"""Damage probability per footprint with exact fractional pixel coverage, read block by block.

Buildings are small next to 10 m pixels (a house covers a few pixels, often partly), so
centre-of-pixel masks (``rasterstats``' default) drop or over-count whole pixels. Here every
footprint is intersected with each pixel cell its bounding box touches (vectorised shapely),
and the intersection areas weight the pixel values: an exact area-weighted mean. Pixel values
are gathered per raster block, reading only the blocks a batch of footprints touches, so memory
is bounded by the batch, never the map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import rasterio
import shapely
from rasterio.windows import Window

from damagenet.errors import GridMismatchError, InputFileError


@dataclass
class MapGrid:
    """The pixel grid of a north-up map: origin, pixel size, size and block size."""

    x0: float
    y0: float
    dx: float
    dy: float  # positive: rows go south
    width: int
    height: int
    block_h: int
    block_w: int

    @classmethod
    def of(cls, src: rasterio.DatasetReader) -> MapGrid:
        t = src.transform
        if t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
            raise InputFileError(f"{src.name}: the map is rotated or flipped ({t}); warp it "
                                 "north-up first (gdalwarp)")
        bh, bw = src.block_shapes[0]
        return cls(t.c, t.f, t.a, -t.e, src.width, src.height, bh, bw)

    def cell_boxes(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Polygons of the pixel cells (rows, cols)."""
        x = self.x0 + cols * self.dx
        y = self.y0 - rows * self.dy
        return shapely.box(x, y - self.dy, x + self.dx, y)


def check_same_grid(ref: rasterio.DatasetReader, other: rasterio.DatasetReader) -> None:
    for key in ("crs", "transform", "width", "height"):
        if getattr(ref, key) != getattr(other, key):
            raise GridMismatchError(f"{other.name} is not on the grid of the map {ref.name}: "
                                    f"{key} {getattr(other, key)} vs {getattr(ref, key)}")


def pixel_pairs(grid: MapGrid, geoms: np.ndarray) -> tuple[np.ndarray, ...]:
    """(building, row, col, weight) for every pixel cell a footprint overlaps inside the map.

    The weight is the area of footprint and cell in common (map units squared): exact
    fractional coverage. A footprint whose bounding box lies inside one cell is inside that
    cell, so its weight is its area without an intersection.
    """
    ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    bounds = np.where(ok[:, None], shapely.bounds(np.where(ok, geoms, None)), 0.0)
    c0 = np.floor((bounds[:, 0] - grid.x0) / grid.dx).astype(np.int64)
    c1 = np.ceil((bounds[:, 2] - grid.x0) / grid.dx).astype(np.int64)
    r0 = np.floor((grid.y0 - bounds[:, 3]) / grid.dy).astype(np.int64)
    r1 = np.ceil((grid.y0 - bounds[:, 1]) / grid.dy).astype(np.int64)
    c1, r1 = np.maximum(c1, c0 + 1), np.maximum(r1, r0 + 1)  # degenerate (zero-width) boxes
    single = ((c1 - c0) == 1) & ((r1 - r0) == 1)
    c0c, c1c = np.clip(c0, 0, grid.width), np.clip(c1, 0, grid.width)
    r0c, r1c = np.clip(r0, 0, grid.height), np.clip(r1, 0, grid.height)
    ncols, nrows = c1c - c0c, r1c - r0c
    counts = np.where(ok, ncols * nrows, 0)
    idx = np.repeat(np.arange(len(geoms)), counts)
    k = np.arange(len(idx)) - np.repeat(np.cumsum(counts) - counts, counts)
    rows = r0c[idx] + k // ncols[idx]
    cols = c0c[idx] + k % ncols[idx]
    weight = np.empty(len(idx))
    whole = single[idx]
    weight[whole] = shapely.area(geoms[idx[whole]])
    part = ~whole
    weight[part] = shapely.area(shapely.intersection(
        geoms[idx[part]], grid.cell_boxes(rows[part], cols[part])))
    keep = weight > 0
    return idx[keep], rows[keep], cols[keep], weight[keep]


def gather(src: rasterio.DatasetReader, grid: MapGrid, rows: np.ndarray, cols: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """Values of band 1 at (rows, cols) and whether each is valid, reading only touched blocks."""
    values = np.zeros(len(rows), dtype=np.float64)
    if len(rows) == 0:
        return values, np.zeros(0, dtype=bool)
    br, bc = rows // grid.block_h, cols // grid.block_w
    block = br * ((grid.width + grid.block_w - 1) // grid.block_w) + bc
    order = np.argsort(block, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(block[order]) != 0])
    for s, e in zip(starts, np.r_[starts[1:], len(order)], strict=True):
        sel = order[s:e]
        top, left = int(br[sel[0]]) * grid.block_h, int(bc[sel[0]]) * grid.block_w
        win = Window(left, top, min(grid.block_w, grid.width - left),
                     min(grid.block_h, grid.height - top))
        data = src.read(1, window=win)
        values[sel] = data[rows[sel] - top, cols[sel] - left]
    valid = np.isfinite(values)
    if src.nodata is not None:
        valid &= values != src.nodata
    return values, valid


@dataclass
class FootprintStats:
    """Per-footprint results of one batch (NaN where the footprint has no valid pixel)."""

    area: np.ndarray
    in_map: np.ndarray
    valid_share: np.ndarray
    prob_mean: np.ndarray
    prob_max: np.ndarray
    unc_mean: np.ndarray | None


def footprint_stats(geoms: np.ndarray, prob: rasterio.DatasetReader, grid: MapGrid,
                    unc: rasterio.DatasetReader | None = None) -> FootprintStats:
    """Area-weighted mean and max probability (and mean uncertainty) of each footprint."""
    n = len(geoms)
    idx, rows, cols, w = pixel_pairs(grid, geoms)
    values, valid = gather(prob, grid, rows, cols)
    area = np.nan_to_num(shapely.area(geoms), nan=0.0)
    in_map = np.bincount(idx, w, minlength=n) > 0
    wv = np.where(valid, w, 0.0)
    sum_w = np.bincount(idx, wv, minlength=n)
    sum_wp = np.bincount(idx, wv * np.where(valid, values, 0.0), minlength=n)
    has = sum_w > 0
    mean = np.full(n, np.nan)
    mean[has] = sum_wp[has] / sum_w[has]
    mx = np.full(n, -np.inf)
    np.maximum.at(mx, idx[valid], values[valid])
    mx[~has] = np.nan
    share = np.where(area > 0, sum_w / np.where(area > 0, area, 1.0), np.nan)
    unc_mean = None
    if unc is not None:
        u, uvalid = gather(unc, grid, rows, cols)
        uw = np.where(uvalid & valid, w, 0.0)
        usum = np.bincount(idx, uw, minlength=n)
        unc_mean = np.full(n, np.nan)
        ok = usum > 0
        unc_mean[ok] = np.bincount(idx, uw * np.where(uvalid, u, 0.0), minlength=n)[ok] / usum[ok]
    return FootprintStats(area, in_map, np.minimum(share, 1.0), mean, mx, unc_mean)
