"""``damagenet evaluate``: honest test metrics and the study's artefacts.

On the test split (spatially disjoint from training when built by ``pipeline dataset``):
``confusion_matrix_counts.png``, ``confusion_matrix_normalized.png`` and ``metrics.json`` as in
the study (classification report at threshold 0.5), plus ROC-AUC, PR-AUC, ROC and PR plots,
metrics at the threshold chosen on *validation*, and per-AOI metrics when the NPZ names AOIs.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from contract.atomic import write_text_atomic
from damagenet.checkpoint import load_checkpoint, norm_of
from damagenet.comparison import compare_models
from damagenet.data import load_splits, require_both_classes, to_tensors
from damagenet.errors import DamagenetError
from damagenet.inference import predict_logits, resolve_device, sigmoid
from damagenet.metrics import THRESHOLD_RULES, choose_threshold, ranking_metrics, report
from damagenet.plots import confusion_plot, pr_plot, roc_plot

log = logging.getLogger(__name__)


def probabilities(model, split, norm, batch_size: int, device) -> np.ndarray:
    """Damage probability of every pair of a raw split."""
    return sigmoid(predict_logits(model.to(device), to_tensors(split, norm), batch_size, device))


def evaluate(npz: str | Path, ckpt: str | Path, out_dir: str | Path,
             threshold_rule: str | None = None, device: str = "auto",
             batch_size: int = 512) -> dict[str, Any]:
    """Evaluate the checkpoint on the NPZ's test split; write metrics and plots to ``out_dir``."""
    dev = resolve_device(device)
    model, payload = load_checkpoint(ckpt, map_location=dev)
    norm = norm_of(payload)
    splits = load_splits(npz)
    if "test" not in splits:
        raise DamagenetError(f"{npz}: no 'test' split to evaluate")
    test = splits["test"]
    require_both_classes(npz, "test", test)
    if test.before.shape[-1] != payload["patch_size"]:
        raise DamagenetError(f"{npz}: patches of {test.before.shape[-1]} px, but the "
                             f"checkpoint {ckpt} was trained on {payload['patch_size']} px")
    prob = probabilities(model, test, norm, batch_size, dev)
    threshold = dict(payload["threshold"])
    if threshold_rule and threshold_rule != threshold.get("rule"):
        if threshold_rule not in THRESHOLD_RULES:
            raise DamagenetError(f"threshold rule must be one of {THRESHOLD_RULES}")
        if "val" not in splits:
            raise DamagenetError(f"{npz}: no 'val' split to choose a {threshold_rule} "
                                 "threshold on")
        val_prob = probabilities(model, splits["val"], norm, batch_size, dev)
        threshold = {"value": choose_threshold(splits["val"].y, val_prob, threshold_rule),
                     "rule": threshold_rule, "chosen_on": "val"}
    y = test.y
    at_half = report(y, prob, 0.5)
    at_chosen = report(y, prob, threshold["value"])
    metrics: dict[str, Any] = {k: v for k, v in at_half.items() if k != "confusion_matrix"}
    metrics.update(ranking_metrics(y, prob))
    metrics["confusion_matrix"] = at_half["confusion_matrix"]
    metrics["at_threshold_0.5"] = at_half
    metrics["at_chosen_threshold"] = at_chosen
    metrics["threshold"] = threshold
    metrics["test_pairs"] = int(len(y))
    metrics["checkpoint"] = str(ckpt)
    metrics["dataset"] = str(npz)
    if test.aoi is not None:
        per_aoi = {}
        for name in sorted(set(test.aoi.tolist())):
            m = test.aoi == name
            entry = {"pairs": int(m.sum()), "damaged": int(y[m].sum()),
                     **ranking_metrics(y[m], prob[m])}
            rep = report(y[m], prob[m], threshold["value"])
            entry.update({"accuracy": rep["accuracy"], "damage_recall": rep["Damage"]["recall"],
                          "damage_precision": rep["Damage"]["precision"],
                          "macro_f1": rep["macro_f1"]})
            per_aoi[name] = entry
        metrics["per_aoi"] = per_aoi
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # baselines on the same test pairs, calibration; roc_models.png, reliability.png
    val_prob = probabilities(model, splits["val"], norm, batch_size, dev) if "val" in splits \
        else None
    metrics.update(compare_models(splits, prob, val_prob, threshold, out))
    cm = np.array(at_half["confusion_matrix"])
    confusion_plot(cm, out / "confusion_matrix_counts.png", False, "test, threshold 0.5")
    confusion_plot(cm, out / "confusion_matrix_normalized.png", True, "test, threshold 0.5")
    confusion_plot(np.array(at_chosen["confusion_matrix"]),
                   out / "confusion_matrix_threshold.png", False,
                   f"test, threshold {threshold['value']:.2f} ({threshold['rule']})")
    roc_plot(y, prob, metrics["roc_auc"], out / "roc_curve.png")
    pr_plot(y, prob, metrics["pr_auc"], threshold["value"], out / "pr_curve.png")
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    log.info("test (%d pairs): accuracy %.3f, macro F1 %.3f, ROC-AUC %s at 0.5; damage recall "
             "%.3f at threshold %.3f -> %s", len(y), metrics["accuracy"], metrics["macro_f1"],
             f"{metrics['roc_auc']:.3f}" if metrics["roc_auc"] is not None else "n/a",
             at_chosen["Damage"]["recall"], threshold["value"], out / "metrics.json")
    return metrics


def _run(args: argparse.Namespace) -> int:
    evaluate(args.npz, args.ckpt, args.out, args.threshold_rule, args.device, args.batch_size)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="evaluate a checkpoint on the test split",
        description="Write metrics.json (the study's classification report at 0.5, ROC-AUC, "
                    "PR-AUC, metrics at the validation-chosen threshold, per-AOI metrics), "
                    "confusion matrices (counts, normalised), ROC and PR curves.")
    p.add_argument("--npz", required=True, help="dataset NPZ with a test split")
    p.add_argument("--ckpt", required=True, help="checkpoint from 'damagenet train'")
    p.add_argument("--out", required=True, help="results folder")
    p.add_argument("--threshold-rule", choices=THRESHOLD_RULES,
                   help="re-choose the threshold on val with this rule (default: the "
                        "checkpoint's)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (%(default)s)")
    p.add_argument("--batch-size", type=int, default=512, help="pairs per batch (%(default)s)")
    p.set_defaults(func=_run)
