"""The evaluation figures: confusion matrices, ROC and precision-recall curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from damagenet.evaluation.metrics import CLASS_NAMES  # noqa: E402


def confusion_plot(cm: np.ndarray, path: Path, normalise: bool, title: str) -> None:
    cm = np.asarray(cm, dtype=float)
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalise else cm
    fig, ax = plt.subplots(figsize=(4.5, 4))
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalise else None)
    for i in range(2):
        for j in range(2):
            text = f"{shown[i, j]:.2f}" if normalise else f"{int(cm[i, j])}"
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                color="white" if shown[i, j] > shown.max() / 2 else "black",
            )
    ax.set_xticks([0, 1], CLASS_NAMES)
    ax.set_yticks([0, 1], CLASS_NAMES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def roc_plot(y: np.ndarray, prob: np.ndarray, auc: float | None, path: Path) -> None:
    fpr, tpr, _ = roc_curve(y, prob)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(fpr, tpr, label=f"ROC-AUC {auc:.3f}" if auc is not None else "ROC")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate (damage recall)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def pr_plot(
    y: np.ndarray, prob: np.ndarray, ap: float | None, threshold: float, path: Path
) -> None:
    precision, recall, thresholds = precision_recall_curve(y, prob)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(recall, precision, label=f"PR-AUC {ap:.3f}" if ap is not None else "PR")
    i = int(np.argmin(np.abs(thresholds - threshold))) if len(thresholds) else 0
    if len(thresholds):
        ax.plot(recall[i], precision[i], "o", label=f"threshold {threshold:.2f}")
    ax.axhline(y.mean(), ls="--", color="grey", lw=0.8)
    ax.set_xlabel("damage recall")
    ax.set_ylabel("damage precision")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
