"""Bootstrap intervals that resample whole towns, cities or ground blocks, and paired differences.

Neighbouring patches and pixels share buildings, light, haze and damage, so resampling them
one by one pretends there is far more independent evidence than there is and gives intervals
that are too narrow. The unit of independence here is a *group*: a town or city (an AOI), or a
square ground block of at least 640 m when one AOI is scored (:func:`spatial_blocks`). The
bootstrap draws as many groups as there are, with replacement, and recomputes the metric on all
units of the drawn groups (a cluster bootstrap); :func:`paired_difference` computes two models'
metrics on the *same* drawn groups, so an interval on their difference accounts for the ground
both models share (two separate intervals that overlap say nothing about the difference).

Resampling is done by :func:`scipy.stats.bootstrap` on the group indices; its statistic turns
each resample into per-group multiplicities and evaluates the metric with those as weights, so
no unit is copied. The interval is the **percentile** interval, not BCa: with the 3-8 cities of
a real evaluation BCa's acceleration is a jackknife over 3-8 values, and a leave-one-city-out
sample that holds one class makes it undefined; the percentile interval stays defined and says
plainly what the resamples did. With few groups any bootstrap interval is rough (3 cities give
only 10 distinct resamples): the number of groups is reported beside every interval.

Resamples holding one class are skipped (a ranking metric is undefined there); the interval is
None when fewer than :data:`MIN_RESAMPLES` remain, or when there is a single group to draw.
To stay fast over millions of pixels, a score array with more than :data:`MAX_LEVELS` distinct
values is binned to that many quantile levels for the *resamples* (never across a metric's own
threshold, so counts at the threshold stay exact); the reported value is always computed on the
unbinned scores.

Metrics are callables ``metric(y, score, sample_weight=None) -> float``: those of
:mod:`damagenet.evaluation.scores`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from scipy.stats import DegenerateDataWarning, bootstrap

from damagenet.defaults import N_BOOT

#: fewest resamples holding both classes for an interval to be reported
MIN_RESAMPLES = 20
#: distinct score levels kept exactly in the resamples (more are binned to quantile levels)
MAX_LEVELS = 4096
#: side of the ground blocks of a one-AOI evaluation, metres (the dataset's default block)
BLOCK_M = 640.0
#: mean Earth radius, metres (for block positions from longitude and latitude)
EARTH_RADIUS_M = 6_371_000.0


class Metric(Protocol):
    """A figure of labels and scores, with optional weights per unit."""

    def __call__(
        self, y: np.ndarray, score: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> float: ...


@dataclass(frozen=True)
class Interval:
    """A figure and its bootstrap interval; ``low`` and ``high`` are None when undefined.

    ``groups`` is the number of groups resampled, ``resamples`` how many resamples held both
    classes, ``note`` why there is no interval when there is none.
    """

    value: float | None
    low: float | None = None
    high: float | None = None
    groups: int = 0
    resamples: int = 0
    note: str | None = None

    def as_dict(self) -> dict[str, float | None]:
        """``{"value", "low", "high"}``: the shape every JSON output of the project uses."""
        return {"value": self.value, "low": self.low, "high": self.high}


def spatial_blocks(x: np.ndarray, y: np.ndarray, block_m: float = BLOCK_M) -> np.ndarray:
    """Block id (0, 1, ...) of every unit from its map coordinates in metres.

    Blocks are squares of ``block_m`` counted from the coordinates' origin; ids follow the
    blocks' order (by x, then y), so the same positions always give the same ids.
    """
    if not block_m > 0:
        raise ValueError(f"block side must be positive, got {block_m}")
    cells = np.stack([np.floor(np.asarray(x) / block_m), np.floor(np.asarray(y) / block_m)], 1)
    if not len(cells):
        return np.zeros(0, dtype=np.int64)
    _, ids = np.unique(cells, axis=0, return_inverse=True)
    return ids.reshape(-1).astype(np.int64)


def lonlat_metres(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """East and north metres of longitudes and latitudes, equirectangular about their mean
    latitude: within a city (tens of km) distances are right to well under 1 %."""
    lon, lat = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    lat0 = np.deg2rad(lat.mean()) if len(lat) else 0.0
    return (
        EARTH_RADIUS_M * np.cos(lat0) * np.deg2rad(lon),
        EARTH_RADIUS_M * np.deg2rad(lat),
    )


@dataclass(frozen=True)
class Grouping:
    """What an evaluation resamples: a group per unit and how the groups were made."""

    ids: np.ndarray
    by: str
    block_m: float | None = None

    def describe(self) -> dict[str, Any]:
        """The record of metrics.json: by what, how many groups, block side."""
        out: dict[str, Any] = {"by": self.by, "groups": int(len(np.unique(self.ids)))}
        if self.block_m is not None:
            out["block_m"] = self.block_m
        return out


def groups_for(
    aoi: np.ndarray | None,
    lon: np.ndarray | None,
    lat: np.ndarray | None,
    block_m: float = BLOCK_M,
) -> Grouping:
    """Whole AOIs when the units come from several; else ground blocks of ``block_m``.

    Blocks come from the units' longitude and latitude; blocks of different AOIs never merge.
    Without positions a single AOI is one group, which gives no interval (said in the note).
    """
    n = len(aoi) if aoi is not None else len(lon) if lon is not None else 0
    names = np.asarray(aoi).astype(str) if aoi is not None else np.full(n, "")
    if len(np.unique(names)) > 1:
        return Grouping(np.unique(names, return_inverse=True)[1].reshape(-1), "aoi")
    if lon is None or lat is None:
        return Grouping(np.zeros(n, dtype=np.int64), "aoi")
    x, y = lonlat_metres(lon, lat)
    return Grouping(spatial_blocks(x, y, block_m), "block", float(block_m))


def interval_record(
    grouping: Grouping, n_resamples: int, seed: int, units: str, confidence: float = 0.95
) -> dict[str, Any]:
    """How an output's intervals were resampled, for its JSON (``interval``)."""
    return {
        "method": "percentile bootstrap of whole groups (cluster bootstrap; scipy.stats."
        "bootstrap draws the groups); paired differences score both models on the same draws",
        **grouping.describe(),
        "units_grouped_by": units,
        "n_resamples": int(n_resamples),
        "confidence": confidence,
        "seed": int(seed),
        "min_resamples": MIN_RESAMPLES,
        "score_levels": MAX_LEVELS,
    }


def grouped_interval(
    metric: Metric,
    y_true: np.ndarray,
    score: np.ndarray,
    groups: np.ndarray,
    *,
    n_resamples: int = N_BOOT,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """``metric(y_true, score)`` and its percentile interval over resampled whole groups."""
    y, s = np.asarray(y_true), np.asarray(score)
    codes, n_groups = _codes(groups, len(y))
    if not _both_classes(y):
        return Interval(None, groups=n_groups, note="the units hold one class")
    value = float(metric(y, s))
    table = _Table.build(y, s, codes, n_groups, metric)
    return _interval(value, table.evaluate, n_groups, n_resamples, confidence, seed)


def paired_difference(
    metric: Metric,
    y_true: np.ndarray,
    score_a: np.ndarray,
    score_b: np.ndarray,
    groups: np.ndarray,
    *,
    n_resamples: int = N_BOOT,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """``metric(a) - metric(b)`` on the same units, its interval over the same resampled groups.

    Each resample draws one set of groups and scores both models on it, so what the two
    share (the ground, its difficulty) cancels; identical scores give exactly 0 and a 0-width
    interval.
    """
    y = np.asarray(y_true)
    codes, n_groups = _codes(groups, len(y))
    if not _both_classes(y):
        return Interval(None, groups=n_groups, note="the units hold one class")
    value = float(metric(y, np.asarray(score_a))) - float(metric(y, np.asarray(score_b)))
    ta = _Table.build(y, np.asarray(score_a), codes, n_groups, metric)
    tb = _Table.build(y, np.asarray(score_b), codes, n_groups, metric)

    def difference(counts: np.ndarray) -> float:
        return ta.evaluate(counts) - tb.evaluate(counts)

    return _interval(value, difference, n_groups, n_resamples, confidence, seed)


def _codes(groups: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"{groups.shape} groups for {n} units: one group per unit")
    uniq, codes = np.unique(groups, return_inverse=True)
    return codes.reshape(-1), len(uniq)


def _both_classes(y: np.ndarray) -> bool:
    return bool(np.any(y == 1)) and bool(np.any(y != 1))


@dataclass(frozen=True)
class _Table:
    """Units collapsed to weighted atoms (level, group, class), sorted by score."""

    metric: Metric
    y: np.ndarray
    score: np.ndarray
    group: np.ndarray
    count: np.ndarray

    @classmethod
    def build(
        cls, y: np.ndarray, score: np.ndarray, codes: np.ndarray, n_groups: int, metric: Metric
    ) -> _Table:
        levels = _levels(score.astype(np.float64), getattr(metric, "threshold", None))
        uniq_levels, level = np.unique(levels, return_inverse=True)
        key = (level.reshape(-1).astype(np.int64) * n_groups + codes) * 2 + (y == 1)
        atoms, count = np.unique(key, return_counts=True)
        return cls(
            metric,
            (atoms % 2).astype(np.int64),
            uniq_levels[atoms // 2 // n_groups],
            (atoms // 2) % n_groups,
            count.astype(np.float64),
        )

    def evaluate(self, counts: np.ndarray) -> float:
        """The metric with each group weighted by how often the resample drew it (NaN when
        the resample holds one class)."""
        w = self.count * counts[self.group]
        keep = w > 0
        y = self.y[keep]
        if not _both_classes(y):
            return float("nan")
        return float(self.metric(y, self.score[keep], sample_weight=w[keep]))


def _levels(score: np.ndarray, threshold: float | None) -> np.ndarray:
    """The scores, or their quantile bin's lower edge when there are more than MAX_LEVELS
    distinct ones; a metric's threshold is an edge, so no bin straddles it."""
    if len(np.unique(score)) <= MAX_LEVELS:
        return score
    edges = np.quantile(score, np.linspace(0, 1, MAX_LEVELS + 1))
    if threshold is not None:
        edges = np.append(edges, threshold)
    edges = np.unique(edges)
    return edges[np.clip(np.searchsorted(edges, score, side="right") - 1, 0, None)]


def _interval(
    value: float,
    statistic: Callable[[np.ndarray], float],
    n_groups: int,
    n_resamples: int,
    confidence: float,
    seed: int,
) -> Interval:
    """Percentile interval of ``statistic`` (a function of per-group draw counts)."""
    if n_groups < 2:
        return Interval(
            value, groups=n_groups, note="one group: nothing to resample (give several AOIs "
            "or positions for ground blocks)",
        )  # fmt: skip
    dist = _distribution(statistic, n_groups, n_resamples, confidence, seed)
    ok = dist[np.isfinite(dist)]
    if len(ok) < MIN_RESAMPLES:
        note = f"only {len(ok)} of {n_resamples} resamples hold both classes"
        return Interval(value, groups=n_groups, resamples=len(ok), note=note)
    alpha = (1 - confidence) / 2
    low, high = np.percentile(ok, [100 * alpha, 100 * (1 - alpha)])
    return Interval(value, float(low), float(high), n_groups, len(ok))


def _distribution(
    statistic: Callable[[np.ndarray], float],
    n_groups: int,
    n_resamples: int,
    confidence: float,
    seed: int,
) -> np.ndarray:
    """The statistic of every resample of the group indices (scipy draws them, seeded).

    Resamples that draw the same groups the same number of times give the same value, which
    is computed once (3 groups have only 10 distinct resamples).
    """
    memo: dict[bytes, float] = {}

    def of_indices(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        rows = np.atleast_2d(idx)
        out = np.empty(len(rows))
        for r, row in enumerate(rows):
            counts = np.bincount(row, minlength=n_groups).astype(np.float64)
            key = counts.tobytes()
            if key not in memo:
                memo[key] = statistic(counts)
            out[r] = memo[key]
        return out

    with warnings.catch_warnings():  # scipy's own interval is NaN when any resample is
        warnings.simplefilter("ignore", DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        res = bootstrap(
            (np.arange(n_groups),),
            of_indices,
            n_resamples=n_resamples,
            vectorized=True,
            confidence_level=confidence,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    return np.asarray(res.bootstrap_distribution, dtype=np.float64)
