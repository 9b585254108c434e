"""Scores of models on held-out units, each with an interval over resampled whole groups.

Every threshold is fixed beforehand on *validation*; only the test units are resampled, by
whole towns, cities or ground blocks (:mod:`damagenet.evaluation.intervals`). Reported per
model: ROC-AUC, PR-AUC (average precision), F1, precision and recall at the validation-chosen
threshold, and damage recall at the threshold that reached the target precision on
validation (with the precision it reached on test). Every comparison of two models carries a
paired interval on their difference (:func:`paired_scores`).

The metrics take optional per-unit weights (``sample_weight``), which is how the bootstrap
evaluates a resample without copying its units. Thresholds enter as a shift of the scores
(``score - threshold`` against 0), so a threshold may differ per unit (cross-validation pools
units of folds with their own thresholds) and two models with different thresholds are
compared on the same footing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_curve

from damagenet.defaults import N_BOOT
from damagenet.evaluation.intervals import Metric, grouped_intervals, paired_differences

#: precision the "recall at precision" operating point aims for (chosen on validation)
PRECISION_TARGET = 0.8
#: figures compared between two models (paired differences)
COMPARED = ("roc_auc", "pr_auc", "f1")


def level_weights(
    y: np.ndarray, score: np.ndarray, sample_weight: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct scores ascending, and the weight of damaged and undamaged units at each, as
    (1, L) rows: the form every metric here computes from (:meth:`Metric.on_levels`)."""
    y, score = np.asarray(y), np.asarray(score)
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    levels, level = np.unique(score, return_inverse=True)
    level = level.reshape(-1)
    pos = np.bincount(level, weights=np.where(y == 1, w, 0.0), minlength=len(levels))
    total = np.bincount(level, weights=w, minlength=len(levels))
    return levels, pos[None], (total - pos)[None]


def _roc_auc(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    below = np.cumsum(neg, axis=1) - neg
    return np.sum(pos * (below + 0.5 * neg), axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))


def _average_precision(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    tp = np.cumsum(pos[:, ::-1], axis=1)  # from the highest score down
    predicted = np.cumsum((pos + neg)[:, ::-1], axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall_step = np.diff(tp / tp[:, -1:], axis=1, prepend=0.0)
    return np.sum(recall_step * precision, axis=1)


@dataclass(frozen=True)
class Ranking:
    """A threshold-free figure of how the scores rank damaged above undamaged units.

    ``roc_auc``: the Mann-Whitney statistic (ties count half); ``average_precision``: PR-AUC
    as sklearn computes it (steps at each distinct score). sklearn's values, optionally
    weighted, many times faster, which matters inside thousands of bootstrap resamples.
    """

    name: str

    def __call__(
        self, y: np.ndarray, score: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> float:
        return float(self.on_levels(*level_weights(y, score, sample_weight))[0])

    def on_levels(self, levels: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
        return {"roc_auc": _roc_auc, "average_precision": _average_precision}[self.name](pos, neg)


roc_auc = Ranking("roc_auc")
average_precision = Ranking("average_precision")


@dataclass(frozen=True)
class AtThreshold:
    """F1, precision or recall of the damage class for scores at or above ``threshold``.

    Precision without any predicted damage and recall without damage are 0, as before.
    """

    kind: str
    threshold: float

    def __call__(
        self, y: np.ndarray, score: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> float:
        return float(self.on_levels(*level_weights(y, score, sample_weight))[0])

    def on_levels(self, levels: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
        above = levels >= self.threshold
        tp = pos[:, above].sum(axis=1)
        num, den = {
            "f1": (2 * tp, (pos + neg)[:, above].sum(axis=1) + pos.sum(axis=1)),
            "precision": (tp, (pos + neg)[:, above].sum(axis=1)),
            "recall": (tp, pos.sum(axis=1)),
        }[self.kind]
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def f1_at(threshold: float) -> AtThreshold:
    return AtThreshold("f1", threshold)


def recall_at(threshold: float) -> AtThreshold:
    return AtThreshold("recall", threshold)


def precision_at(threshold: float) -> AtThreshold:
    return AtThreshold("precision", threshold)


#: every reported figure: its metric on shifted scores, and the operating point shifted to 0
#: (None: threshold-free)
FIGURES: dict[str, tuple[Metric, str | None]] = {
    "roc_auc": (roc_auc, None),
    "pr_auc": (average_precision, None),
    "f1": (f1_at(0.0), "threshold"),
    "precision": (precision_at(0.0), "threshold"),
    "recall": (recall_at(0.0), "threshold"),
    "recall_at_precision": (recall_at(0.0), "precision_threshold"),
    "precision_at_precision_threshold": (precision_at(0.0), "precision_threshold"),
}


def threshold_for_precision(
    y: np.ndarray, score: np.ndarray, target: float = PRECISION_TARGET
) -> float:
    """Lowest threshold whose precision on (validation) units reaches ``target``.

    The most recall that precision allows; when no threshold reaches it, the one of highest
    precision.
    """
    precision, _, thresholds = precision_recall_curve(y, score)
    precision = precision[:-1]
    ok = np.nonzero(precision >= target)[0]
    return float(thresholds[ok[0]] if len(ok) else thresholds[int(np.argmax(precision))])


@dataclass(frozen=True)
class Scored:
    """One model's test scores and its operating points, chosen on validation.

    The thresholds are one value, or one per unit (pooled folds, each with its own).
    """

    score: np.ndarray
    threshold: float | np.ndarray
    precision_threshold: float | np.ndarray

    def at(self, point: str | None) -> np.ndarray:
        """The scores shifted so that the operating point ``point`` is 0."""
        return self.score if point is None else self.score - getattr(self, point)


def score_model(
    y: np.ndarray,
    model: Scored,
    groups: np.ndarray,
    n_boot: int = N_BOOT,
    seed: int = 0,
    unit: str = "pairs",
) -> dict[str, Any]:
    """Every figure of one model on test units, each ``{value, low, high}``, and the counts
    (``unit``: what a unit is, ``pairs``, ``pixels``, ``cells`` or ``points``)."""
    out: dict[str, Any] = {}
    for point, metrics in _by_point(FIGURES).items():
        cis = grouped_intervals(metrics, y, model.at(point), groups, n_resamples=n_boot, seed=seed)
        out |= {name: ci.as_dict() for name, ci in cis.items()}
    out = {name: out[name] for name in FIGURES}
    for point in ("threshold", "precision_threshold"):
        value = getattr(model, point)
        if np.ndim(value) == 0:
            out[point] = float(value)
    out["precision_target"] = PRECISION_TARGET
    out[unit] = int(len(y))
    out["damaged"] = int(np.sum(y == 1))
    return out


def _by_point(figures: dict[str, tuple[Metric, str | None]]) -> dict[str | None, dict[str, Metric]]:
    """The figures grouped by the operating point their scores are shifted to."""
    out: dict[str | None, dict[str, Metric]] = {}
    for name, (metric, point) in figures.items():
        out.setdefault(point, {})[name] = metric
    return out


def paired_scores(
    y: np.ndarray,
    a: Scored,
    b: Scored,
    groups: np.ndarray,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> dict[str, dict[str, float | None]]:
    """``a`` minus ``b`` for each of :data:`COMPARED`, with paired intervals (same resamples).

    Positive: ``a`` is better (every compared figure grows with quality).
    """
    out: dict[str, dict[str, float | None]] = {}
    compared = {name: FIGURES[name] for name in COMPARED}
    for point, metrics in _by_point(compared).items():
        cis = paired_differences(
            metrics, y, a.at(point), b.at(point), groups, n_resamples=n_boot, seed=seed
        )
        out |= {name: ci.as_dict() for name, ci in cis.items()}
    return {name: out[name] for name in COMPARED}


def compare_all(
    y: np.ndarray,
    models: dict[str, Scored],
    pairs: list[tuple[str, str]],
    groups: np.ndarray,
    n_boot: int = N_BOOT,
    seed: int = 0,
    unit: str = "pairs",
) -> dict[str, Any]:
    """``{"scores": {model: score_model}, "paired_differences": {"a - b": ...}}``."""
    return {
        "scores": {m: score_model(y, s, groups, n_boot, seed, unit) for m, s in models.items()},
        "paired_differences": {
            f"{a} - {b}": paired_scores(y, models[a], models[b], groups, n_boot, seed)
            for a, b in pairs
        },
    }


def fmt_ci(entry: dict[str, float | None]) -> str:
    """``0.812 (0.770-0.851)`` for tables and logs."""
    if entry.get("value") is None:
        return "n/a"
    if entry.get("low") is None:
        return f"{entry['value']:.3f}"
    return f"{entry['value']:.3f} ({entry['low']:.3f}-{entry['high']:.3f})"


def fmt_diff(entry: dict[str, float | None]) -> str:
    """``+0.052 (+0.010 to +0.091)`` for a paired difference."""
    if entry.get("value") is None:
        return "n/a"
    if entry.get("low") is None:
        return f"{entry['value']:+.3f}"
    return f"{entry['value']:+.3f} ({entry['low']:+.3f} to {entry['high']:+.3f})"
