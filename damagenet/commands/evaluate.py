"""``damagenet evaluate``: score a checkpoint on the test split."""

from __future__ import annotations

import argparse

from contract.options import positive_int
from damagenet.defaults import N_BOOT, THRESHOLD_RULES, device_name


def _run(args: argparse.Namespace) -> int:
    from damagenet.evaluation.evaluate import evaluate  # heavy: only when the command runs

    evaluate(
        args.npz,
        args.ckpt,
        args.out,
        args.threshold_rule,
        args.device,
        args.batch_size,
        args.allow_provisional,
        args.n_boot,
        args.patch_ckpt,
    )
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a checkpoint on the test split",
        description="Write metrics.json (first the figures at the threshold the maps use, "
        "with how it was chosen; ROC-AUC, PR-AUC; the study's classification "
        "report at 0.5 in its own section; per-AOI metrics; both baselines and the network's "
        "paired differences from them, with intervals that resample whole AOIs or 640 m "
        "ground blocks), confusion matrices, ROC and PR curves. A patch model is scored on a "
        "patch dataset; a pixel model (siamese-unet) on a tile dataset, at pixel, patch and "
        "point level.",
    )
    p.add_argument("--npz", required=True, help="dataset NPZ with a test split")
    p.add_argument("--ckpt", required=True, help="checkpoint from 'damagenet train'")
    p.add_argument("--out", required=True, help="results folder")
    p.add_argument(
        "--patch-ckpt",
        help="with a pixel model on a tile dataset: a patch model checkpoint to score beside "
        "it on the 16 px cells of the same test tiles",
    )
    p.add_argument(
        "--threshold-rule",
        choices=THRESHOLD_RULES,
        help="re-choose the threshold on val with this rule (default: the checkpoint's)",
    )
    p.add_argument(
        "--device", type=device_name, default="auto", help="auto, cpu or cuda (%(default)s)"
    )
    p.add_argument(
        "--batch-size", type=positive_int, default=512, help="pairs per batch (%(default)s)"
    )
    p.add_argument(
        "--n-boot",
        type=positive_int,
        default=N_BOOT,
        help="bootstrap resamples per interval (%(default)s)",
    )
    p.add_argument(
        "--allow-provisional",
        action="store_true",
        help="accept a provisional checkpoint saved while training was still running "
        "(refused by default)",
    )
    p.set_defaults(func=_run)
