"""``pipeline dataset``: split spatially, balance and write the dataset NPZ.

Argparse wiring only: :mod:`pipeline.dataset` is imported when the command runs, so
``pipeline --help`` does not pay for it.
"""

from __future__ import annotations

import argparse

from contract.npz_keys import TILE_CELL
from contract.options import (
    distinct_outputs,
    existing_path,
    float_in,
    multiple_of,
    positive_float,
    probability,
)
from pipeline.defaults import DEFAULT_HARD_NEGATIVE_SHARE


def _run(args: argparse.Namespace) -> int:
    distinct_outputs([args.out], [args.patch_files, args.nvd])
    from pipeline.dataset import DatasetOptions, build_dataset

    opts = DatasetOptions(
        split=args.split,
        block_m=args.block_m,
        test_aois=args.test_aois,
        val_aois=args.val_aois,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        negatives_per_positive=args.negatives_per_positive,
        seed=args.seed,
        hard_negative_share=args.hard_negative_share,
        nvd_files=args.nvd,
        allow_empty_split=args.allow_empty_split,
        keep_imbalance=args.keep_imbalance,
        tile_size=args.tile_size,
    )
    build_dataset(args.patch_files, args.out, opts)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dataset",
        help="split spatially, balance and write the dataset NPZ",
        description="Combine patch files into the study's NPZ layout (Xb_train, Xa_train, "
        "y_train, ... val, test) with per-split metadata, splitting by whole "
        "ground blocks or whole AOIs before balancing, so no ground is shared "
        "between splits. No augmentation. A summary per AOI and split is written "
        "as <out>_summary.json and .md.",
    )
    p.add_argument(
        "patch_files",
        nargs="+",
        type=existing_path,
        help="patch NPZ files from 'pipeline patches' (tile files from 'pipeline tiles' "
        "with --tile-size)",
    )
    p.add_argument(
        "--out",
        default="data/processed/FinalBalanced_splits.npz",
        help="output NPZ (default: %(default)s)",
    )
    _add_split_options(p)
    _add_balance_options(p)
    p.set_defaults(func=_run)


def _add_split_options(p: argparse.ArgumentParser) -> None:
    """How ground goes to train, val and test."""
    p.add_argument(
        "--split",
        choices=("blocks", "aoi"),
        default="blocks",
        help="blocks: whole ground blocks per split; aoi: hold out whole AOIs "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--block-m",
        type=positive_float,
        default=640.0,
        help="block side in metres for --split blocks (default: %(default)s)",
    )
    p.add_argument("--test-aois", nargs="*", default=[], help="AOIs held out as test (--split aoi)")
    p.add_argument(
        "--val-aois",
        nargs="*",
        default=[],
        help="AOIs held out as validation (--split aoi; default: blocks of the training AOIs)",
    )
    p.add_argument(
        "--val-fraction",
        type=float_in(0.0, 1.0),
        default=0.2,
        help="share of damaged patches for validation (default: %(default)s)",
    )
    p.add_argument(
        "--test-fraction",
        type=float_in(0.0, 1.0),
        default=0.2,
        help="share of damaged patches for test with --split blocks (default: %(default)s)",
    )


def _add_balance_options(p: argparse.ArgumentParser) -> None:
    """How each split is balanced, and what else is written."""
    p.add_argument(
        "--negatives-per-positive",
        type=positive_float,
        default=1.0,
        help="no-damage patches sampled per damaged patch in each split (default: %(default)s)",
    )
    p.add_argument(
        "--hard-negative-share",
        type=probability,
        default=DEFAULT_HARD_NEGATIVE_SHARE,
        help="share of the no-damage patches drawn from built-up ground: patches "
        "holding 'No Visible Damage' sites (--nvd) first, then patches whose "
        "before image looks built-up (low NDVI, bright, grey); 0 samples "
        "negatives at random (default: %(default)s)",
    )
    p.add_argument(
        "--nvd",
        nargs="+",
        default=[],
        metavar="FILE",
        type=existing_path,
        help="vector files of UNOSAT 'No Visible Damage' site points (any CRS); "
        "patches holding them are preferred as hard negatives",
    )
    p.add_argument("--seed", type=int, default=42, help="random seed (default: %(default)s)")
    p.add_argument(
        "--keep-imbalance",
        action="store_true",
        help="when a split of an AOI has too few no-damage patches, keep all its damaged "
        "ones (warned, naming AOIs and counts) instead of sampling them down to balance",
    )
    p.add_argument(
        "--tile-size",
        type=multiple_of(TILE_CELL),
        metavar="PX",
        help="build a tile dataset for the pixel model from 'pipeline tiles' files of this "
        "side: y_<split> (N, PX, PX) uint8 per-pixel targets, every tile of a split kept "
        "(no balancing by sampling); pre-war tile files join their AOI's blocks",
    )
    p.add_argument(
        "--allow-empty-split",
        action="store_true",
        help="write the dataset even if a split has no damaged patch (default: refuse)",
    )
