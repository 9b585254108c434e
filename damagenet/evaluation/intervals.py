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
each resample into per-group draw counts and evaluates the metric from per-group counts of
damaged and undamaged units at each score level weighted by them (all resamples at once, a
sparse matrix product), so no unit is copied. The interval is the **percentile** interval,
not BCa: with the 3-8 cities of a real evaluation BCa's acceleration is a jackknife over 3-8
values, and a leave-one-city-out sample that holds one class makes it undefined; the
percentile interval stays defined and says plainly what the resamples did. With few groups
any bootstrap interval is rough (3 cities give only 10 distinct resamples): the number of
groups is reported beside every interval.

Resamples holding one class are skipped (a ranking metric is undefined there); the interval is
None when fewer than :data:`MIN_RESAMPLES` remain, or when there is a single group to draw.
To stay fast over millions of pixels, a score array with more than :data:`MAX_LEVELS` distinct
values is binned to that many quantile levels for the *resamples* (never across a metric's own
threshold, so counts at the threshold stay exact); the reported value is always computed on the
unbinned scores.

Metrics (:class:`Metric`) are those of :mod:`damagenet.evaluation.scores` (``roc_auc``,
``average_precision``, ``f1_at(t)``, ``precision_at(t)``, ``recall_at(t)``): called as
``metric(y, score, sample_weight=None)``, and on many weightings at once by ``on_levels``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from scipy import sparse
from scipy.stats import DegenerateDataWarning, bootstrap

from damagenet.defaults import N_BOOT

#: fewest resamples holding both classes for an interval to be reported
MIN_RESAMPLES = 20
#: distinct score levels kept exactly in the resamples (more are binned to quantile levels)
MAX_LEVELS = 2048
#: side of the ground blocks of a one-AOI evaluation, metres (the dataset's default block)
BLOCK_M = 640.0
#: distinct resamples evaluated at once (bounds memory: CHUNK x levels floats per class)
CHUNK = 256
#: mean Earth radius, metres (for block positions from longitude and latitude)
EARTH_RADIUS_M = 6_371_000.0


class Metric(Protocol):
    """A figure of labels and scores (optionally weighted per unit), and the same figure of
    many weightings at once from the weight of damaged and undamaged units per distinct score.

    ``on_levels(levels, pos, neg)``: ``levels`` (L,) ascending distinct scores, ``pos`` and
    ``neg`` (R, L) weights; returns (R,). The metrics of :mod:`damagenet.evaluation.scores`.
    """

    def __call__(
        self, y: np.ndarray, score: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> float: ...

    def on_levels(self, levels: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> np.ndarray: ...


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


def grouped_intervals(
    metrics: Mapping[str, Metric],
    y_true: np.ndarray,
    score: np.ndarray,
    groups: np.ndarray,
    *,
    n_resamples: int = N_BOOT,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Interval]:
    """Several figures of one model, each with its interval, all on the same resamples."""
    return _intervals(metrics, y_true, [(score, 1.0)], groups, n_resamples, confidence, seed)


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
    return grouped_intervals(
        {"m": metric}, y_true, score, groups, n_resamples=n_resamples, confidence=confidence,
        seed=seed,
    )["m"]  # fmt: skip


def paired_differences(
    metrics: Mapping[str, Metric],
    y_true: np.ndarray,
    score_a: np.ndarray,
    score_b: np.ndarray,
    groups: np.ndarray,
    *,
    n_resamples: int = N_BOOT,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Interval]:
    """:func:`paired_difference` of several figures, all on the same resamples."""
    scored = [(score_a, 1.0), (score_b, -1.0)]
    return _intervals(metrics, y_true, scored, groups, n_resamples, confidence, seed)


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
    return paired_differences(
        {"m": metric}, y_true, score_a, score_b, groups, n_resamples=n_resamples,
        confidence=confidence, seed=seed,
    )["m"]  # fmt: skip


def _intervals(
    metrics: Mapping[str, Metric],
    y_true: np.ndarray,
    scored: list[tuple[np.ndarray, float]],
    groups: np.ndarray,
    n_resamples: int,
    confidence: float,
    seed: int,
) -> dict[str, Interval]:
    """Each metric's signed sum over ``scored`` (score array, sign), with intervals."""
    y = np.asarray(y_true)
    codes, n_groups = _codes(groups, len(y))
    if not _both_classes(y):
        none = Interval(None, groups=n_groups, note="the units hold one class")
        return dict.fromkeys(metrics, none)
    values = {
        name: float(sum(sign * m(y, np.asarray(s)) for s, sign in scored))
        for name, m in metrics.items()
    }
    if n_groups < 2:
        note = "one group: nothing to resample (give several AOIs or positions for ground blocks)"
        return {name: Interval(v, groups=n_groups, note=note) for name, v in values.items()}
    edges = [t for m in metrics.values() if (t := getattr(m, "threshold", None)) is not None]
    tables = [(_Table.build(y, np.asarray(s), codes, n_groups, edges), sign) for s, sign in scored]

    def statistic(counts: np.ndarray) -> np.ndarray:
        return np.stack(
            [sum(sign * t.evaluate(m, counts) for t, sign in tables) for m in metrics.values()]
        )

    dist = _distribution(statistic, n_groups, len(metrics), n_resamples, confidence, seed)
    return {
        name: _interval(values[name], row, n_groups, n_resamples, confidence)
        for name, row in zip(metrics, dist, strict=True)
    }


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
    """Per group, the number of damaged and undamaged units at each distinct score level."""

    levels: np.ndarray
    pos: sparse.csr_matrix
    neg: sparse.csr_matrix

    @classmethod
    def build(
        cls,
        y: np.ndarray,
        score: np.ndarray,
        codes: np.ndarray,
        n_groups: int,
        edges: list[float] | None = None,
    ) -> _Table:
        levels, level = np.unique(score.astype(np.float64), return_inverse=True)
        if len(levels) > MAX_LEVELS:
            levels, level = np.unique(_binned(score, edges or []), return_inverse=True)
        damaged = y == 1
        shape = (n_groups, len(levels))

        def counts(mask: np.ndarray) -> sparse.csr_matrix:
            data = np.ones(int(mask.sum()))
            return sparse.csr_matrix((data, (codes[mask], level.reshape(-1)[mask])), shape=shape)

        return cls(levels, counts(damaged), counts(~damaged))

    def evaluate(self, metric: Metric, draws: np.ndarray) -> np.ndarray:
        """(R,) the metric with each group weighted by how often each resample drew it (rows
        of ``draws``, (R, groups)); NaN where a resample holds one class."""
        pos, neg = np.asarray(draws @ self.pos), np.asarray(draws @ self.neg)
        ok = (pos.sum(axis=1) > 0) & (neg.sum(axis=1) > 0)
        if ok.all():
            return metric.on_levels(self.levels, pos, neg)
        out = np.full(len(draws), np.nan)
        if ok.any():
            out[ok] = metric.on_levels(self.levels, pos[ok], neg[ok])
        return out


def _binned(score: np.ndarray, edges: list[float]) -> np.ndarray:
    """Each score's quantile bin (its lower edge), MAX_LEVELS bins; the metrics' thresholds
    are edges, so no bin straddles one."""
    bins = np.unique(
        np.r_[np.quantile(score, np.linspace(0, 1, MAX_LEVELS, endpoint=False)), edges]
    )
    return bins[np.clip(np.searchsorted(bins, score, side="right") - 1, 0, None)]


def _interval(
    value: float, dist: np.ndarray, n_groups: int, n_resamples: int, confidence: float
) -> Interval:
    """Percentile interval of the defined resamples of ``dist``."""
    ok = dist[np.isfinite(dist)]
    if len(ok) < MIN_RESAMPLES:
        note = f"only {len(ok)} of {n_resamples} resamples hold both classes"
        return Interval(value, groups=n_groups, resamples=len(ok), note=note)
    alpha = (1 - confidence) / 2
    low, high = np.percentile(ok, [100 * alpha, 100 * (1 - alpha)])
    return Interval(value, float(low), float(high), n_groups, len(ok))


def _distribution(
    statistic: Callable[[np.ndarray], np.ndarray],
    n_groups: int,
    n_stats: int,
    n_resamples: int,
    confidence: float,
    seed: int,
) -> np.ndarray:
    """(statistics, resamples): the statistics of every resample of the group indices.

    scipy draws the resamples (seeded); each becomes a row of draw counts per group, and
    resamples that draw the same groups equally often are evaluated once (3 groups have only
    10 distinct resamples).
    """

    def of_indices(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        rows = np.atleast_2d(idx).astype(np.int64)
        flat = rows + n_groups * np.arange(len(rows))[:, None]
        draws = np.bincount(flat.ravel(), minlength=len(rows) * n_groups)
        draws = draws.reshape(len(rows), n_groups).astype(np.float64)
        uniq, inverse = np.unique(draws, axis=0, return_inverse=True)
        values = np.concatenate(
            [statistic(uniq[i : i + CHUNK]) for i in range(0, len(uniq), CHUNK)], axis=1
        )
        return values[:, inverse.reshape(-1)]

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
    return np.asarray(res.bootstrap_distribution, dtype=np.float64).reshape(n_stats, -1)
