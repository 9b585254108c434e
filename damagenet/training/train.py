"""``damagenet train``: the study's recipe, reproducible and fast on CPU and GPU.

Adam with lr 1e-4 for the backbone and 1e-3 for the head, weight decay 1e-4, gradient clipping
at norm 1.5, batch 64, up to 40 epochs with early stopping on validation loss; the best
checkpoint is kept, the decision threshold is chosen on validation. Each split lives in memory
as tensors and batches are drawn by index; augmentation applies one random symmetry of the
square to both dates (and to a tile's target). Mixed precision on CUDA.

Two tasks share this loop (:mod:`damagenet.training.tasks`): the Siamese ResNet scores one value
per patch pair (BCE, the study's), the Siamese U-Net (``arch="siamese-unet"``) one per pixel of a
tile dataset (masked loss over labelled pixels, tiles holding damage oversampled, the threshold
chosen on validation pixels). The steps are in :mod:`damagenet.training.steps`, the provisional
checkpoints in :mod:`damagenet.training.saving`.

Outputs: the checkpoint (self-contained, with its model card) and, in ``out_dir`` as one staged
set (:func:`contract.atomic.staged_folder`), ``train_log.csv``, ``train_summary.json`` and the
test evaluation; a run that fails anywhere, the final checkpoint's write included, leaves none
of them (issue 31).
"""

from __future__ import annotations

import csv
import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contract.atomic import staged_folder, write_text_atomic
from contract.cli import describe_os_error
from damagenet.data.pairs import (
    Normalisation,
    Split,
    TensorSplit,
    dataset_config,
    file_sha256,
    processing_level,
    training_ground,
)
from damagenet.errors import DamagenetError
from damagenet.evaluation.metrics import choose_threshold, ranking_metrics
from damagenet.inference.scoring import predict_logits, resolve_device
from damagenet.logits import sigmoid
from damagenet.models.centre_tap import use_centre_taps
from damagenet.models.checkpoint import checkpoint_hash, save_checkpoint
from damagenet.models.registry import Network
from damagenet.training.config import TrainConfig, check_config, recipe
from damagenet.training.saving import ProvisionalSaver, Snapshot, provisional_path
from damagenet.training.steps import (
    Stepper,
    autocast_dtype,
    make_optimizer,
    memory_format,
    to_layout,
    train_epoch,
)
from damagenet.training.tasks import Task, build_network, task_for

log = logging.getLogger(__name__)
LOG_FIELDS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_roc_auc", "seconds"]


@dataclass
class Run:
    """What one training run works with, prepared once by :func:`prepare`."""

    npz: Path
    cfg: TrainConfig
    task: Task
    splits: dict[str, Split]
    device: torch.device
    model: Network
    stepper: Stepper
    train_t: TensorSplit
    val_t: TensorSplit
    generator: torch.Generator
    #: keyword arguments of every checkpoint of the run (patch size, normalisation, ...)
    saving: dict[str, Any]


@dataclass
class Best:
    """The best epoch so far: its weights, validation logits, number and validation loss."""

    state: dict[str, torch.Tensor]
    logits: np.ndarray
    epoch: int
    loss: float


def train(
    npz: str | Path,
    out_dir: str | Path,
    ckpt: str | Path,
    cfg: TrainConfig | None = None,
    run_evaluation: bool = True,
) -> dict[str, Any]:
    """Train on the NPZ's train split, early-stop on val, keep the best checkpoint.

    The Python API of ``damagenet train`` (cross-validation and the benchmarks call it):
    ``cfg`` holds every option; returns the run's summary (``train_summary.json``'s content).
    """
    cfg = cfg or TrainConfig()
    check_config(cfg)
    out_dir, ckpt = Path(out_dir), Path(ckpt)
    run = prepare(Path(npz), cfg)
    _check_writable(ckpt)
    with staged_folder(out_dir) as stage:
        with ProvisionalSaver(ckpt, cfg, run.saving) as save_provisional:
            history, best = fit(run, stage, save_provisional)
        return finish(run, history, best, ckpt, stage, run_evaluation)


def _check_writable(ckpt: Path) -> None:
    """Fail before training, not after it, when the checkpoint's folder cannot take a file."""
    try:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=ckpt.parent):
            pass
    except OSError as exc:
        raise DamagenetError(
            f"{ckpt}: cannot write the checkpoint in {ckpt.parent} ({describe_os_error(exc)})"
        ) from exc


def prepare(npz: Path, cfg: TrainConfig) -> Run:
    """Seeds, data on the device, the network, its optimiser: everything the epochs need."""
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    device = resolve_device(cfg.device)
    task = task_for(cfg)
    splits = load_training_splits(npz, task)
    norm = Normalisation.fit(splits["train"])
    patch_size = int(splits["train"].before.shape[-1])
    fmt = memory_format(cfg.memory_format, device, patch_size)
    train_t = to_layout(task.tensors(splits["train"], norm), fmt).to(device)
    val_t = to_layout(task.tensors(splits["val"], norm), fmt)
    if device.type == "cuda":  # page-locked: the per-batch copies to the GPU run asynchronously
        val_t = TensorSplit(val_t.before.pin_memory(), val_t.after.pin_memory(), val_t.y, val_t.aoi)
    model = build_network(cfg).to(device).to(memory_format=fmt)
    use_centre_taps(model)
    optimizer = make_optimizer(model, cfg, fused=cfg.fused_optimizer)
    dtype = autocast_dtype(cfg.precision, device)
    stepper = Stepper(model, optimizer, device, cfg.clip_norm, dtype, task)
    generator = torch.Generator().manual_seed(cfg.seed)
    saving = _saving(npz, splits, norm, patch_size)
    log.info(
        "training %s on %s: %d train / %d val %ss of %d px, device %s, %s, %s layout",
        cfg.arch,
        npz,
        len(train_t),
        len(val_t),
        task.unit,
        patch_size,
        device,
        dtype or torch.float32,
        "channels-last" if fmt == torch.channels_last else "contiguous",
    )
    return Run(npz, cfg, task, splits, device, model, stepper, train_t, val_t, generator, saving)


def load_training_splits(npz: Path, task: Task) -> dict[str, Split]:
    """The dataset in the task's layout, with train and val splits holding both classes."""
    splits = task.load(npz)
    for name in ("train", "val"):
        if name not in splits:
            raise DamagenetError(f"{npz}: no {name!r} split")
        task.require_both_classes(npz, name, splits[name])
    return splits


def _saving(
    npz: Path, splits: dict[str, Split], norm: Normalisation, patch_size: int
) -> dict[str, Any]:
    """What every checkpoint of the run records about its data."""
    ground = training_ground(splits, patch_size)
    if ground is None:
        log.warning(
            "%s records no aoi/row/col per split: the checkpoint cannot tell maps "
            "which ground it was trained on",
            npz,
        )
    dataset = {
        "path": str(npz),
        "sha256": file_sha256(npz),
        "pairs": {k: int(len(v.y)) for k, v in splits.items()},
    }
    return {
        "patch_size": patch_size,
        "norm": norm,
        "dataset": dataset,
        "training_ground": ground,
        "processing_level": processing_level(npz),
    }


def fit(
    run: Run, out: Path, save_provisional: ProvisionalSaver
) -> tuple[list[dict[str, Any]], Best]:
    """The epochs: train, validate, keep the best state, stop early; write ``train_log.csv``.

    Each new best is handed to ``save_provisional`` except after the last epoch, where the
    final checkpoint follows. Returns the history (one row per epoch) and the best epoch.
    """
    cfg, history, best, stale = run.cfg, [], None, 0
    with open(out / "train_log.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LOG_FIELDS)
        writer.writeheader()
        for epoch in range(1, cfg.epochs + 1):
            row, logits = run_epoch(run, epoch)
            history.append(row)
            writer.writerow(row)
            fh.flush()
            improved = best is None or row["val_loss"] < best.loss
            _log_epoch(row, improved)
            if improved:
                snapshot = Snapshot(run.model)
                best, stale = Best(snapshot.state, logits, epoch, row["val_loss"]), 0
                if epoch < cfg.epochs:
                    save_provisional(snapshot, epoch, history)
            else:
                stale += 1
                if stale >= cfg.patience:
                    log.info("early stop: no val-loss improvement for %d epochs", stale)
                    break
    assert best is not None  # the first epoch is always the best so far
    return history, best


def run_epoch(run: Run, epoch: int) -> tuple[dict[str, Any], np.ndarray]:
    """One training pass and the validation that follows: the log row and the val logits."""
    cfg, t0 = run.cfg, time.perf_counter()
    desc = f"epoch {epoch}/{cfg.epochs}"
    train_loss, train_acc = train_epoch(
        run.stepper, run.train_t, cfg.batch_size, run.generator, cfg.augment, desc, cfg.progress
    )
    batch = run.task.eval_batch(cfg.eval_batch_size, run.val_t.before.shape[-1])
    logits = predict_logits(run.model, run.val_t, batch, run.device)
    row: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc}
    row |= val_metrics(run.task, logits, run.splits["val"].y)
    row["seconds"] = time.perf_counter() - t0
    return row, logits


def val_metrics(task: Task, logits: np.ndarray, y: np.ndarray) -> dict[str, float | None]:
    """Validation loss (the task's), accuracy at 0.5 and ROC-AUC over what the task scores."""
    loss = float(task.loss(torch.from_numpy(logits), task.target(y)))
    labels, scores = task.scored(logits, y)
    prob = sigmoid(scores)
    return {
        "val_loss": loss,
        "val_acc": float(((prob >= 0.5) == labels).mean()),
        "val_roc_auc": ranking_metrics(labels, prob)["roc_auc"],
    }


def _log_epoch(row: dict[str, Any], improved: bool) -> None:
    auc = row["val_roc_auc"]
    log.info(
        "epoch %d: train loss %.4f acc %.3f | val loss %.4f acc %.3f ROC-AUC %s | %.1f s%s",
        row["epoch"],
        row["train_loss"],
        row["train_acc"],
        row["val_loss"],
        row["val_acc"],
        f"{auc:.3f}" if auc is not None else "n/a",
        row["seconds"],
        " *" if improved else "",
    )


def finish(
    run: Run,
    history: list[dict[str, Any]],
    best: Best,
    ckpt: Path,
    out: Path,
    run_evaluation: bool,
) -> dict[str, Any]:
    """Best weights back, threshold on validation, test evaluation, final checkpoint, summary."""
    cfg, task = run.cfg, run.task
    run.model.load_state_dict(best.state)
    val_y, val_scores = task.scored(best.logits, run.splits["val"].y)
    val_prob = sigmoid(val_scores)  # the best epoch's, as validated: no second pass
    threshold = {
        "value": choose_threshold(val_y, val_prob, cfg.threshold_rule),
        "rule": cfg.threshold_rule,
        "chosen_on": "val",
    }
    result = _summary(history, best, cfg.epochs, threshold)
    evaluation = None
    if run_evaluation and "test" in run.splits:
        norm, size = run.saving["norm"], run.saving["patch_size"]
        batch = task.eval_batch(cfg.eval_batch_size, size)
        evaluation = task.score_test(
            run.model, norm, run.splits, threshold, run.npz, batch, run.device
        )
    card = {
        "training": card_training(run, result),
        "test": task.card_test(evaluation[0]) if evaluation else None,
    }
    extra = {"config": asdict(cfg), "best_epoch": best.epoch}
    save_checkpoint(
        ckpt, run.model, threshold=threshold, history=history, complete=True, card=card,
        extra=extra, **run.saving,
    )  # fmt: skip
    provisional_path(ckpt).unlink(missing_ok=True)
    log.info(
        "best epoch %d (val loss %.4f); threshold %.3f (%s); checkpoint %s",
        *(best.epoch, best.loss, threshold["value"], cfg.threshold_rule, ckpt),
    )
    if evaluation:
        evaluation[0]["checkpoint"] = {
            "path": str(ckpt),
            "sha256_16": checkpoint_hash(ckpt),
            "complete": True,
        }
        task.write_test(evaluation, run.splits, val_prob, threshold, out)
        result["test"] = evaluation[0]
    summary = json.dumps(result, indent=2, default=str) + "\n"
    write_text_atomic(out / "train_summary.json", summary)
    return result


def _summary(
    history: list[dict[str, Any]], best: Best, epochs: int, threshold: dict[str, Any]
) -> dict[str, Any]:
    """The run in a few numbers, with a warning when validation loss was still falling."""
    result: dict[str, Any] = {
        "best_epoch": best.epoch,
        "best_val_loss": best.loss,
        "epochs_run": len(history),
        "best_epoch_is_last": best.epoch == len(history),
        "threshold": threshold,
    }
    if result["best_epoch_is_last"]:
        result["warning"] = (
            f"the best epoch was the last one ({best.epoch} of {epochs} "
            "allowed): validation loss was still falling, more epochs may "
            "help (--epochs)"
        )
        log.warning(result["warning"])
    return result


def card_training(run: Run, result: dict[str, Any]) -> dict[str, Any]:
    """Where, when and how the model learned, for the model card."""
    config = dataset_config(run.npz) or {}
    aois = {
        name: sorted({str(a) for a in sp.aoi.tolist()}) if sp.aoi is not None else "not recorded"
        for name, sp in run.splits.items()
    }
    return {
        "origin": "trained with damagenet train",
        "aois": aois,
        "dates": config.get("dates", "not recorded in the dataset"),
        "split": run.task.protocol(run.npz),
        "pairs": {k: int(len(v.y)) for k, v in run.splits.items()},
        "epochs_run": result["epochs_run"],
        "best_epoch": result["best_epoch"],
        "best_epoch_is_last": result["best_epoch_is_last"],
        "recipe": recipe(run.cfg),
    }
