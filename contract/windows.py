"""Square windows over a raster read in row strips: placement, strips, tests and accumulation.

Cutting training patches (``pipeline patches``) and drawing maps (``damagenet predict``) both
slide ``size`` px windows over a scene pair every ``stride`` px, read the rasters in horizontal
strips sized to a memory budget, and ask per window whether a mask (nodata, unknown labels,
damage) is set inside it. Keeping that arithmetic here once means a patch of the dataset and a
window of the map are the same window.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from numpy.lib.stride_tricks import sliding_window_view

from contract.bands import SCENE_NODATA


def window_positions(length: int, size: int, stride: int, flush: bool = False) -> np.ndarray:
    """Window origins every ``stride`` px; with ``flush`` one more flush with the far edge.

    Patches use the plain grid (a patch is a sample; the far edge may stay uncut); maps add the
    flush window so every pixel of the scene is covered.
    """
    pos = list(range(0, length - size + 1, stride))
    if flush and pos[-1] != length - size:
        pos.append(length - size)
    return np.array(pos, dtype=np.int64)


def rows_per_strip(
    width: int,
    size: int,
    stride: int,
    memory_mb: float,
    bytes_per_px: int,
    reserve_overlap: bool = False,
) -> int:
    """Window rows per strip so that a strip of ``bytes_per_px`` per pixel fits the budget.

    A strip of ``k`` window rows spans about ``k * stride`` raster rows; ``reserve_overlap``
    leaves room for the ``size - stride`` rows the last window reaches beyond them.
    """
    rows = int(memory_mb * 2**20 // (width * bytes_per_px * max(stride, 1)))
    if reserve_overlap:
        rows -= math.ceil(size / stride)
    return max(1, rows)


@dataclass(frozen=True)
class Strip:
    """Window rows ``first:last`` of the plan and the raster rows ``top:bottom`` they span."""

    first: int
    last: int
    top: int
    bottom: int
    #: window origins (raster rows) of this strip
    rows: np.ndarray = field(repr=False)

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def local_rows(self) -> np.ndarray:
        """Window origins relative to the strip's first raster row."""
        return self.rows - self.top


def plan_strips(positions: np.ndarray, size: int, per_strip: int) -> Iterator[Strip]:
    """Consecutive strips of at most ``per_strip`` window rows (they overlap by a halo)."""
    for first in range(0, len(positions), per_strip):
        last = min(len(positions), first + per_strip)
        rows = positions[first:last]
        yield Strip(first, last, int(rows[0]), int(rows[-1]) + size, rows)


def window_sum(mask: np.ndarray, rows: np.ndarray, cols: np.ndarray, size: int) -> np.ndarray:
    """Count of set pixels of ``mask`` in each window (origins ``rows`` x ``cols``).

    A summed-area table makes each window four lookups, whatever its size or the stride.
    """
    integral = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    integral[1:, 1:] = mask.astype(np.int64).cumsum(0).cumsum(1)
    r, c = np.asarray(rows)[:, None], np.asarray(cols)[None, :]
    return (
        integral[r + size, c + size]
        - integral[r, c + size]
        - integral[r + size, c]
        + integral[r, c]
    )


def window_any(mask: np.ndarray, rows: np.ndarray, cols: np.ndarray, size: int) -> np.ndarray:
    """Whether ``mask`` is set anywhere in each window."""
    return window_sum(mask, rows, cols, size) > 0


def nodata_pixels(*scenes: np.ndarray) -> np.ndarray:
    """Pixels without an observation in any band of any of the (bands, rows, cols) scenes."""
    out = np.zeros(scenes[0].shape[1:], dtype=bool)
    for scene in scenes:
        out |= (scene == SCENE_NODATA).any(axis=0)
    return out


def coverage(positions: np.ndarray, size: int, length: int) -> sp.csr_matrix:
    """(length x windows) 0/1 matrix: pixel i is covered by window j."""
    rows = (positions[:, None] + np.arange(size)[None, :]).ravel()
    cols = np.repeat(np.arange(len(positions)), size)
    return sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float64), (rows, cols)), shape=(length, len(positions))
    )


class OverlapAccumulator:
    """Per-pixel sum and count of the window values covering it, strip after strip.

    Windows are summed per strip with sparse coverage matrices (pixel = rows-coverage x window
    grid x columns-coverage), about ``size`` multiply-adds per pixel and window row whatever
    the stride. Rows that no later strip can reach are handed back at once, so only the halo
    of one strip is held in memory.
    """

    def __init__(self, width: int, col_positions: np.ndarray, size: int) -> None:
        self.size = size
        self.cov_cols = coverage(col_positions, size, width)
        self.start = 0
        self.sums = np.zeros((0, width))
        self.counts = np.zeros((0, width))

    def add(
        self, strip: Strip, values: np.ndarray, valid: np.ndarray, next_top: int
    ) -> tuple[int, np.ndarray, np.ndarray]:
        """Add one strip's (window rows x window cols) grid; return finished rows.

        ``next_top`` is the first raster row the next strip covers (the height after the last
        strip). Returns ``(row0, sums, counts)`` for raster rows ``row0:next_top``.
        """
        cov_rows = coverage(strip.local_rows, self.size, strip.height)
        end = max(self.start + len(self.sums), strip.bottom, next_top)  # gaps: stride > size
        sums = np.zeros((end - self.start, self.sums.shape[1]))
        counts = np.zeros_like(sums)
        sums[: len(self.sums)] += self.sums
        counts[: len(self.counts)] += self.counts
        at = slice(strip.top - self.start, strip.bottom - self.start)
        sums[at] += self._spread(cov_rows, values)
        counts[at] += self._spread(cov_rows, valid)
        done = next_top - self.start
        row0 = self.start
        self.sums, self.counts, self.start = sums[done:], counts[done:], next_top
        return row0, sums[:done], counts[:done]

    def _spread(self, cov_rows: sp.csr_matrix, grid: np.ndarray) -> np.ndarray:
        return np.asarray(self.cov_cols @ np.asarray(cov_rows @ grid).T).T


def gather_windows(scene: np.ndarray, rows: np.ndarray, cols: np.ndarray, size: int) -> np.ndarray:
    """(N, bands, size, size) copies of the windows at origins (``rows[i]``, ``cols[i]``)."""
    view = sliding_window_view(scene, (size, size), axis=(1, 2))
    return np.ascontiguousarray(np.moveaxis(view[:, rows, cols], 0, 1))
