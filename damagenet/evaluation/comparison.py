"""The network beside its baselines, and its calibration, on the same test pairs.

Called by ``damagenet evaluate`` (and per fold by ``damagenet crossval``): scores the Siamese
network, the training-free change detector and the gradient-boosted trees with bootstrap
intervals (:mod:`damagenet.evaluation.scores`), reports the network's calibration
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
from damagenet.evaluation.metrics import THRESHOLD_RULES, choose_threshold
from damagenet.evaluation.scores import N_BOOT, fmt_ci, score_model, threshold_for_precision

log = logging.getLogger(__name__)
NETWORK = "siamese"


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def score_all(
    y_val: np.ndarray,
    y_test: np.ndarray,
    scores: dict[str, dict[str, np.ndarray]],
    rule: str,
    network_threshold: float | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """``{model: score_model(...)}``; thresholds from validation with ``rule``.

    ``scores`` maps model names to ``{"val": ..., "test": ...}``; the network may keep its own
    checkpoint threshold (``network_threshold``) so the figures match its maps.
    """
    rule = rule if rule in THRESHOLD_RULES else "recall90"
    out = {}
    for name, s in scores.items():
        thr = (
            network_threshold
            if name == NETWORK and network_threshold is not None
            else choose_threshold(y_val, s["val"], rule)
        )
        out[name] = score_model(
            y_test, s["test"], thr, threshold_for_precision(y_val, s["val"]), n_boot, seed
        )
        out[name]["threshold_rule"] = rule
    return out


def compare_models(
    splits: dict[str, Any],
    test_prob: np.ndarray,
    val_prob: np.ndarray | None,
    threshold: dict[str, Any],
    out_dir: str | Path,
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics sections ``baselines`` and ``calibration`` for ``metrics.json``, plus the plots.

    ``baselines`` holds every model's scores (the network's too, under ``siamese``, computed
    the same way so the three rows compare like with like).
    """
    out_dir = Path(out_dir)
    if val_prob is None or "train" not in splits:
        reason = "needs train and val splits (baselines fit on train, thresholds on val)"
        return {"baselines": {"skipped": reason}, "calibration": {"skipped": reason}}
    y_val, y_test = splits["val"].y, splits["test"].y
    scores = {NETWORK: {"val": val_prob, "test": test_prob}, **baseline_scores(splits, seed)}
    table = score_all(
        y_val, y_test, scores, threshold.get("rule", "recall90"), threshold.get("value"), seed=seed
    )
    calib = calibration_report(y_val, _logit(val_prob), y_test, _logit(test_prob))
    roc_models_plot(
        y_test, {k: v["test"] for k, v in scores.items()}, table, out_dir / "roc_models.png"
    )
    reliability_plot(
        y_test,
        {"raw": test_prob, "temperature (val)": apply_calibration(test_prob, calib["calibration"])},
        out_dir / "reliability.png",
    )
    for name, row in table.items():
        log.info(
            "%-8s ROC-AUC %s  PR-AUC %s  F1 %s",
            name,
            fmt_ci(row["roc_auc"]),
            fmt_ci(row["pr_auc"]),
            fmt_ci(row["f1"]),
        )
    log.info(
        "calibration: test ECE %.3f raw, %.3f after temperature T=%.2f (fit on val)",
        calib["raw"]["ece"],
        calib["temperature"]["ece"],
        calib["calibration"]["T"],
    )
    return {"baselines": table, "calibration": calib}


def roc_models_plot(
    y: np.ndarray, scores: dict[str, np.ndarray], table: dict[str, dict[str, Any]], path: str | Path
) -> None:
    """One ROC curve per model on the same test pairs, AUC and interval in the legend."""
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
    ax.set_title("ROC-AUC (95% bootstrap interval)", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
