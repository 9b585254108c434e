"""``damagenet train``: train a model on a dataset NPZ (:mod:`damagenet.training.train`)."""

from __future__ import annotations

import argparse

from contract.options import positive_int
from damagenet.defaults import (
    BACKBONE_FEATURES,
    CHANNELS_LAST_MIN_PATCH_CPU,
    HEADS,
    MEMORY_FORMATS,
    PRECISION_NAMES,
    THRESHOLD_RULES,
)
from damagenet.training.config import TrainConfig


def _run(args: argparse.Namespace) -> int:
    from damagenet.training.train import train  # heavy: only when the command runs

    cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        patience=args.patience,
        backbone=args.backbone,
        weights=args.weights,
        device=args.device,
        seed=args.seed,
        lr_backbone=args.lr_backbone,
        lr_head=args.lr_head,
        weight_decay=args.weight_decay,
        clip_norm=args.clip_norm,
        threshold_rule=args.threshold_rule,
        head=args.head,
        augment=not args.no_augment,
        threads=args.threads,
        memory_format=args.memory_format,
        precision=args.precision,
        progress=not args.quiet,
    )
    train(args.npz, args.out, args.ckpt, cfg, run_evaluation=not args.no_evaluate)
    return 0


def batch_size(text: str) -> int:
    """A batch of at least 2 pairs: BatchNorm in training mode cannot learn from one."""
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError("must be at least 2 (BatchNorm needs two pairs)")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    d = TrainConfig()
    p = sub.add_parser(
        "train",
        help="train the Siamese ResNet on a dataset NPZ",
        description="Train on the train split, early-stop on validation loss, keep the best "
        "checkpoint (self-contained: weights, architecture, bands, patch size, "
        "normalisation, threshold, history, dataset hash), then evaluate on the "
        "test split. Writes <out>/train_log.csv and the evaluation artefacts.",
    )
    p.add_argument("--npz", required=True, help="dataset NPZ (study or flat layout)")
    p.add_argument("--out", required=True, help="results folder (logs, metrics, plots)")
    p.add_argument("--ckpt", required=True, help="checkpoint path, e.g. models/best_resnet101.pt")
    p.add_argument(
        "--epochs", type=positive_int, default=d.epochs, help="maximum epochs (%(default)s)"
    )
    p.add_argument(
        "--batch-size",
        type=batch_size,
        default=d.batch_size,
        help="pairs per batch, at least 2 for BatchNorm (%(default)s)",
    )
    p.add_argument(
        "--patience",
        type=positive_int,
        default=d.patience,
        help="epochs without val-loss improvement before stopping (%(default)s)",
    )
    p.add_argument(
        "--backbone",
        choices=list(BACKBONE_FEATURES),
        default=d.backbone,
        help="ResNet depth (%(default)s)",
    )
    p.add_argument(
        "--head",
        choices=list(HEADS),
        default=d.head,
        help="the study's README head 4F-256-1 (study-readme) or its published "
        "code's 4F-4096-1024-256-1 (study-code) (%(default)s)",
    )
    p.add_argument(
        "--weights",
        choices=("none", "imagenet"),
        default=d.weights,
        help="initialisation: random, or torchvision ImageNet weights mapped onto "
        "the bands (needs network or a cached copy) (%(default)s)",
    )
    p.add_argument("--device", default=d.device, help="auto, cpu or cuda (%(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (%(default)s)")
    p.add_argument(
        "--lr-backbone",
        type=float,
        default=d.lr_backbone,
        help="Adam learning rate of the backbone (%(default)s)",
    )
    p.add_argument(
        "--lr-head",
        type=float,
        default=d.lr_head,
        help="Adam learning rate of the head (%(default)s)",
    )
    p.add_argument(
        "--weight-decay", type=float, default=d.weight_decay, help="Adam weight decay (%(default)s)"
    )
    p.add_argument(
        "--clip-norm", type=float, default=d.clip_norm, help="gradient clipping norm (%(default)s)"
    )
    p.add_argument(
        "--threshold-rule",
        choices=THRESHOLD_RULES,
        default=d.threshold_rule,
        help="decision threshold chosen on val: recall90 = highest threshold with "
        "damage recall >= 0.9; f1 = maximum F1 (%(default)s)",
    )
    p.add_argument("--no-augment", action="store_true", help="no flips/rotations during training")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="CPU threads for torch (default: torch's choice, one per core)",
    )
    p.add_argument(
        "--memory-format",
        choices=MEMORY_FORMATS,
        default=d.memory_format,
        help="layout of images and convolution weights: channels-last (NHWC), "
        "contiguous (NCHW), or auto: channels-last on CUDA and for patches "
        f"of {CHANNELS_LAST_MIN_PATCH_CPU} px and more on a CPU, where it "
        "was measured faster (%(default)s)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISION_NAMES,
        default=d.precision,
        help="arithmetic of the forward and backward passes: auto (float16 mixed "
        "precision on CUDA, float32 on a CPU), float32, bfloat16 (mixed "
        "precision, 1.7x faster per step at 64 px on a CPU with AVX-512 BF16; "
        "changes rounding) or float16 (CUDA) (%(default)s)",
    )
    p.add_argument(
        "--no-evaluate", action="store_true", help="skip the test-split evaluation at the end"
    )
    p.set_defaults(func=_run)
