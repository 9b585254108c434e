"""Classification metrics and the decision threshold.

Metrics follow the study's classification report (per class precision, recall, F1, support;
accuracy; macro F1) and add ROC-AUC and PR-AUC. The threshold is chosen on the *validation*
split, never on test: ``recall90`` takes the highest threshold whose damage recall is at least
0.9 (the most precise operating point that still finds nine in ten damaged patches), ``f1`` the
threshold of maximum damage F1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    classification_report,
    confusion_matrix,
    precision_recall_curve,
    roc_auc_score,
)

from damagenet.defaults import THRESHOLD_RULES

CLASS_NAMES = ("No-Damage", "Damage")


def choose_threshold(
    y: np.ndarray, prob: np.ndarray, rule: str = "recall90", target_recall: float = 0.9
) -> float:
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"threshold rule must be one of {THRESHOLD_RULES}, got {rule!r}")
    precision, recall, thresholds = precision_recall_curve(y, prob)
    precision, recall = precision[:-1], recall[:-1]  # align with thresholds
    if rule == "f1":
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        return float(thresholds[int(np.argmax(f1))])
    ok = np.nonzero(recall >= target_recall)[0]
    return float(thresholds[ok[-1]]) if len(ok) else float(thresholds[0])


def report(y: np.ndarray, prob: np.ndarray, threshold: float) -> dict[str, Any]:
    """The study's classification report at ``threshold``, plus the confusion matrix."""
    pred = (prob >= threshold).astype(int)
    rep = classification_report(
        y, pred, labels=[0, 1], target_names=list(CLASS_NAMES), output_dict=True, zero_division=0
    )
    rep["macro_f1"] = rep["macro avg"]["f1-score"]
    rep["threshold"] = float(threshold)
    rep["confusion_matrix"] = confusion_matrix(y, pred, labels=[0, 1]).tolist()
    return rep


def ranking_metrics(y: np.ndarray, prob: np.ndarray) -> dict[str, float | None]:
    if len(np.unique(y)) < 2:
        return {"roc_auc": None, "pr_auc": None}
    return {
        "roc_auc": float(roc_auc_score(y, prob)),
        "pr_auc": float(average_precision_score(y, prob)),
    }
