"""``damagenet train``: the study's recipe, reproducible and fast on CPU and GPU.

Adam with lr 1e-4 for the backbone and 1e-3 for the head, weight decay 1e-4, gradient clipping
at norm 1.5, BCE with logits, batch 64, up to 40 epochs with early stopping on validation loss;
the best checkpoint is kept. Each split lives in memory as tensors and batches are drawn by
index; augmentation applies one random symmetry of the square to both epochs of a pair. Mixed
precision on CUDA.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from contract.atomic import write_text_atomic
from damagenet.checkpoint import save_checkpoint
from damagenet.data import (
    Normalisation,
    TensorSplit,
    augment,
    file_sha256,
    load_splits,
    require_both_classes,
    to_tensors,
)
from damagenet.errors import DamagenetError
from damagenet.inference import predict_logits, resolve_device, sigmoid
from damagenet.metrics import THRESHOLD_RULES, choose_threshold, ranking_metrics
from damagenet.model import BACKBONES, SiameseResNet, build_model

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Training settings; the defaults are the original study's recipe."""

    epochs: int = 40
    batch_size: int = 64
    patience: int = 10
    backbone: str = "resnet101"
    weights: str = "none"
    device: str = "auto"
    seed: int = 42
    lr_backbone: float = 1e-4
    lr_head: float = 1e-3
    weight_decay: float = 1e-4
    clip_norm: float = 1.5
    threshold_rule: str = "recall90"
    augment: bool = True
    eval_batch_size: int = 512
    progress: bool = True


def make_optimizer(model: SiameseResNet, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam([
        {"params": model.backbone_parameters(), "lr": cfg.lr_backbone},
        {"params": model.head_parameters(), "lr": cfg.lr_head},
    ], weight_decay=cfg.weight_decay)


class Stepper:
    """One optimisation step: forward, BCE, backward, clipping, update (AMP on CUDA).

    Shared by the training loop and the throughput benchmark, so both measure the same work.
    """

    def __init__(self, model: SiameseResNet, optimizer: torch.optim.Optimizer,
                 device: torch.device, clip_norm: float) -> None:
        self.model, self.optimizer, self.device = model, optimizer, device
        self.clip_norm = clip_norm
        self.amp = device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.loss_fn = nn.BCEWithLogitsLoss()

    def __call__(self, before: torch.Tensor, after: torch.Tensor, y: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=self.device.type, dtype=torch.float16,
                            enabled=self.amp):
            logits = self.model(before, after)
            loss = self.loss_fn(logits.float(), y)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach(), logits.detach()


def train_epoch(stepper: Stepper, data: TensorSplit, batch_size: int, generator: torch.Generator,
                use_augment: bool = True, desc: str = "train", progress: bool = True
                ) -> tuple[float, float]:
    """One pass over ``data`` (already on the device) in shuffled batches; (loss, accuracy)."""
    stepper.model.train()
    n = len(data)
    perm = torch.randperm(n, generator=generator).to(data.y.device)
    loss_sum = torch.zeros((), device=data.y.device)
    correct = torch.zeros((), device=data.y.device)
    seen = 0
    bar = tqdm(total=n, desc=desc, unit="pair", leave=False, disable=not progress)
    for start in range(0, n, batch_size):
        idx = perm[start:start + batch_size]
        if len(idx) < 2:  # BatchNorm needs two samples
            continue
        xb, xa, y = data.before[idx], data.after[idx], data.y[idx]
        if use_augment:
            xb, xa = augment(xb, xa, generator)
        loss, logits = stepper(xb, xa, y)
        loss_sum += loss * len(idx)
        correct += ((logits > 0).float() == y).sum()
        seen += len(idx)
        bar.update(len(idx))
    bar.close()
    return float(loss_sum) / max(seen, 1), float(correct) / max(seen, 1)


def _val_metrics(logits: np.ndarray, y: np.ndarray) -> dict[str, float | None]:
    t_logits = torch.from_numpy(logits)
    t_y = torch.from_numpy(y.astype(np.float32))
    loss = float(nn.functional.binary_cross_entropy_with_logits(t_logits, t_y))
    prob = sigmoid(logits)
    return {"val_loss": loss, "val_acc": float(((prob >= 0.5) == y).mean()),
            "val_roc_auc": ranking_metrics(y, prob)["roc_auc"]}


def train(npz: str | Path, out_dir: str | Path, ckpt: str | Path,
          cfg: TrainConfig | None = None, run_evaluation: bool = True) -> dict[str, Any]:
    """Train on the NPZ's train split, early-stop on val, keep the best checkpoint."""
    cfg = cfg or TrainConfig()
    if cfg.backbone not in BACKBONES:
        raise DamagenetError(f"unknown backbone {cfg.backbone!r}; choose one of "
                             f"{', '.join(BACKBONES)}")
    if cfg.threshold_rule not in THRESHOLD_RULES:
        raise DamagenetError(f"threshold rule must be one of {THRESHOLD_RULES}")
    out_dir, ckpt = Path(out_dir), Path(ckpt)
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
    train_t = to_tensors(splits["train"], norm).to(device)
    val_t = to_tensors(splits["val"], norm)
    model = build_model(cfg.backbone, cfg.weights).to(device)
    stepper = Stepper(model, make_optimizer(model, cfg), device, cfg.clip_norm)
    generator = torch.Generator().manual_seed(cfg.seed)
    dataset = {"path": str(npz), "sha256": file_sha256(npz),
               "pairs": {k: int(len(v.y)) for k, v in splits.items()}}
    log.info("training %s (%s weights) on %s: %d train / %d val pairs of %d px, device %s",
             cfg.backbone, cfg.weights, npz, len(train_t), len(val_t), patch_size, device)

    out_dir.mkdir(parents=True, exist_ok=True)
    history: list[dict[str, Any]] = []
    best_loss, best_state, best_epoch, stale = float("inf"), None, 0, 0
    log_path = out_dir / "train_log.csv"
    fields = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_roc_auc",
              "seconds"]
    with open(log_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for epoch in range(1, cfg.epochs + 1):
            t0 = time.perf_counter()
            tr_loss, tr_acc = train_epoch(stepper, train_t, cfg.batch_size, generator,
                                          cfg.augment, f"epoch {epoch}/{cfg.epochs}",
                                          cfg.progress)
            val = _val_metrics(predict_logits(model, val_t, cfg.eval_batch_size, device),
                               splits["val"].y)
            row = {"epoch": epoch, "train_loss": tr_loss, "train_acc": tr_acc, **val,
                   "seconds": time.perf_counter() - t0}
            history.append(row)
            writer.writerow(row)
            fh.flush()
            improved = val["val_loss"] < best_loss
            log.info("epoch %d: train loss %.4f acc %.3f | val loss %.4f acc %.3f ROC-AUC %s "
                     "| %.1f s%s", epoch, tr_loss, tr_acc, val["val_loss"], val["val_acc"],
                     f"{val['val_roc_auc']:.3f}" if val["val_roc_auc"] is not None else "n/a",
                     row["seconds"], " *" if improved else "")
            if improved:
                best_loss, best_epoch, stale = val["val_loss"], epoch, 0
                best_state = copy.deepcopy(model.state_dict())
                save_checkpoint(ckpt, model, patch_size=patch_size, norm=norm,
                                threshold={"value": 0.5, "rule": "provisional"},
                                history=history, dataset=dataset,
                                extra={"config": asdict(cfg), "best_epoch": best_epoch})
            else:
                stale += 1
                if stale >= cfg.patience:
                    log.info("early stop: no val-loss improvement for %d epochs", stale)
                    break
    assert best_state is not None
    model.load_state_dict(best_state)
    val_prob = sigmoid(predict_logits(model, val_t, cfg.eval_batch_size, device))
    threshold = {"value": choose_threshold(splits["val"].y, val_prob, cfg.threshold_rule),
                 "rule": cfg.threshold_rule, "chosen_on": "val"}
    save_checkpoint(ckpt, model, patch_size=patch_size, norm=norm, threshold=threshold,
                    history=history, dataset=dataset,
                    extra={"config": asdict(cfg), "best_epoch": best_epoch})
    log.info("best epoch %d (val loss %.4f); threshold %.3f (%s); checkpoint %s", best_epoch,
             best_loss, threshold["value"], cfg.threshold_rule, ckpt)
    result: dict[str, Any] = {"best_epoch": best_epoch, "best_val_loss": best_loss,
                              "threshold": threshold, "epochs_run": len(history)}
    if run_evaluation and "test" in splits:
        from damagenet.evaluate import evaluate

        result["test"] = evaluate(npz, ckpt, out_dir, device=cfg.device,
                                  batch_size=cfg.eval_batch_size)
    write_text_atomic(out_dir / "train_summary.json",
                      json.dumps(result, indent=2, default=str) + "\n")
    return result


def _run(args: argparse.Namespace) -> int:
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, patience=args.patience,
                      backbone=args.backbone, weights=args.weights, device=args.device,
                      seed=args.seed, lr_backbone=args.lr_backbone, lr_head=args.lr_head,
                      weight_decay=args.weight_decay, clip_norm=args.clip_norm,
                      threshold_rule=args.threshold_rule, augment=not args.no_augment,
                      progress=not args.quiet)
    train(args.npz, args.out, args.ckpt, cfg, run_evaluation=not args.no_evaluate)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    d = TrainConfig()
    p = sub.add_parser(
        "train", help="train the Siamese ResNet on a dataset NPZ",
        description="Train on the train split, early-stop on validation loss, keep the best "
                    "checkpoint (self-contained: weights, architecture, bands, patch size, "
                    "normalisation, threshold, history, dataset hash), then evaluate on the "
                    "test split. Writes <out>/train_log.csv and the evaluation artefacts.")
    p.add_argument("--npz", required=True, help="dataset NPZ (study or flat layout)")
    p.add_argument("--out", required=True, help="results folder (logs, metrics, plots)")
    p.add_argument("--ckpt", required=True, help="checkpoint path, e.g. models/best_resnet101.pt")
    p.add_argument("--epochs", type=int, default=d.epochs, help="maximum epochs (%(default)s)")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="pairs per batch (%(default)s)")
    p.add_argument("--patience", type=int, default=d.patience,
                   help="epochs without val-loss improvement before stopping (%(default)s)")
    p.add_argument("--backbone", choices=list(BACKBONES), default=d.backbone,
                   help="ResNet depth (%(default)s)")
    p.add_argument("--weights", choices=("none", "imagenet"), default=d.weights,
                   help="initialisation: random, or torchvision ImageNet weights mapped onto "
                        "the bands (needs network or a cached copy) (%(default)s)")
    p.add_argument("--device", default=d.device, help="auto, cpu or cuda (%(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (%(default)s)")
    p.add_argument("--lr-backbone", type=float, default=d.lr_backbone,
                   help="Adam learning rate of the backbone (%(default)s)")
    p.add_argument("--lr-head", type=float, default=d.lr_head,
                   help="Adam learning rate of the head (%(default)s)")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay,
                   help="Adam weight decay (%(default)s)")
    p.add_argument("--clip-norm", type=float, default=d.clip_norm,
                   help="gradient clipping norm (%(default)s)")
    p.add_argument("--threshold-rule", choices=THRESHOLD_RULES, default=d.threshold_rule,
                   help="decision threshold chosen on val: recall90 = highest threshold with "
                        "damage recall >= 0.9; f1 = maximum F1 (%(default)s)")
    p.add_argument("--no-augment", action="store_true",
                   help="no flips/rotations during training")
    p.add_argument("--no-evaluate", action="store_true",
                   help="skip the test-split evaluation at the end")
    p.set_defaults(func=_run)
