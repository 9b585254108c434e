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
from damagenet.evaluation.intervals import Metric, grouped_interval, paired_difference

#: precision the "recall at precision" operating point aims for (chosen on validation)
PRECISION_TARGET = 0.8
#: figures compared between two models (paired differences)
COMPARED = ("roc_auc", "pr_auc", "f1")


def _sorted_levels(
    y: np.ndarray, score: np.ndarray, sample_weight: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Weight of damaged and undamaged units at each distinct score, ascending."""
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    order = np.argsort(score, kind="stable")
    s, pos = score[order], y[order] == 1
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each distinct score
    cum_pos = np.cumsum(np.where(pos, w[order], 0.0))[last]
    cum_all = np.cumsum(w[order])[last]
    p = np.diff(np.r_[0.0, cum_pos])
    return p, np.diff(np.r_[0.0, cum_all]) - p


def roc_auc(y: np.ndarray, score: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
    """ROC-AUC as the Mann-Whitney statistic (ties count half), optionally weighted; sklearn's
    value, many times faster, which matters inside thousands of bootstrap resamples."""
    p, n = _sorted_levels(np.asarray(y), np.asarray(score), sample_weight)
    below = np.cumsum(n) - n
    return float(np.sum(p * (below + 0.5 * n)) / (p.sum() * n.sum()))


def average_precision(
    y: np.ndarray, score: np.ndarray, sample_weight: np.ndarray | None = None
) -> float:
    """PR-AUC as sklearn's average precision (steps at each distinct score), optionally
    weighted."""
    p, n = _sorted_levels(np.asarray(y), np.asarray(score), sample_weight)
    tp, pred = np.cumsum(p[::-1]), np.cumsum((p + n)[::-1])  # from the highest score down
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * tp / pred))


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
        w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, np.float64)
        pred, pos = np.asarray(score) >= self.threshold, np.asarray(y) == 1
        tp, predicted, actual = w[pred & pos].sum(), w[pred].sum(), w[pos].sum()
        num, den = {
            "f1": (2 * tp, predicted + actual),
            "precision": (tp, predicted),
            "recall": (tp, actual),
        }[self.kind]
        return float(num / den) if den else 0.0


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
    for name, (metric, point) in FIGURES.items():
        ci = grouped_interval(metric, y, model.at(point), groups, n_resamples=n_boot, seed=seed)
        out[name] = ci.as_dict()
    for point in ("threshold", "precision_threshold"):
        value = getattr(model, point)
        if np.ndim(value) == 0:
            out[point] = float(value)
    out["precision_target"] = PRECISION_TARGET
    out[unit] = int(len(y))
    out["damaged"] = int(np.sum(y == 1))
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
    out = {}
    for name in COMPARED:
        metric, point = FIGURES[name]
        ci = paired_difference(
            metric, y, a.at(point), b.at(point), groups, n_resamples=n_boot, seed=seed
        )
        out[name] = ci.as_dict()
    return out


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
