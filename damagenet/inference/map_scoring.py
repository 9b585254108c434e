"""How a model turns a scene pair into map rows: one small interface, two implementations.

A map is drawn block by block (:func:`damagenet.maps.predict.predict_map`): each
:class:`MapBlock` carries finished pixel rows (per-pixel sums of every layer and how many
scores each holds) and the windows of the map's window grid that lie in it (their probability:
damaged ones go to the GeoPackage, labelled ones to the window metrics). A scorer's output
always has a trailing ``layers`` axis: 1 for a model, 2 for an ensemble (mean, spread).

- :class:`PatchScoring`: the patch model slid every ``stride`` px; a pixel's value is the mean
  of the windows covering it (:class:`contract.windows.OverlapAccumulator`).
- :class:`PixelScoring`: the pixel model over overlapping tiles (:mod:`damagenet.inference.
  tiles`); its windows are the cells of the patch model's 16 px grid, each holding its
  pixels' maximum.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from contract.windows import OverlapAccumulator, Strip, rows_per_strip, window_positions
from damagenet.inference.pixel import PixelEnsemble, PixelScorer, score_band
from damagenet.inference.tiles import MAP_CELL, Span, TilePlan

if TYPE_CHECKING:
    from damagenet.data.scene_pair import ScenePair

#: bytes per scene pixel of one strip: two uint16 scenes, window copies, float64 accumulators
STRIP_BYTES_PER_PX = 2 * (4 * 2 * 2 + 8 * 3)


@dataclass(frozen=True)
class MapBlock:
    """Finished raster rows ``row0:row0 + len(sums)`` and the windows of ``strip``."""

    strip: Strip
    #: first raster row of the next block (the scene's height after the last)
    next_top: int
    #: (window rows, window cols) probability of each window of the strip; NaN: not scored
    windows: np.ndarray
    row0: int
    #: (rows, width, layers) per-pixel sums of every layer
    sums: np.ndarray
    #: (rows, width) number of scores in each pixel's sums (0: no data)
    counts: np.ndarray


class MapScoring(Protocol):
    """A model's way over a scene: its window grid, its layers and its blocks, in row order."""

    size: int
    stride: int
    layers: int
    rows: np.ndarray
    cols: np.ndarray

    def blocks(self, scenes: ScenePair) -> Iterator[MapBlock]: ...

    def tags(self) -> dict[str, Any]: ...


class WindowScorer(Protocol):
    """Scores of (N, bands, S, S) raw DN window pairs as (N, layers)."""

    layers: int

    def __call__(self, before: np.ndarray, after: np.ndarray) -> np.ndarray: ...


class Layered:
    """Any window scorer as a :class:`WindowScorer`: plain functions of one value per window
    (a stand-in model in tests, :class:`~damagenet.inference.scoring.PairScorer`) get their
    layer axis here, and nowhere else."""

    def __init__(self, scorer: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> None:
        self.scorer = scorer
        self.layers = int(getattr(scorer, "layers", 1))

    def __call__(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        out = np.asarray(self.scorer(before, after), dtype=np.float64)
        return out.reshape(len(before), self.layers)


class PatchScoring:
    """The patch model every ``stride`` px in row strips sized to ``memory_mb``."""

    def __init__(
        self,
        scorer: Callable[[np.ndarray, np.ndarray], np.ndarray],
        size: int,
        stride: int,
        height: int,
        width: int,
        memory_mb: float,
        scheduler: str | None = None,
    ) -> None:
        self.scorer = Layered(scorer)
        self.size, self.stride, self.scheduler = size, stride, scheduler
        self.layers = self.scorer.layers
        self.rows = window_positions(height, size, stride, flush=True)
        self.cols = window_positions(width, size, stride, flush=True)
        self.per_strip = rows_per_strip(width, size, stride, memory_mb, STRIP_BYTES_PER_PX)

    def tags(self) -> dict[str, Any]:
        return {"PATCH_SIZE": self.size, "STRIDE": self.stride}

    def blocks(self, scenes: ScenePair) -> Iterator[MapBlock]:
        from damagenet.data.scene_pair import strip_probabilities

        width = scenes.grid.width
        accs = [OverlapAccumulator(width, self.cols, self.size) for _ in range(self.layers)]
        strips = strip_probabilities(
            scenes, self.rows, self.cols, self.size, self.scorer, self.per_strip, self.scheduler
        )
        for strip, next_top, scores in strips:
            valid = ~np.isnan(scores[..., 0])
            weight = valid.astype(np.float64)
            added = [
                acc.add(strip, np.where(valid, scores[..., i], 0.0), weight, next_top)
                for i, acc in enumerate(accs)
            ]
            row0, _, counts = added[0]
            sums = np.stack([a[1] for a in added], axis=-1)
            yield MapBlock(strip, next_top, scores[..., 0], row0, sums, counts)


class PixelScoring:
    """The pixel model over the tiles of ``plan``, band by band (in process or on a cluster)."""

    size = stride = MAP_CELL

    def __init__(
        self, scorer: PixelScorer | PixelEnsemble, plan: TilePlan, scheduler: str | None = None
    ) -> None:
        self.scorer, self.plan, self.scheduler = scorer, plan, scheduler
        self.layers = scorer.layers
        self.rows = window_positions(plan.height, MAP_CELL, MAP_CELL, flush=True)
        self.cols = window_positions(plan.width, MAP_CELL, MAP_CELL, flush=True)

    def tags(self) -> dict[str, Any]:
        return {
            "CELL_SIZE": MAP_CELL,
            "TILE_CORE": self.plan.core,
            "TILE_HALO": self.plan.halo,
            "TILES": self.plan.tiles,
        }

    def blocks(self, scenes: ScenePair) -> Iterator[MapBlock]:
        bands = self.plan.bands()
        results = band_probabilities(scenes, self.plan, self.scorer, self.scheduler)
        first = 0
        for band, prob in zip(bands, results, strict=True):
            last = int(np.searchsorted(self.rows, band.stop - MAP_CELL, side="right"))
            strip = Strip(first, last, band.start, band.stop, self.rows[first:last])
            valid = ~np.isnan(prob[..., 0])
            sums = np.where(valid[..., None], prob, 0.0)
            yield MapBlock(
                strip, band.stop, self._cells(strip, prob[..., 0]), band.start, sums, valid * 1.0
            )
            first = last

    def _cells(self, strip: Strip, prob: np.ndarray) -> np.ndarray:
        """Each cell's largest pixel probability (NaN where any of its pixels has no data)."""
        view = sliding_window_view(prob, (MAP_CELL, MAP_CELL))
        return view[strip.local_rows][:, self.cols].max(axis=(-2, -1))


def band_probabilities(
    scenes: ScenePair,
    plan: TilePlan,
    scorer: PixelScorer | PixelEnsemble,
    scheduler: str | None = None,
) -> Iterator[np.ndarray]:
    """Each band's (rows, width, layers) probabilities, in order; on a cluster when asked."""
    bands, columns = plan.bands(), plan.columns()
    if scheduler is not None:
        yield from _bands_on_cluster(scenes, plan, scorer, scheduler)
        return
    if scenes.arrays is not None:
        for band in bands:
            before, after = (
                np.asarray(a.data[:, band.lo : min(band.hi, plan.height), :].compute())
                for a in scenes.arrays
            )
            yield score_band(before, after, band, columns, plan, scorer)
        return
    yield from _bands_from_files(scenes, plan, scorer, bands, columns)


def _bands_from_files(
    scenes: ScenePair,
    plan: TilePlan,
    scorer: PixelScorer | PixelEnsemble,
    bands: list[Span],
    columns: list[Span],
) -> Iterator[np.ndarray]:
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(scenes.before_source) as sb, rasterio.open(scenes.after_source) as sa:
        for band in bands:
            win = Window(0, band.lo, plan.width, min(band.hi, plan.height) - band.lo)
            yield score_band(sb.read(window=win), sa.read(window=win), band, columns, plan, scorer)


def _bands_on_cluster(
    scenes: ScenePair, plan: TilePlan, scorer: PixelScorer | PixelEnsemble, address: str
) -> Iterator[np.ndarray]:
    """Each band a dask task reading its rows (with halo) on the workers; gathered in order."""
    import dask
    from distributed import Client

    assert scenes.arrays is not None, "scenes are opened lazily for a cluster"
    before, after = scenes.arrays
    columns = plan.columns()
    with Client(address) as client:
        remote = client.scatter(scorer, broadcast=True, hash=False)
        tasks = [
            dask.delayed(score_band)(
                before.data[:, band.lo : min(band.hi, plan.height), :],
                after.data[:, band.lo : min(band.hi, plan.height), :],
                band,
                columns,
                plan,
                remote,
            )
            for band in plan.bands()
        ]
        for future in client.compute(tasks):
            yield future.result()
