"""``pipeline patches``: cut aligned before/after/label patch pairs of one AOI.

Argparse wiring only: :mod:`pipeline.patches` (rasterio, scipy, pyproj) is imported when the
command runs, so ``pipeline --help`` does not pay for it.
"""

from __future__ import annotations

import argparse

from contract.options import distinct_outputs, existing_path
from pipeline.defaults import DEFAULT_MEMORY_MB, DEFAULT_PATCH_SIZE


def _run(args: argparse.Namespace) -> int:
    distinct_outputs([args.out], [args.before, args.after, args.labels])
    from pipeline.aoi import load_aoi
    from pipeline.patches import cut_patches

    slug = load_aoi(args.aoi_file).slug
    cut_patches(
        slug,
        args.before,
        args.after,
        args.labels,
        args.out,
        size=args.size,
        stride=args.stride,
        min_damage_pixels=args.min_damage_pixels,
        memory_mb=args.memory_mb,
        progress=not args.quiet,
    )
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "patches",
        help="cut aligned before/after/label patch pairs of one AOI",
        description="Cut patch pairs on a regular grid from before, after and label rasters of "
        "one AOI (same grid). Drops patches with nodata in either epoch or unknown "
        "labels; writes before/after (N, 4, S, S) uint16, label, damage_pixels, "
        "row/col, x/y, lon/lat, crs, transform and aoi to an NPZ, and counts per "
        "class and drop reason to a JSON beside it.",
    )
    p.add_argument("aoi_file", type=existing_path, help="AOI GeoJSON file (names the patches)")
    p.add_argument("--before", required=True, type=existing_path, help="before scene GeoTIFF")
    p.add_argument("--after", required=True, type=existing_path, help="after scene GeoTIFF")
    p.add_argument(
        "--labels",
        required=True,
        type=existing_path,
        help="label GeoTIFF (1 damage, 0 no, 255 unknown)",
    )
    p.add_argument("--out", required=True, help="output NPZ")
    p.add_argument(
        "--size",
        type=int,
        default=DEFAULT_PATCH_SIZE,
        help="patch side in px (default: %(default)s)",
    )
    p.add_argument(
        "--stride",
        type=int,
        default=DEFAULT_PATCH_SIZE,
        help="step between patches in px; equal to --size for non-overlapping "
        "patches (default: %(default)s)",
    )
    p.add_argument(
        "--min-damage-pixels",
        type=int,
        default=1,
        help="damage pixels needed to label a patch damaged (default: %(default)s)",
    )
    p.add_argument(
        "--memory-mb",
        type=float,
        default=DEFAULT_MEMORY_MB,
        help="memory budget for reading the rasters, in MiB (default: %(default)s)",
    )
    p.set_defaults(func=_run)
