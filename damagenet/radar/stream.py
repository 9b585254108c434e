"""Running PWTT over a radar store in row strips, with bounded memory and each chunk read once.

The store is chunked one acquisition by 512 x 512 pixels. Strips span the grid's width and a
whole number of chunk rows, so every chunk is decompressed once; the speckle filter's one-pixel
context across a strip's top edge comes from the two rows each acquisition left at the bottom of
the previous strip (:class:`EdgeRows`), and the smoothing's context from a rolling buffer of
raw t rows (:class:`Smoother`). Memory is a few strips of one acquisition plus the per-orbit
sums: about ``100 bytes x width x strip rows`` per polarisation, whatever the store's size.
The two polarisations run in two threads (NumPy releases the GIL); the arithmetic is the same
whatever the strip size or threading, so the map is byte-identical.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from contract import radar
from damagenet.radar.smoothing import halo_px, pwtt_smooth
from damagenet.radar.speckle import lee_filter
from damagenet.radar.store import OrbitStack, RadarStore
from damagenet.radar.ttest import (
    COMBINE_MAX,
    OrbitCombination,
    WindowSums,
    combine_polarisations,
    t_statistic,
)

log = logging.getLogger(__name__)
#: Convert natural-log power to dB.
DB_PER_NEPER = 10.0 / np.log(10.0)
BuiltRows = Callable[[int, int], np.ndarray]
#: Columns of a strip filtered or smoothed at a time: the temporaries of the filter and of the
#: smoothing stay a few MiB and in cache, whatever the grid's width.
TILE_COLS = 512


def by_columns(
    fn: Callable[..., np.ndarray], halo: int, a: np.ndarray, *more: np.ndarray | None
) -> np.ndarray:
    """``fn(a, *more)`` computed on column tiles with ``halo`` columns of context each side.

    Exact for any neighbourhood operation reaching at most ``halo`` columns: each tile's
    interior sees everything it would see in the whole strip, and a tile's outer edge is the
    grid's edge wherever it is not cut off.
    """
    width = a.shape[1]
    out = np.empty(a.shape, dtype=np.float64)
    for c0 in range(0, width, TILE_COLS):
        c1 = min(c0 + TILE_COLS, width)
        lo, hi = max(c0 - halo, 0), min(c1 + halo, width)
        parts = [None if m is None else m[:, lo:hi] for m in more]
        out[:, c0:c1] = fn(a[:, lo:hi], *parts)[:, c0 - lo : c1 - lo]
    return out


@dataclass(frozen=True)
class TestOptions:
    welch: bool = False
    combine: str = COMBINE_MAX
    smoothing: bool = True


@dataclass
class Rows:
    """Full-width rows ``[start, start + len)`` of the map: T (or raw t) and the backdrop."""

    start: int
    t: np.ndarray
    backdrop: np.ndarray


def testable(stack: OrbitStack) -> bool:
    """Whether an orbit has enough acquisitions for any pixel to be tested."""
    return len(stack.pre) >= 3 and len(stack.post) >= 2


class EdgeRows:
    """Per polarisation and acquisition, the last two rows already read (one NaN row above the
    grid at first): the filter's context across strip edges without re-reading chunks."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.rows: dict[tuple[str, int], np.ndarray] = {}

    def extend(self, pol: str, time: int, block: np.ndarray) -> np.ndarray:
        above = self.rows.get((pol, time), np.full((1, self.width), np.nan, np.float32))
        full = np.concatenate([above, block])
        self.rows[(pol, time)] = full[-2:].copy()  # a view would keep the whole strip
        return full


def filtered_log(
    store: RadarStore, edges: EdgeRows, pol: str, time: int, r0: int, r1: int
) -> np.ndarray:
    """Lee-filtered log power of rows ``[r0 - 1, r1 - 1)`` (to ``r1`` on the last strip)."""
    block = store.rows(pol, time, r0, r1)
    full = edges.extend(pol, time, block)
    last = r1 == store.height
    if last:
        full = np.concatenate([full, np.full((1, store.width), np.nan, np.float32)])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.log(by_columns(lee_filter, 1, full)[1:-1])


def orbit_sums(
    store: RadarStore, edges: EdgeRows, pol: str, stack: OrbitStack, r0: int, r1: int
) -> tuple[WindowSums, WindowSums]:
    """One orbit and polarisation's pre and post window sums over one strip."""
    sums = []
    for times in (stack.pre, stack.post):
        acc: WindowSums | None = None
        for time in times:
            x = filtered_log(store, edges, pol, time, r0, r1)
            acc = acc or WindowSums(x.shape)
            acc.add(x)
        assert acc is not None, "an orbit without acquisitions in a window is not tested"
        sums.append(acc)
    return sums[0], sums[1]


def polarisation_strip(
    store: RadarStore, edges: EdgeRows, pol: str, r0: int, r1: int, opts: TestOptions
) -> tuple[np.ndarray, np.ndarray]:
    """One polarisation's t over orbits and the mean pre-war log power, for one strip.

    Orbits are folded in one at a time and tested a column tile at a time, so the strip holds
    one orbit's sums and the running result, not every orbit's statistics.
    """
    combined: OrbitCombination | None = None
    pre_sum: np.ndarray | None = None
    pre_count: np.ndarray | None = None
    for stack in filter(testable, store.orbits):
        pre, post = orbit_sums(store, edges, pol, stack, r0, r1)
        if combined is None or pre_sum is None or pre_count is None:
            combined = OrbitCombination(pre.n.shape, opts.combine)
            pre_sum, pre_count = np.zeros(pre.n.shape), np.zeros(pre.n.shape, np.int16)
        for c0 in range(0, store.width, TILE_COLS):
            cols = slice(c0, min(c0 + TILE_COLS, store.width))
            test = t_statistic(pre.columns(cols), post.columns(cols), welch=opts.welch)
            combined.add(test, cols)
        n, mean, _ = pre.moments()
        pre_sum += np.where(n > 0, mean, 0.0)
        pre_count += n > 0
        del pre, post, n, mean  # before the next orbit's sums are allocated
    assert combined is not None and pre_sum is not None and pre_count is not None, "no orbit"
    with np.errstate(invalid="ignore", divide="ignore"):
        backdrop = np.where(pre_count > 0, pre_sum / pre_count, np.nan)
    return combined.result(), backdrop


def raw_strips(store: RadarStore, opts: TestOptions, strip_rows: int) -> Iterator[Rows]:
    """Unsmoothed t (max over polarisations) and the pre-war VV backdrop, strip by strip."""
    edges = EdgeRows(store.width)
    out_start = 0
    with ThreadPoolExecutor(max_workers=len(radar.POLARISATIONS)) as pool:
        for r0 in range(0, store.height, strip_rows):
            r1 = min(r0 + strip_rows, store.height)
            futures = [
                pool.submit(polarisation_strip, store, edges, pol, r0, r1, opts)
                for pol in radar.POLARISATIONS
            ]
            results = [f.result() for f in futures]
            t = combine_polarisations([r[0] for r in results])
            backdrop = results[radar.POLARISATIONS.index("vv")][1] * DB_PER_NEPER
            yield Rows(out_start, t, backdrop)
            out_start += len(t)
            log.debug("pwtt: rows %d-%d of %d tested", r0, r1, store.height)


class Smoother:
    """Rolling buffer of raw t rows, emitting T rows once their smoothing context is complete."""

    def __init__(self, height: int, pixel_size: float, built: BuiltRows | None) -> None:
        self.height, self.pixel_size, self.built = height, pixel_size, built
        self.halo = halo_px(pixel_size)
        self.start = 0  # first row held in the buffer
        self.next_out = 0
        self.t: np.ndarray | None = None
        self.backdrop: np.ndarray | None = None

    def _smooth(self, t: np.ndarray, built: np.ndarray | None) -> np.ndarray:
        return pwtt_smooth(t, self.pixel_size, built)

    def push(self, rows: Rows) -> Rows | None:
        t = rows.t if self.t is None else np.concatenate([self.t, rows.t])
        back = (
            rows.backdrop
            if self.backdrop is None
            else np.concatenate([self.backdrop, rows.backdrop])
        )
        end = self.start + len(t)
        out_end = self.height if end == self.height else end - self.halo
        self.t, self.backdrop = t, back
        if out_end <= self.next_out:
            return None
        o0, o1 = self.next_out, out_end
        built = None if self.built is None else self.built(self.start, end)
        smooth = by_columns(self._smooth, self.halo, t, built)
        done = Rows(
            o0, smooth[o0 - self.start : o1 - self.start], back[o0 - self.start : o1 - self.start]
        )
        keep = max(o1 - self.halo, self.start) - self.start
        self.t, self.backdrop, self.start, self.next_out = (
            t[keep:],
            back[keep:],
            self.start + keep,
            o1,
        )
        return done


def pwtt_rows(
    store: RadarStore,
    opts: TestOptions,
    strip_rows: int,
    built: BuiltRows | None = None,
) -> Iterator[Rows]:
    """The map's rows in order: T (or raw t with ``smoothing=False``) and the backdrop."""
    strips = raw_strips(store, opts, strip_rows)
    if not opts.smoothing:
        for rows in strips:
            if built is not None:
                rows.t = np.where(built(rows.start, rows.start + len(rows.t)), rows.t, np.nan)
            yield rows
        return
    smoother = Smoother(store.height, store.pixel_size, built)
    for rows in strips:
        done = smoother.push(rows)
        if done is not None:
            yield done
