"""``damagenet import-seed``: the study's published weights as a checkpoint."""

from __future__ import annotations

import argparse

from contract.bands import BANDS, band_permutation
from contract.options import existing_path, positive_int
from damagenet.defaults import STUDY_BANDS


def parse_bands(text: str) -> tuple[str, ...]:
    """``--bands``: a comma-separated permutation of B02, B03, B04, B08 (argparse type)."""
    bands = band_permutation(b for b in text.split(",") if b.strip())
    if bands is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a permutation of {','.join(BANDS)} (the study's arrays are "
            f"{','.join(STUDY_BANDS)})"
        )
    return bands


def _run(args: argparse.Namespace) -> int:
    from damagenet.models.seed_import import import_seed  # heavy: only when the command runs

    import_seed(args.weights, args.stats, args.out, args.bands, args.patch_size)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import-seed",
        help="turn the original study's published weights into a checkpoint",
        description="Convert the study's SiameseCNN state dict (Model_3_weights.pt) and its "
        "normalization_stats.npz into a self-contained damagenet checkpoint that "
        "keeps the study's input convention (values / 10000, its per-band mean and "
        "std, its band order), so 'damagenet predict' maps with it directly.",
    )
    p.add_argument(
        "--weights",
        required=True,
        type=existing_path,
        help="the study's state dict, e.g. Model_3_weights.pt",
    )
    p.add_argument(
        "--stats",
        required=True,
        type=existing_path,
        help="the study's normalization_stats.npz (keys mean, std)",
    )
    p.add_argument(
        "--out", required=True, help="checkpoint to write, e.g. models/study_resnet101.pt"
    )
    p.add_argument(
        "--bands",
        type=parse_bands,
        default=STUDY_BANDS,
        help="band order of the study's arrays and statistics, a permutation of "
        "B02,B03,B04,B08 (default B04,B03,B02,B08 = R,G,B,NIR)",
    )
    p.add_argument(
        "--patch-size",
        type=positive_int,
        default=64,
        help="patch size in px the weights were trained on (%(default)s; 16 for the "
        "study's earlier version)",
    )
    p.set_defaults(func=_run)
