"""``damagenet train``: train a model on a dataset NPZ (:mod:`damagenet.training.train`)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from contract.options import (
    distinct_outputs,
    existing_path,
    non_negative_float,
    positive_float,
    positive_int,
)
from damagenet.defaults import (
    BACKBONE_FEATURES,
    CHANNELS_LAST_MIN_PATCH_CPU,
    HEADS,
    MEMORY_FORMATS,
    PRECISION_NAMES,
    THRESHOLD_RULES,
    device_name,
)
from damagenet.models.choices import (
    ARCHITECTURE_OF_KIND,
    ARCHITECTURES,
    AUTO,
    FUSIONS,
    UNET_ENCODERS,
)
from damagenet.training.config import TrainConfig


def _run(args: argparse.Namespace) -> int:
    from damagenet.training.train import train  # heavy: only when the command runs

    distinct_outputs([args.ckpt, args.out], [args.npz])
    cfg = config_of(args, resolve_arch(args.arch, args.npz))
    train(args.npz, args.out, args.ckpt, cfg, run_evaluation=not args.no_evaluate)
    return 0


def resolve_arch(arch: str, npz: str) -> str:
    """``auto``: the architecture that trains on the dataset's kind (tiles: the pixel model)."""
    if arch != AUTO:
        return arch
    from damagenet.data.pairs import dataset_kind, open_npz

    with open_npz(Path(npz)) as d:
        kind = dataset_kind(d)
    chosen = ARCHITECTURE_OF_KIND[kind]
    logging.getLogger(__name__).info("--arch auto: %s for a %s dataset", chosen, kind)
    return chosen


def unet_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields of :func:`add_unet_options`, from the parsed command line."""
    return {
        "encoder": args.encoder,
        "fusion": args.fusion,
        "fusion_conv": args.fusion_conv,
        "width": args.width,
        "weights_file": args.weights_file,
        "pos_weight": args.pos_weight,
        "dice_weight": args.dice_weight,
        "oversample": args.oversample,
    }


def config_of(args: argparse.Namespace, arch: str) -> TrainConfig:
    """The options record of the parsed command line, with the architecture resolved."""
    return TrainConfig(
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
        arch=arch,
        **unet_settings(args),
    )


def batch_size(text: str) -> int:
    """A batch of at least 2 pairs: BatchNorm in training mode cannot learn from one."""
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError("must be at least 2 (BatchNorm needs two pairs)")
    return value


def share(text: str) -> float:
    """A share in [0, 1) (``--oversample``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {text}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    d = TrainConfig()
    p = sub.add_parser(
        "train",
        help="train the Siamese ResNet (patches) or the Siamese U-Net (tiles) on a dataset NPZ",
        description="Train on the train split, early-stop on validation loss, keep the best "
        "checkpoint (self-contained: weights, architecture, bands, patch or tile size, "
        "normalisation, threshold, history, dataset hash, model card), then evaluate on the "
        "test split. Writes <out>/train_log.csv, train_summary.json and the evaluation "
        "artefacts as one set: a failed run leaves none of them.",
    )
    p.add_argument(
        "--npz", required=True, type=existing_path, help="dataset NPZ (study, flat or tile layout)"
    )
    p.add_argument("--out", required=True, help="results folder (logs, metrics, plots)")
    p.add_argument(
        "--ckpt", required=True, help="checkpoint path, e.g. models/best_siamese-unet.pt"
    )
    _architecture_options(p, d)
    add_unet_options(p, d)
    _recipe_options(p, d)
    _speed_options(p, d)
    p.set_defaults(func=_run)


def _architecture_options(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    p.add_argument(
        "--arch",
        choices=(AUTO, *ARCHITECTURES),
        default=AUTO,
        help="siamese-resnet: the study's patch classifier, one value per pair of a patch "
        "dataset; siamese-unet: the pixel model, one value per pixel of a tile dataset "
        "('pipeline dataset --tile-size 64'); auto: the one of the dataset's kind "
        "(%(default)s)",
    )
    p.add_argument(
        "--backbone",
        choices=list(BACKBONE_FEATURES),
        default=d.backbone,
        help="siamese-resnet: ResNet depth (%(default)s)",
    )
    p.add_argument(
        "--head",
        choices=list(HEADS),
        default=d.head,
        help="siamese-resnet: the study's README head 4F-256-1 (study-readme) or its "
        "published code's 4F-4096-1024-256-1 (study-code) (%(default)s)",
    )
    p.add_argument(
        "--weights",
        choices=("none", "imagenet"),
        default=d.weights,
        help="initialisation: random, or torchvision ImageNet weights mapped onto the bands "
        "(siamese-resnet: through torchvision's cache, needs network or a cached copy; "
        "siamese-unet: from --weights-file) (%(default)s)",
    )


def add_unet_options(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    """The pixel model's recipe, shared with ``damagenet crossval``."""
    p.add_argument(
        "--encoder",
        choices=UNET_ENCODERS,
        default=d.encoder,
        help="siamese-unet: shared encoder, small (from scratch, about 1 M parameters, "
        "FC-Siam-like) or a torchvision ResNet (%(default)s)",
    )
    p.add_argument(
        "--fusion",
        choices=FUSIONS,
        default=d.fusion,
        help="siamese-unet: how the dates meet at every skip scale: diff |after - before|, "
        "conc [before, after], both (%(default)s); the seed's setting is --encoder resnet50 "
        "--fusion conc --fusion-conv",
    )
    p.add_argument(
        "--fusion-conv",
        action="store_true",
        help="siamese-unet: a 1 x 1 convolution after each fusion, back to the encoder's width",
    )
    p.add_argument(
        "--width",
        type=positive_int,
        default=d.width,
        help="siamese-unet: channels of the small encoder's first stage (x 1, 2, 4, 8) "
        "(%(default)s)",
    )
    p.add_argument(
        "--weights-file",
        default=None,
        help="siamese-unet with --weights imagenet: a local torchvision ResNet state dict "
        "(e.g. resnet50-11ad3fa6.pth); nothing is downloaded",
    )
    p.add_argument(
        "--pos-weight",
        type=positive_float,
        default=None,
        help="siamese-unet: weight of damaged pixels in the masked BCE (default 1)",
    )
    p.add_argument(
        "--dice-weight",
        type=non_negative_float,
        default=d.dice_weight,
        help="siamese-unet: weight of a masked soft-Dice term added to the BCE (%(default)s)",
    )
    p.add_argument(
        "--oversample",
        type=share,
        default=d.oversample,
        help="siamese-unet: share of each epoch's draws given to tiles holding damage, "
        "0 for a plain shuffled pass (%(default)s)",
    )


def _recipe_options(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    p.add_argument(
        "--epochs", type=positive_int, default=d.epochs, help="maximum epochs (%(default)s)"
    )
    p.add_argument(
        "--batch-size",
        type=batch_size,
        default=d.batch_size,
        help="pairs (patches or tiles) per batch, at least 2 for BatchNorm (%(default)s)",
    )
    p.add_argument(
        "--patience",
        type=positive_int,
        default=d.patience,
        help="epochs without val-loss improvement before stopping (%(default)s)",
    )
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (%(default)s)")
    p.add_argument(
        "--lr-backbone",
        type=positive_float,
        default=d.lr_backbone,
        help="Adam learning rate of the backbone (the U-Net's shared encoder; FC-Siam used "
        "1e-3 from scratch) (%(default)s)",
    )
    p.add_argument(
        "--lr-head",
        type=positive_float,
        default=d.lr_head,
        help="Adam learning rate of the head (the U-Net's fusion and decoder) (%(default)s)",
    )
    p.add_argument(
        "--weight-decay",
        type=non_negative_float,
        default=d.weight_decay,
        help="Adam weight decay (%(default)s)",
    )
    p.add_argument(
        "--clip-norm",
        type=positive_float,
        default=d.clip_norm,
        help="gradient clipping norm (%(default)s)",
    )
    p.add_argument(
        "--threshold-rule",
        choices=THRESHOLD_RULES,
        default=d.threshold_rule,
        help="decision threshold chosen on val (pairs, or labelled pixels): recall90 = "
        "highest threshold with damage recall >= 0.9; f1 = maximum F1 (%(default)s)",
    )
    p.add_argument("--no-augment", action="store_true", help="no flips/rotations during training")
    p.add_argument(
        "--no-evaluate", action="store_true", help="skip the test-split evaluation at the end"
    )


def _speed_options(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    p.add_argument(
        "--device", type=device_name, default=d.device, help="auto, cpu or cuda (%(default)s)"
    )
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
