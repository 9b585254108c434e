"""``damagenet train``: the study's recipe, reproducible and fast on CPU and GPU.

Adam with lr 1e-4 for the backbone and 1e-3 for the head, weight decay 1e-4, gradient clipping
at norm 1.5, BCE with logits, batch 64, up to 40 epochs with early stopping on validation loss;
the best checkpoint is kept. Each split lives in memory as tensors and batches are drawn by
index; augmentation applies one random symmetry of the square to both epochs of a pair. Mixed
precision on CUDA.

Speed (issue 19, figures in docs/performance.md): the network and the data take the memory
layout that is faster for the patch size (channels-last on CUDA and for patches of 32 px and
more on a CPU, where it was measured faster; the plain layout for 16 px patches on a CPU);
convolutions on one-pixel maps run as matrix products with their centre tap (exact); Adam
runs fused; the best epoch's validation logits are kept rather than recomputed; the best
weights are kept in memory and the provisional checkpoint is written by a background thread,
so saving a 170 MB ResNet-101 does not stall the epochs (an interrupted run still leaves one:
the writer is joined before the exception leaves ``train``). ``--precision bfloat16`` trains
in bfloat16 mixed precision (1.7x faster per step at 64 px on a CPU with AVX-512 BF16); it
changes rounding, so it is a choice, not the default on a CPU.
"""

from __future__ import annotations

import csv
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from contract.atomic import atomic_path, write_text_atomic
from contract.cli import bar_disabled
from damagenet.data.pairs import (
    Normalisation,
    Split,
    TensorSplit,
    augment,
    dataset_config,
    file_sha256,
    load_splits,
    require_both_classes,
    to_tensors,
    training_ground,
)
from damagenet.defaults import CHANNELS_LAST_MIN_PATCH_CPU, MEMORY_FORMATS, PRECISION_NAMES
from damagenet.errors import DamagenetError, DamagenetUsageError
from damagenet.evaluation.evaluate import protocol_text, score_test, write_evaluation
from damagenet.evaluation.metrics import THRESHOLD_RULES, choose_threshold, ranking_metrics
from damagenet.inference.scoring import predict_logits, resolve_device, sigmoid
from damagenet.models.centre_tap import use_centre_taps
from damagenet.models.checkpoint import checkpoint_hash, save_checkpoint
from damagenet.models.siamese_resnet import BACKBONES, HEADS, SiameseResNet, build_model
from damagenet.training.config import TrainConfig

log = logging.getLogger(__name__)


#: autocast dtype of each precision name (None: float32 on a CPU, float16 on CUDA)
PRECISIONS = dict(
    zip(PRECISION_NAMES, (None, torch.float32, torch.bfloat16, torch.float16), strict=True)
)


def make_optimizer(
    model: SiameseResNet, cfg: TrainConfig, fused: bool = True
) -> torch.optim.Optimizer:
    """The study's Adam; fused (one kernel over all parameters) unless ``fused`` is False.

    The unfused loop walks ResNet-101's 300-odd tensors one by one at every step; the fused
    update gives the same values to float rounding.
    """
    groups = [
        {"params": model.backbone_parameters(), "lr": cfg.lr_backbone},
        {"params": model.head_parameters(), "lr": cfg.lr_head},
    ]
    if fused:
        try:
            return torch.optim.Adam(groups, weight_decay=cfg.weight_decay, fused=True)
        except RuntimeError as exc:  # a device without a fused kernel: the plain loop
            log.debug("fused Adam unavailable (%s); using the per-tensor loop", exc)
    return torch.optim.Adam(groups, weight_decay=cfg.weight_decay)


def memory_format(name: str, device: torch.device, patch_size: int) -> torch.memory_format:
    """The layout to train in: ``auto`` picks the one measured faster for this device and size.

    cuDNN and oneDNN prefer channels-last for convolutions on images of some size; a 16 px
    patch shrinks to 1 x 1 in ResNet's deep layers, where a CPU trains faster without it.
    """
    if name == "auto":
        fast = device.type == "cuda" or patch_size >= CHANNELS_LAST_MIN_PATCH_CPU
        name = "channels-last" if fast else "contiguous"
    return torch.channels_last if name == "channels-last" else torch.contiguous_format


def autocast_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast type of ``--precision`` (None: float32 throughout).

    ``auto`` is float16 with a gradient scaler on CUDA and float32 on a CPU, the recipe's own
    arithmetic; float16 needs CUDA.
    """
    dtype = torch.float16 if name == "auto" and device.type == "cuda" else PRECISIONS[name]
    if dtype == torch.float16 and device.type != "cuda":
        raise DamagenetUsageError(
            "--precision float16 needs a CUDA device; on a CPU use bfloat16 or float32"
        )
    return None if dtype == torch.float32 else dtype


def to_layout(data: TensorSplit, fmt: torch.memory_format) -> TensorSplit:
    """The split's patches laid out in ``fmt`` once, up front, instead of per batch."""
    return TensorSplit(
        data.before.contiguous(memory_format=fmt),
        data.after.contiguous(memory_format=fmt),
        data.y,
        data.aoi,
    )


class _Snapshot:
    """A frozen copy of the model's weights that :func:`save_checkpoint` can write.

    Training goes on mutating the live model while a background thread saves; the snapshot
    is what was best when it was taken.
    """

    def __init__(self, model: SiameseResNet) -> None:
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.arch = model.architecture()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.state

    def architecture(self) -> dict[str, Any]:
        return self.arch


class BackgroundWriter:
    """Runs one write at a time off the training thread; only the newest pending one counts.

    If a save is still running when a newer best arrives, the newer one replaces any waiting
    job (an older provisional checkpoint is never worth writing). ``close`` waits for the last
    write and re-raises its error, so a provisional checkpoint is on disk when ``train``
    returns or is interrupted.
    """

    def __init__(self, write: Callable[[Any], None]) -> None:
        self._write, self._lock = write, threading.Lock()
        self._pending: Any = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, job: Any) -> None:
        self._raise()
        with self._lock:
            self._pending = job
            if self._thread is None:
                self._thread = threading.Thread(target=self._drain, name="provisional-ckpt")
                self._thread.start()

    def _drain(self) -> None:
        while True:
            with self._lock:
                job, self._pending = self._pending, None
                if job is None:
                    self._thread = None
                    return
            try:
                self._write(job)
            except BaseException as exc:  # handed to the training thread by close()
                self._error = exc

    def close(self) -> None:
        while (thread := self._thread) is not None:
            thread.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error


class Stepper:
    """One optimisation step: forward, BCE, backward, clipping, update.

    ``dtype`` is the autocast type (None: float32). Float16 runs with a gradient scaler, which
    skips steps whose gradients overflowed; bfloat16 has float32's range and no scaler, so a
    step whose gradient norm is not finite is skipped here, counted in ``skipped``, and its
    batch norms' running statistics (updated by the forward pass) are put back.
    """

    def __init__(
        self,
        model: SiameseResNet,
        optimizer: torch.optim.Optimizer,
        device: torch.device,
        clip_norm: float,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.model, self.optimizer, self.device = model, optimizer, device
        self.clip_norm, self.dtype = clip_norm, dtype
        self.scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        self.loss_fn = nn.BCEWithLogitsLoss()
        self.skipped = 0
        self.guarded = dtype == torch.bfloat16
        self.buffers = list(model.buffers()) if self.guarded else []

    def __call__(
        self, before: torch.Tensor, after: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(loss, logits) of the step, or None when it was skipped."""
        self.optimizer.zero_grad(set_to_none=True)
        saved = [b.clone() for b in self.buffers]
        with torch.autocast(
            device_type=self.device.type,
            dtype=self.dtype or torch.float32,
            enabled=self.dtype is not None,
        ):
            logits = self.model(before, after)
            loss = self.loss_fn(logits.float(), y)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm)
        if self.guarded and not torch.isfinite(norm):
            self.skipped += 1
            with torch.no_grad():
                for buffer, old in zip(self.buffers, saved, strict=True):
                    buffer.copy_(old)
            return None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach(), logits.detach()


def train_epoch(
    stepper: Stepper,
    data: TensorSplit,
    batch_size: int,
    generator: torch.Generator,
    use_augment: bool = True,
    desc: str = "train",
    progress: bool = True,
) -> tuple[float, float]:
    """One pass over ``data`` (already on the device) in shuffled batches; (loss, accuracy)."""
    stepper.model.train()
    n = len(data)
    perm = torch.randperm(n, generator=generator).to(data.y.device)
    loss_sum = torch.zeros((), device=data.y.device)
    correct = torch.zeros((), device=data.y.device)
    seen, steps, skipped = 0, 0, stepper.skipped
    bar = tqdm(total=n, desc=desc, unit="pair", leave=False, disable=bar_disabled(progress))
    for start in range(0, n, batch_size):
        idx = perm[start : start + batch_size]
        if len(idx) < 2:  # BatchNorm needs two samples
            continue
        xb, xa, y = data.before[idx], data.after[idx], data.y[idx]
        if use_augment:
            xb, xa = augment(xb, xa, generator)
        done = stepper(xb, xa, y)
        steps += 1
        bar.update(len(idx))
        if done is None:  # skipped: its loss is not the model's
            continue
        loss, logits = done
        loss_sum += loss * len(idx)
        correct += ((logits > 0).float() == y).sum()
        seen += len(idx)
    bar.close()
    _check_skipped(stepper.skipped - skipped, steps, desc)
    return float(loss_sum) / max(seen, 1), float(correct) / max(seen, 1)


def _check_skipped(skipped: int, steps: int, desc: str) -> None:
    """Say when bfloat16 steps were skipped for non-finite gradients; stop if all were."""
    if skipped == 0:
        return
    if skipped == steps:
        raise DamagenetError(
            f"{desc}: every step had non-finite gradients in bfloat16; "
            "train with --precision float32"
        )
    log.warning(
        "%s: %d of %d steps skipped for non-finite gradients (bfloat16)", desc, skipped, steps
    )


def _val_metrics(logits: np.ndarray, y: np.ndarray) -> dict[str, float | None]:
    t_logits = torch.from_numpy(logits)
    t_y = torch.from_numpy(y.astype(np.float32))
    loss = float(nn.functional.binary_cross_entropy_with_logits(t_logits, t_y))
    prob = sigmoid(logits)
    return {
        "val_loss": loss,
        "val_acc": float(((prob >= 0.5) == y).mean()),
        "val_roc_auc": ranking_metrics(y, prob)["roc_auc"],
    }


def provisional_path(ckpt: Path) -> Path:
    """Where the best model so far lives while training runs (``x.pt`` -> ``x.provisional.pt``).

    Never the final path, so an interrupted run leaves no final checkpoint behind.
    """
    return ckpt.with_name(f"{ckpt.stem}.provisional{ckpt.suffix}")


def _fit(
    model: SiameseResNet,
    stepper: Stepper,
    train_t: TensorSplit,
    val_t: TensorSplit,
    val_y: np.ndarray,
    cfg: TrainConfig,
    generator: torch.Generator,
    out_dir: Path,
    save_provisional: Callable[[_Snapshot, int, list[dict[str, Any]]], Any],
) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor], np.ndarray, int, float]:
    """The epochs: train, validate, keep the best state, stop early; write train_log.csv.

    Returns (history, best state, its validation logits, best epoch, best validation loss).
    """
    history: list[dict[str, Any]] = []
    best_loss, best_state, best_logits, best_epoch, stale = float("inf"), None, None, 0, 0
    device = stepper.device
    fields = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_roc_auc", "seconds"]
    # the log appears under its name only when training finished (issue 21: no partial outputs)
    with atomic_path(out_dir / "train_log.csv") as log_tmp, open(log_tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for epoch in range(1, cfg.epochs + 1):
            t0 = time.perf_counter()
            tr_loss, tr_acc = train_epoch(
                stepper,
                train_t,
                cfg.batch_size,
                generator,
                cfg.augment,
                f"epoch {epoch}/{cfg.epochs}",
                cfg.progress,
            )
            logits = predict_logits(model, val_t, cfg.eval_batch_size, device)
            val = _val_metrics(logits, val_y)
            row = {
                "epoch": epoch,
                "train_loss": tr_loss,
                "train_acc": tr_acc,
                **val,
                "seconds": time.perf_counter() - t0,
            }
            history.append(row)
            writer.writerow(row)
            fh.flush()
            improved = val["val_loss"] < best_loss
            log.info(
                "epoch %d: train loss %.4f acc %.3f | val loss %.4f acc %.3f ROC-AUC %s | %.1f s%s",
                epoch,
                tr_loss,
                tr_acc,
                val["val_loss"],
                val["val_acc"],
                f"{val['val_roc_auc']:.3f}" if val["val_roc_auc"] is not None else "n/a",
                row["seconds"],
                " *" if improved else "",
            )
            if improved:
                best_loss, best_epoch, best_logits, stale = val["val_loss"], epoch, logits, 0
                snapshot = _Snapshot(model)
                best_state = snapshot.state
                if epoch < cfg.epochs:  # after the last epoch the final checkpoint follows
                    save_provisional(snapshot, epoch, list(history))
            else:
                stale += 1
                if stale >= cfg.patience:
                    log.info("early stop: no val-loss improvement for %d epochs", stale)
                    break
    assert best_state is not None and best_logits is not None  # the first epoch beats inf
    return history, best_state, best_logits, best_epoch, best_loss


def train(
    npz: str | Path,
    out_dir: str | Path,
    ckpt: str | Path,
    cfg: TrainConfig | None = None,
    run_evaluation: bool = True,
) -> dict[str, Any]:
    """Train on the NPZ's train split, early-stop on val, keep the best checkpoint."""
    cfg = cfg or TrainConfig()
    _check_config(cfg)
    out_dir, ckpt = Path(out_dir), Path(ckpt)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    device = resolve_device(cfg.device)
    splits = load_splits(npz)
    for name in ("train", "val"):
        if name not in splits:
            raise DamagenetError(f"{npz}: no {name!r} split")
        require_both_classes(npz, name, splits[name])
    norm = Normalisation.fit(splits["train"])
    patch_size = int(splits["train"].before.shape[-1])
    fmt = memory_format(cfg.memory_format, device, patch_size)
    train_t = to_layout(to_tensors(splits["train"], norm), fmt).to(device)
    val_t = to_layout(to_tensors(splits["val"], norm), fmt)
    if device.type == "cuda":  # page-locked: the per-batch copies to the GPU run asynchronously
        val_t = TensorSplit(val_t.before.pin_memory(), val_t.after.pin_memory(), val_t.y, val_t.aoi)
    model = build_model(cfg.backbone, cfg.weights, cfg.head).to(device, memory_format=fmt)
    use_centre_taps(model)
    stepper = Stepper(
        model,
        make_optimizer(model, cfg, fused=cfg.fused_optimizer),
        device,
        cfg.clip_norm,
        autocast_dtype(cfg.precision, device),
    )
    generator = torch.Generator().manual_seed(cfg.seed)
    dataset = {
        "path": str(npz),
        "sha256": file_sha256(npz),
        "pairs": {k: int(len(v.y)) for k, v in splits.items()},
    }
    ground = training_ground(splits, patch_size)
    if ground is None:
        log.warning(
            "%s records no aoi/row/col per split: the checkpoint cannot tell maps "
            "which ground it was trained on",
            npz,
        )
    saving = {"patch_size": patch_size, "norm": norm, "dataset": dataset, "training_ground": ground}
    log.info(
        "training %s (%s weights) on %s: %d train / %d val pairs of %d px, device %s, "
        "%s, %s layout",
        cfg.backbone,
        cfg.weights,
        npz,
        len(train_t),
        len(val_t),
        patch_size,
        device,
        stepper.dtype or torch.float32,
        "channels-last" if fmt == torch.channels_last else "contiguous",
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    writer = BackgroundWriter(
        lambda job: save_checkpoint(
            provisional_path(ckpt),
            job[0],
            threshold={"value": 0.5, "rule": "provisional"},
            history=job[2],
            complete=False,
            extra={"config": asdict(cfg), "best_epoch": job[1]},
            **saving,
        )
    )
    try:
        history, best_state, best_logits, best_epoch, best_loss = _fit(
            model,
            stepper,
            train_t,
            val_t,
            splits["val"].y,
            cfg,
            generator,
            out_dir,
            lambda snapshot, epoch, hist: writer.submit((snapshot, epoch, hist)),
        )
    finally:  # interrupted or not, the newest provisional checkpoint reaches the disk
        writer.close()
    model.load_state_dict(best_state)
    val_prob = sigmoid(best_logits)  # the best epoch's, as validated: no second pass
    threshold = {
        "value": choose_threshold(splits["val"].y, val_prob, cfg.threshold_rule),
        "rule": cfg.threshold_rule,
        "chosen_on": "val",
    }
    result: dict[str, Any] = {
        "best_epoch": best_epoch,
        "best_val_loss": best_loss,
        "epochs_run": len(history),
        "best_epoch_is_last": best_epoch == len(history),
        "threshold": threshold,
    }
    if result["best_epoch_is_last"]:
        result["warning"] = (
            f"the best epoch was the last one ({best_epoch} of {cfg.epochs} "
            "allowed): validation loss was still falling, more epochs may "
            "help (--epochs)"
        )
        log.warning(result["warning"])
    evaluation = None
    if run_evaluation and "test" in splits and _evaluable(npz, splits["test"]):
        evaluation = score_test(model, norm, splits, threshold, npz, cfg.eval_batch_size, device)
    card = {
        "training": _card_training(npz, splits, cfg, result),
        "test": _card_test(evaluation[0]) if evaluation else None,
    }
    save_checkpoint(
        ckpt,
        model,
        threshold=threshold,
        history=history,
        complete=True,
        card=card,
        extra={"config": asdict(cfg), "best_epoch": best_epoch},
        **saving,
    )
    provisional_path(ckpt).unlink(missing_ok=True)
    log.info(
        "best epoch %d (val loss %.4f); threshold %.3f (%s); checkpoint %s",
        best_epoch,
        best_loss,
        threshold["value"],
        cfg.threshold_rule,
        ckpt,
    )
    if evaluation:
        metrics, prob = evaluation
        metrics["checkpoint"] = {
            "path": str(ckpt),
            "sha256_16": checkpoint_hash(ckpt),
            "complete": True,
        }
        write_evaluation(metrics, splits, prob, val_prob, threshold, out_dir)
        result["test"] = metrics
    write_text_atomic(
        out_dir / "train_summary.json", json.dumps(result, indent=2, default=str) + "\n"
    )
    return result


def _check_config(cfg: TrainConfig) -> None:
    if cfg.backbone not in BACKBONES:
        raise DamagenetUsageError(
            f"unknown backbone {cfg.backbone!r}; choose one of {', '.join(BACKBONES)}"
        )
    if cfg.head not in HEADS:
        raise DamagenetUsageError(f"unknown head {cfg.head!r}; choose one of {', '.join(HEADS)}")
    if cfg.memory_format not in MEMORY_FORMATS:
        raise DamagenetUsageError(f"memory format must be one of {', '.join(MEMORY_FORMATS)}")
    if cfg.precision not in PRECISIONS:
        raise DamagenetUsageError(f"precision must be one of {', '.join(PRECISIONS)}")
    if cfg.threshold_rule not in THRESHOLD_RULES:
        raise DamagenetUsageError(f"threshold rule must be one of {THRESHOLD_RULES}")
    if cfg.epochs < 1 or cfg.patience < 1:
        raise DamagenetUsageError("--epochs and --patience must be at least 1")
    if cfg.batch_size < 2:
        raise DamagenetUsageError("--batch-size must be at least 2: BatchNorm needs two pairs")


def _evaluable(npz: str | Path, test: Split) -> bool:
    if len(np.unique(test.y)) == 2:
        return True
    log.warning("%s: the test split lacks a class; no test metrics", npz)
    return False


def _card_training(
    npz: str | Path, splits: dict[str, Split], cfg: TrainConfig, result: dict[str, Any]
) -> dict[str, Any]:
    """Where, when and how the model learned, for the model card."""
    config = dataset_config(npz) or {}
    aois = {
        name: sorted({str(a) for a in sp.aoi.tolist()}) if sp.aoi is not None else "not recorded"
        for name, sp in splits.items()
    }
    return {
        "origin": "trained with damagenet train",
        "aois": aois,
        "dates": config.get("dates", "not recorded in the dataset"),
        "split": protocol_text(npz),
        "pairs": {k: int(len(v.y)) for k, v in splits.items()},
        "epochs_run": result["epochs_run"],
        "best_epoch": result["best_epoch"],
        "best_epoch_is_last": result["best_epoch_is_last"],
        "recipe": {
            k: v
            for k, v in asdict(cfg).items()
            if k
            not in (
                "device",
                "progress",
                "eval_batch_size",
                "memory_format",
                "fused_optimizer",
                "threads",
            )
        },
    }


def _card_test(metrics: dict[str, Any]) -> dict[str, Any]:
    """The card's test section: headline figures at the map threshold and the protocol."""
    return {
        "metrics": {
            "threshold": metrics["threshold"]["value"],
            "accuracy": metrics["accuracy"],
            "damage_precision": metrics["Damage"]["precision"],
            "damage_recall": metrics["Damage"]["recall"],
            "macro_f1": metrics["macro_f1"],
            "roc_auc": metrics["roc_auc"],
            "pr_auc": metrics["pr_auc"],
            "test_pairs": metrics["test_pairs"],
        },
        "protocol": metrics["protocol"],
    }
