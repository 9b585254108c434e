"""``damagenet crossval``: leave-AOI-out folds (:mod:`damagenet.evaluation.crossval`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from contract.options import int_at_least, positive_float, positive_int
from damagenet.commands.train import add_unet_options, unet_settings
from damagenet.defaults import BACKBONE_FEATURES, N_BOOT, device_name
from damagenet.training.config import TrainConfig

if TYPE_CHECKING:
    from damagenet.evaluation.crossval_kinds import PatchTraining

#: the patch model's own schedule beside the pixel model: option, TrainConfig field, what it
#: sets, its parser
PATCH_OPTIONS: tuple[tuple[str, str, str, Callable[[str], int]], ...] = (
    ("--patch-epochs", "epochs", "maximum epochs per fold", positive_int),
    ("--patch-batch-size", "batch_size", "16 px cells per batch", int_at_least(2)),
    ("--patch-patience", "patience", "early-stopping patience in epochs", positive_int),
)


def _run(args: argparse.Namespace) -> int:
    from damagenet.evaluation.crossval import crossval  # heavy: only when the command runs

    patch = _patch_training(args)
    cfg = TrainConfig(
        epochs=args.epochs,
        patience=args.patience,
        backbone=args.backbone,
        weights=args.weights,
        device=args.device,
        seed=args.seed,
        batch_size=args.batch_size,
        lr_backbone=args.lr_backbone,
        lr_head=args.lr_head,
        progress=not args.quiet,
        **unet_settings(args),
    )
    crossval(args.npz, args.out, args.k, cfg, args.seed, args.n_boot, args.keep_data, patch)
    return 0


def _patch_training(args: argparse.Namespace) -> PatchTraining | None:
    """The patch model's schedule with ``--with-patch-model`` (unset options: the patch
    network's own defaults); its options without it are refused, as they would do nothing."""
    from damagenet.errors import DamagenetUsageError
    from damagenet.evaluation.crossval_kinds import PatchTraining

    given = {
        (option, field): getattr(args, f"patch_{field}")
        for option, field, *_ in PATCH_OPTIONS
        if getattr(args, f"patch_{field}") is not None
    }
    if not args.with_patch_model:
        if given:
            names = ", ".join(option for option, _ in given)
            raise DamagenetUsageError(f"{names}: only with --with-patch-model (no patch model)")
        return None
    return PatchTraining(**{field: value for (_, field), value in given.items()})


def _add_training(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    """How each fold's network is trained."""
    p.add_argument(
        "--backbone",
        choices=list(BACKBONE_FEATURES),
        default=d.backbone,
        help="ResNet depth of the patch model (%(default)s)",
    )
    p.add_argument(
        "--weights",
        choices=("none", "imagenet"),
        default=d.weights,
        help="initialisation (%(default)s)",
    )
    p.add_argument(
        "--epochs",
        type=positive_int,
        default=d.epochs,
        help="maximum epochs per fold of the dataset's network (%(default)s)",
    )
    p.add_argument(
        "--patience",
        type=positive_int,
        default=d.patience,
        help="early-stopping patience in epochs of the dataset's network (%(default)s)",
    )
    p.add_argument(
        "--batch-size",
        type=int_at_least(2),
        default=d.batch_size,
        help="pairs (or tiles) per batch of the dataset's network (%(default)s)",
    )
    p.add_argument(
        "--lr-backbone",
        type=positive_float,
        default=d.lr_backbone,
        help="learning rate of the encoder (%(default)s; the small U-Net of a tile dataset "
        "trains better at 1e-3)",
    )
    p.add_argument(
        "--lr-head",
        type=positive_float,
        default=d.lr_head,
        help="learning rate of the head or decoder (%(default)s)",
    )
    p.add_argument(
        "--device", type=device_name, default=d.device, help="auto, cpu or cuda (%(default)s)"
    )
    add_unet_options(p, d)
    _add_patch_model(p, d)


def _add_patch_model(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    """The patch model beside the pixel model, and its own schedule."""
    p.add_argument(
        "--with-patch-model",
        action="store_true",
        help="on a tile dataset, also train the patch model (--backbone, the study's learning "
        "rates, its own --patch-epochs, --patch-batch-size, --patch-patience) on the training "
        "tiles' 16 px cells and score it beside the pixel model",
    )
    for option, field, what, parse in PATCH_OPTIONS:
        p.add_argument(
            option,
            type=parse,
            default=None,
            metavar="N",
            help=f"with --with-patch-model: the patch model's {what} (default "
            f"{getattr(d, field)}, the patch network's own)",
        )


def _add_run(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    """Seed, intervals and what is kept."""
    p.add_argument(
        "--seed",
        type=int,
        default=d.seed,
        help="seed of the fold assignment, training and bootstrap (%(default)s)",
    )
    p.add_argument(
        "--n-boot",
        type=positive_int,
        default=N_BOOT,
        help="bootstrap resamples per interval (%(default)s)",
    )
    p.add_argument(
        "--keep-data",
        action="store_true",
        help="keep each fold's dataset NPZ (deleted after training by default)",
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "crossval",
        help="leave-AOI-out cross-validation of the network and baselines",
        description="Pool every pair (or tile) of a dataset NPZ, hold out whole AOIs in k "
        "folds (each AOI test once, one training-side AOI for validation), train the network "
        "and both baselines per fold, and write crossval.json, crossval.md, predictions.npz, "
        "roc_models.png and fold<i>/model.pt (the ensemble). A patch dataset trains the "
        "patch model (siamese-resnet) and scores pairs; a tile dataset ('pipeline dataset "
        "--tile-size') trains the pixel model (siamese-unet) and scores pixels, 16 px patches "
        "and points. Intervals resample whole AOIs (pooled) or 640 m blocks (one AOI).",
    )
    p.add_argument("--npz", required=True, help="dataset NPZ whose pairs carry 'aoi' arrays")
    p.add_argument(
        "--k", type=positive_int, required=True, help="number of folds (2 to the number of AOIs)"
    )
    p.add_argument("--out", required=True, help="results folder")
    d = TrainConfig()
    _add_training(p, d)
    _add_run(p, d)
    p.set_defaults(func=_run)
