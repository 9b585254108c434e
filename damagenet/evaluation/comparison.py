"""The network beside its baselines, and its calibration, on the same test pairs.

Called by ``damagenet evaluate`` (and so at the end of ``damagenet train``): scores the Siamese
network, the training-free change detector and the gradient-boosted trees with intervals that
resample whole AOIs or ground blocks, gives a paired interval on the network's difference from
each baseline (:mod:`damagenet.evaluation.scores`), reports the network's calibration
(:mod:`damagenet.evaluation.calibration`), and draws ``roc_models.png`` and ``reliability.png``.
Every threshold is chosen on validation, never on test.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from damagenet.evaluation.baselines import baseline_scores
from damagenet.evaluation.calibration import (
    apply_calibration,
    calibration_report,
    reliability_plot,
)
from damagenet.evaluation.intervals import Grouping
from damagenet.evaluation.metrics import THRESHOLD_RULES, choose_threshold
from damagenet.evaluation.scores import (
    N_BOOT,
    Scored,
    compare_all,
    fmt_ci,
    fmt_diff,
    threshold_for_precision,
)
from damagenet.logits import logit

log = logging.getLogger(__name__)
NETWORK = "siamese"


def operating_points(
    y_val: np.ndarray,
    scores: dict[str, dict[str, np.ndarray]],
    rule: str,
    fixed: dict[str, float] | None = None,
) -> dict[str, Scored]:
    """Each model's test scores with thresholds chosen on validation with ``rule``.

    ``scores`` maps model names to ``{"val": ..., "test": ...}``; a model named in ``fixed``
    keeps that threshold (the network its checkpoint's, so the figures match its maps).
    """
    rule = rule if rule in THRESHOLD_RULES else "recall90"
    fixed = fixed or {}
    return {
        name: Scored(
            s["test"],
            fixed[name] if name in fixed else choose_threshold(y_val, s["val"], rule),
            threshold_for_precision(y_val, s["val"]),
        )
        for name, s in scores.items()
    }


def log_table(table: dict[str, dict[str, Any]], diffs: dict[str, dict[str, Any]]) -> None:
    """Each model's figures and each paired difference, one log line apiece."""
    for name, row in table.items():
        log.info(
            "%-8s ROC-AUC %s  PR-AUC %s  F1 %s",
            name,
            fmt_ci(row["roc_auc"]),
            fmt_ci(row["pr_auc"]),
            fmt_ci(row["f1"]),
        )
    for name, row in diffs.items():
        log.info(
            "%s: ROC-AUC %s  F1 %s (paired)", name, fmt_diff(row["roc_auc"]), fmt_diff(row["f1"])
        )


def compare_models(
    splits: dict[str, Any],
    test_prob: np.ndarray,
    val_prob: np.ndarray | None,
    threshold: dict[str, Any],
    out_dir: str | Path,
    grouping: Grouping,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> dict[str, Any]:
    """Sections ``baselines``, ``paired_differences`` and ``calibration`` of metrics.json,
    plus the plots.

    ``baselines`` holds every model's scores (the network's too, under ``siamese``, computed
    the same way so the three rows compare like with like); ``paired_differences`` the
    network minus each baseline on the same resampled groups.
    """
    out_dir = Path(out_dir)
    if val_prob is None or "train" not in splits:
        reason = "needs train and val splits (baselines fit on train, thresholds on val)"
        skipped = {"skipped": reason}
        return {"baselines": skipped, "paired_differences": skipped, "calibration": skipped}
    y_val, y_test = splits["val"].y, splits["test"].y
    scores = {NETWORK: {"val": val_prob, "test": test_prob}, **baseline_scores(splits, seed)}
    models = operating_points(
        y_val, scores, threshold.get("rule", "recall90"), {NETWORK: float(threshold["value"])}
    )
    pairs = [(NETWORK, b) for b in models if b != NETWORK]
    result = compare_all(y_test, models, pairs, grouping.ids, n_boot, seed)
    table = result["scores"]
    for row in table.values():
        row["threshold_rule"] = threshold.get("rule", "recall90")
    calib = calibration_report(y_val, logit(val_prob), y_test, logit(test_prob))
    roc_models_plot(
        y_test, {k: v["test"] for k, v in scores.items()}, table, out_dir / "roc_models.png"
    )
    reliability_plot(
        y_test,
        {"raw": test_prob, "temperature (val)": apply_calibration(test_prob, calib["calibration"])},
        out_dir / "reliability.png",
    )
    log_table(table, result["paired_differences"])
    log.info(
        "calibration: test ECE %.3f raw, %.3f after temperature T=%.2f (fit on val)",
        calib["raw"]["ece"],
        calib["temperature"]["ece"],
        calib["calibration"]["T"],
    )
    return {
        "baselines": table,
        "paired_differences": result["paired_differences"],
        "calibration": calib,
    }


def roc_models_plot(
    y: np.ndarray, scores: dict[str, np.ndarray], table: dict[str, dict[str, Any]], path: str | Path
) -> None:
    """One ROC curve per model on the same test units, AUC and interval in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(5, 4.5))
    for name, s in scores.items():
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=f"{name}: {fmt_ci(table[name]['roc_auc'])}")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate (damage recall)")
    ax.set_title("ROC-AUC (95% interval, whole AOIs or ground blocks resampled)", fontsize=8)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
