"""``damagenet fuse --pwtt X_pwtt.tif --optical X_damage_prob.tif --out X_fused.tif``: radar and
optical evidence in one map, with no training.

Argument wiring only; the work is :func:`damagenet.radar.fused_map.fuse_map` (imported when the
command runs, so ``--help`` stays fast).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from contract.options import distinct_outputs, existing_path, positive_float
from damagenet.radar import FUSED_THRESHOLD


def _run(args: argparse.Namespace) -> int:
    from damagenet.radar.fused_map import FuseOptions, fuse_map

    distinct_outputs([args.out], [args.pwtt, args.optical, args.optical_null])

    summary = fuse_map(
        Path(args.pwtt),
        Path(args.optical),
        args.out,
        FuseOptions(
            args.threshold,
            Path(args.optical_null) if args.optical_null else None,
            args.radar_centre,
        ),
    )
    px = summary["pixels"]
    print(
        f"{args.out}: {summary['damaged_km2']:.3f} of {summary['seen_km2']:.3f} km2 above z "
        f"{args.threshold:g} ({px['both']} px seen by both sensors, {px['radar_only']} by radar "
        f"only, {px['optical_only']} by optics only)"
    )
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fuse",
        help="combine a PWTT radar map and a Sentinel-2 probability map, with no training",
        description="The training-free fusion of radar and optical evidence (PWTT's combined "
        "mode, in spirit): T of --pwtt standardised with the radar's pre-war null test "
        "(recorded by 'damagenet pwtt --null'), the logit of --optical's probability "
        "standardised with its own no-change spread (robustly from the map itself, or from "
        "--optical-null), and the two z-scores added per pixel. Where the optical map has no "
        "value (cloud, nodata) the radar's z stands alone. Both maps must be on one grid. "
        "Writes the fused z (float32 COG), the class map at --threshold, which sensors saw "
        "each pixel, QGIS styles, a summary and a quick-look beside --out.",
    )
    p.add_argument(
        "--pwtt", required=True, type=existing_path, help="T map from 'damagenet pwtt --null'"
    )
    p.add_argument(
        "--optical",
        required=True,
        type=existing_path,
        help="probability map from 'damagenet predict' (<aoi>_damage_prob.tif) on the same grid",
    )
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        help="fused map to write, e.g. results/maps/<aoi>_fused.tif",
    )
    p.add_argument(
        "--threshold",
        type=positive_float,
        default=FUSED_THRESHOLD,
        help="damaged where the fused z is above this (default 3.0: about three no-change "
        "standard deviations)",
    )
    p.add_argument(
        "--optical-null",
        type=existing_path,
        default=None,
        help="the same model's probability map of a pre-war pair (e.g. 'damagenet predict "
        "--before PREWAR --after BEFORE'): its logit mean and sd standardise the optical "
        "evidence; default: the median and 1.4826 MAD of --optical itself, which assumes most "
        "of the AOI is undamaged",
    )
    p.add_argument(
        "--radar-centre",
        choices=("map", "null"),
        default="map",
        help="where T is centred before it is divided by the pre-war null's sd: map = the T "
        "map's own median (assumes most of the AOI unchanged, as the optical default does), "
        "null = the null test's mean, which season or rain between the windows can shift by "
        "several sds so that a whole town crosses the threshold (%(default)s)",
    )
    p.set_defaults(func=_run)
