"""``damagenet evaluate``: honest test metrics and the study's artefacts.

On the test split (spatially disjoint from training when built by ``pipeline dataset``):
``metrics.json`` leads with the figures at the threshold the maps use (chosen on *validation*)
and says how it was chosen; the study's classification report at 0.5 sits in its own section
(``study_report_at_0.5``), so nobody compares a map with the wrong numbers. Also the study's
``confusion_matrix_counts.png`` and ``confusion_matrix_normalized.png`` (at 0.5), the confusion
matrix at the map threshold, ROC-AUC, PR-AUC, ROC and PR plots, and per-AOI metrics.

The checkpoint's kind decides what is read: a patch model scores a patch dataset here, a pixel
model a tile dataset (:mod:`damagenet.evaluation.tile_evaluate`: pixel, patch and point level);
a dataset of the other kind is refused, naming both. Intervals resample whole AOIs, or 640 m
ground blocks when the test split holds one AOI (:mod:`damagenet.evaluation.intervals`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contract.atomic import staged_folder, write_text_atomic
from contract.npz_keys import PATCHES, TILES
from damagenet.data.pairs import (
    Preprocess,
    Split,
    dataset_config,
    dataset_kind,
    load_splits,
    open_npz,
    require_both_classes,
    to_tensors,
)
from damagenet.defaults import N_BOOT
from damagenet.errors import DamagenetError, DamagenetUsageError
from damagenet.evaluation.comparison import compare_models
from damagenet.evaluation.intervals import groups_for, interval_record
from damagenet.evaluation.metrics import choose_threshold, ranking_metrics, report
from damagenet.evaluation.plots import confusion_plot, pr_plot, roc_plot
from damagenet.inference.scoring import predict_logits, resolve_device
from damagenet.logits import sigmoid
from damagenet.models.card import THRESHOLD_HOW
from damagenet.models.checkpoint import checkpoint_hash, input_of, load_checkpoint
from damagenet.models.registry import PAIR, PIXEL, describe, output_of

log = logging.getLogger(__name__)


def probabilities(model, split, inp: Preprocess, batch_size: int, device) -> np.ndarray:
    """Damage probability of every pair of a raw split (bands B02, B03, B04, B08)."""
    return sigmoid(predict_logits(model.to(device), to_tensors(split, inp), batch_size, device))


def protocol_text(npz: str | Path) -> str:
    """How the test split was held out, from the dataset's recorded configuration."""
    config = dataset_config(npz) or {}
    if config.get("split") == "blocks":
        return (
            f"test split of whole {float(config.get('block_m', 0)):g} m ground blocks held "
            "out inside each AOI (pipeline dataset --split blocks); patch level, balanced, "
            "no augmentation outside training"
        )
    if config.get("split") == "aoi":
        return (
            f"whole AOIs held out as test ({', '.join(config.get('test_aois') or [])}); "
            "patch level, balanced, no augmentation outside training"
        )
    return f"test split of {Path(npz).name} (how it was held out is not recorded in the file)"


def score_test(
    model,
    inp: Preprocess,
    splits: dict[str, Split],
    threshold: dict[str, Any],
    npz: str | Path,
    batch_size: int,
    device,
) -> tuple[dict[str, Any], np.ndarray]:
    """metrics.json's content and the test probabilities.

    It leads with the figures at the threshold the maps use, then the threshold-free ranking
    metrics, then the study's report at 0.5 in its own, clearly named section.
    """
    test = splits["test"]
    y = test.y
    prob = probabilities(model, test, inp, batch_size, device)
    rule = str(threshold.get("rule"))
    at_map = report(y, prob, float(threshold["value"]))
    at_half = report(y, prob, 0.5)
    metrics: dict[str, Any] = {
        "threshold": {
            **threshold,
            "how": THRESHOLD_HOW.get(rule, rule),
            "used_by_maps": "damagenet predict draws the class map at this value "
            "(--threshold auto, the default)",
        },
        **{k: v for k, v in at_map.items() if k != "threshold"},
        **ranking_metrics(y, prob),
        "test_pairs": int(len(y)),
        "protocol": protocol_text(npz),
        "study_report_at_0.5": {
            "note": "the original study's classification report at a fixed threshold of 0.5; "
            "the maps do not use this threshold",
            **at_half,
        },
    }
    if test.aoi is not None:
        metrics["per_aoi"] = _per_aoi(test.aoi, y, prob, float(threshold["value"]))
    metrics["dataset"] = str(npz)
    return metrics, prob


def _per_aoi(aoi: np.ndarray, y: np.ndarray, prob: np.ndarray, threshold: float) -> dict[str, Any]:
    per_aoi = {}
    for name in sorted(set(aoi.tolist())):
        m = aoi == name
        rep = report(y[m], prob[m], threshold)
        per_aoi[name] = {
            "pairs": int(m.sum()),
            "damaged": int(y[m].sum()),
            **ranking_metrics(y[m], prob[m]),
            "accuracy": rep["accuracy"],
            "damage_recall": rep["Damage"]["recall"],
            "damage_precision": rep["Damage"]["precision"],
            "macro_f1": rep["macro_f1"],
        }
    return per_aoi


def write_artefacts(metrics: dict[str, Any], y: np.ndarray, prob: np.ndarray, out: Path) -> None:
    """metrics.json, the study's confusion matrices (at 0.5), the one at the map threshold,
    ROC and PR curves, into ``out``."""
    t = metrics["threshold"]
    cm_half = np.array(metrics["study_report_at_0.5"]["confusion_matrix"])
    half = "test, threshold 0.5"
    confusion_plot(cm_half, out / "confusion_matrix_counts.png", False, half)
    confusion_plot(cm_half, out / "confusion_matrix_normalized.png", True, half)
    confusion_plot(
        np.array(metrics["confusion_matrix"]),
        out / "confusion_matrix_threshold.png",
        False,
        f"test, map threshold {t['value']:.2f} ({t['rule']})",
    )
    roc_plot(y, prob, metrics["roc_auc"], out / "roc_curve.png")
    pr_plot(y, prob, metrics["pr_auc"], t["value"], out / "pr_curve.png")
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")


def write_evaluation(
    metrics: dict[str, Any],
    splits: dict[str, Split],
    prob: np.ndarray,
    val_prob: np.ndarray | None,
    threshold: dict[str, Any],
    out_dir: str | Path,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> None:
    """Baselines, paired differences and calibration beside the network, then every artefact,
    staged together: a failure or a signal leaves none of them, so no plot outlives its
    metrics.json. Intervals resample whole AOIs, or 640 m ground blocks of one AOI."""
    test = splits["test"]
    grouping = groups_for(test.aoi, test.lon, test.lat)
    metrics["interval"] = interval_record(grouping, n_boot, seed, "pairs")
    with staged_folder(out_dir) as out:
        metrics.update(
            compare_models(splits, prob, val_prob, threshold, out, grouping, n_boot, seed)
        )
        write_artefacts(metrics, test.y, prob, out)
    t = metrics["threshold"]
    log.info(
        "test (%d pairs) at the map threshold %.3f (%s): accuracy %.3f, damage recall "
        "%.3f, precision %.3f; ROC-AUC %s -> %s",
        metrics["test_pairs"],
        t["value"],
        t["rule"],
        metrics["accuracy"],
        metrics["Damage"]["recall"],
        metrics["Damage"]["precision"],
        f"{metrics['roc_auc']:.3f}" if metrics["roc_auc"] is not None else "n/a",
        Path(out_dir) / "metrics.json",
    )


def checkpoint_record(ckpt: str | Path, payload: dict[str, Any]) -> dict[str, Any]:
    """Which checkpoint was scored: path, hash, whether training finished."""
    return {
        "path": str(ckpt),
        "sha256_16": checkpoint_hash(ckpt),
        "complete": bool(payload["complete"]),
    }


def check_kinds(npz: str | Path, ckpt: str | Path, payload: dict[str, Any]) -> str:
    """The model's output (``pair`` or ``pixel``), refused when the dataset is of the other
    kind: a patch model scores patch datasets, a pixel model tile datasets."""
    output = output_of(payload["architecture"])
    with open_npz(Path(npz)) as d:
        kind = dataset_kind(d)
    wants = TILES if output == PIXEL else PATCHES
    if kind != wants:
        model = describe(payload["architecture"])
        raise DamagenetUsageError(
            f"{npz} is a {kind} dataset, but {ckpt} is a {output_of_words(output)} ({model}), "
            f"which is evaluated on {wants} datasets: give a {wants} dataset "
            f"({'pipeline dataset --tile-size 64' if wants == TILES else 'pipeline dataset'}) "
            "or a checkpoint of the other kind"
        )
    return output


def output_of_words(output: str) -> str:
    """A model kind in words, for messages."""
    if output == PIXEL:
        return "pixel model (one score per pixel)"
    return "patch model (one score per pair)"


def evaluate(
    npz: str | Path,
    ckpt: str | Path,
    out_dir: str | Path,
    threshold_rule: str | None = None,
    device: str = "auto",
    batch_size: int = 512,
    allow_provisional: bool = False,
    n_boot: int = N_BOOT,
    patch_ckpt: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate the checkpoint on the NPZ's test split; write metrics and plots to ``out_dir``.

    The checkpoint's kind decides: a patch model on a patch dataset, a pixel model on a tile
    dataset (:func:`damagenet.evaluation.tile_evaluate.evaluate_tiles`), where ``patch_ckpt``,
    a patch model, is scored beside it on the same test tiles.
    """
    dev = resolve_device(device)
    loaded = load_checkpoint(ckpt, map_location=dev, allow_provisional=allow_provisional)
    if check_kinds(npz, ckpt, loaded[1]) == PIXEL:
        from damagenet.evaluation.tile_evaluate import evaluate_tiles

        record, patch = {"checkpoint": checkpoint_record(ckpt, loaded[1])}, None
        if patch_ckpt is not None:
            patch = _patch_beside(patch_ckpt, dev, allow_provisional)
            record["patch_checkpoint"] = checkpoint_record(patch_ckpt, patch[1])
        return evaluate_tiles(
            npz, loaded, out_dir, dev, batch_size, threshold_rule, patch, n_boot, record=record
        )
    if patch_ckpt is not None:
        raise DamagenetUsageError(
            "--patch-ckpt scores a patch model beside a pixel model on a tile dataset; "
            f"{ckpt} is itself a patch model"
        )
    return evaluate_pairs(npz, ckpt, loaded, out_dir, threshold_rule, dev, batch_size, n_boot)


def _patch_beside(
    patch_ckpt: str | Path, dev: torch.device, allow_provisional: bool
) -> tuple[Any, dict[str, Any]]:
    """The patch model to score beside a pixel model, refused when it is not one."""
    loaded = load_checkpoint(patch_ckpt, map_location=dev, allow_provisional=allow_provisional)
    if output_of(loaded[1]["architecture"]) != PAIR:
        raise DamagenetUsageError(
            f"--patch-ckpt {patch_ckpt}: a {output_of_words(PIXEL)}; give a patch model "
            "(siamese-resnet) to score beside the pixel model"
        )
    return loaded


def evaluate_pairs(
    npz: str | Path,
    ckpt: str | Path,
    loaded: tuple[Any, dict[str, Any]],
    out_dir: str | Path,
    threshold_rule: str | None,
    dev: torch.device,
    batch_size: int,
    n_boot: int,
) -> dict[str, Any]:
    """A patch model on a patch dataset's test split."""
    model, payload = loaded
    inp = input_of(payload)
    splits = load_splits(npz)
    if "test" not in splits:
        raise DamagenetError(f"{npz}: no 'test' split to evaluate")
    require_both_classes(npz, "test", splits["test"])
    if splits["test"].before.shape[-1] != payload["patch_size"]:
        raise DamagenetError(
            f"{npz}: patches of {splits['test'].before.shape[-1]} px, but the "
            f"checkpoint {ckpt} was trained on {payload['patch_size']} px"
        )
    val_prob = (
        probabilities(model, splits["val"], inp, batch_size, dev) if "val" in splits else None
    )
    threshold = dict(payload["threshold"])
    if threshold_rule and threshold_rule != threshold.get("rule"):
        if val_prob is None:
            raise DamagenetError(f"{npz}: no 'val' split to choose a {threshold_rule} threshold on")
        threshold = {
            "value": choose_threshold(splits["val"].y, val_prob, threshold_rule),
            "rule": threshold_rule,
            "chosen_on": "val",
        }
    metrics, prob = score_test(model, inp, splits, threshold, npz, batch_size, dev)
    metrics["checkpoint"] = checkpoint_record(ckpt, payload)
    write_evaluation(metrics, splits, prob, val_prob, threshold, out_dir, n_boot)
    return metrics
