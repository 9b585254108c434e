"""``damagenet pwtt --radar STORE --out <aoi>_pwtt.tif``: damage from Sentinel-1 with no training.

Argument wiring only; the work is :func:`damagenet.radar.pwtt_map.pwtt_map` (imported when the
command runs, so ``--help`` stays fast).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from contract.options import distinct_outputs, existing_path, positive_float, positive_int
from damagenet.radar import DEFAULT_THRESHOLD


def _run(args: argparse.Namespace) -> int:
    from damagenet.radar.pwtt_map import PwttOptions, pwtt_map

    distinct_outputs([args.out], [args.radar])

    opts = PwttOptions(
        threshold=args.threshold,
        smoothing=args.smoothing,
        welch=args.welch,
        stouffer=args.stouffer,
        built=Path(args.built) if args.built else None,
        strip_rows=args.strip_rows,
        null=args.null,
    )
    summary = pwtt_map(args.radar, args.out, opts)
    print(
        f"{args.out}: {summary['damaged_km2']:.3f} of {summary['tested_km2']:.3f} km2 tested "
        f"above T {args.threshold:g}"
    )
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pwtt",
        help="map damage from a Sentinel-1 radar store with the pixel-wise t-test (no training)",
        description="The Pixel-Wise T-Test (PWTT, Ballinger 2025) without Earth Engine: per "
        "relative orbit and polarisation, Lee-filtered (3x3, 5 looks) log backscatter, pre- and "
        "post-window means and variances, the pooled t (n_pre >= 3, n_post >= 2), maximum over "
        "orbits then over VV and VH, smoothed by a 10 m focal median and 50/100/150 m circular "
        "means (T = mean of the four). Writes T (float32 COG), the class map at --threshold, "
        "the pre-war backscatter, QGIS styles, a summary and a quick-look beside --out. "
        "Works for any AOI with a radar store; needs no checkpoint.",
    )
    p.add_argument(
        "--radar",
        required=True,
        type=existing_path,
        help="the AOI's radar store (<aoi>.zarr from 'pipeline radar')",
    )
    p.add_argument("--out", required=True, help="T map to write, e.g. results/maps/<aoi>_pwtt.tif")
    _method_options(p)
    p.add_argument(
        "--null",
        action="store_true",
        help="also run the test inside the pre window (per orbit, as many pre-war passes as "
        "the post window holds, from its season a year before, against the other pre-war "
        "passes) and record its T mean and sd in the map's tags and summary: the radar's own "
        "pre-war variation, which 'damagenet fuse' standardises T with (a second pass over the "
        "pre-window acquisitions)",
    )
    p.add_argument(
        "--strip-rows",
        type=positive_int,
        default=512,
        help="rows read at a time, rounded up to whole store chunks (memory: about 100 bytes x "
        "width x rows per polarisation; default 512)",
    )
    p.set_defaults(func=_run)


def _method_options(p: argparse.ArgumentParser) -> None:
    """Options of the test itself: threshold, smoothing, test and orbit combination, mask."""
    p.add_argument(
        "--threshold",
        type=positive_float,
        default=DEFAULT_THRESHOLD,
        help="damaged where T is above this (default 3.3, PWTT's)",
    )
    p.add_argument(
        "--smoothing",
        choices=("pwtt", "none"),
        default="pwtt",
        help="pwtt: median + circular means (default); none: the unsmoothed maximum t, for checks",
    )
    p.add_argument(
        "--welch", action="store_true", help="Welch's t (unequal variances) instead of pooled"
    )
    p.add_argument(
        "--stouffer",
        action="store_true",
        help="combine orbits by Stouffer's sqrt(df)-weighted sum instead of the maximum",
    )
    p.add_argument(
        "--built",
        type=existing_path,
        default=None,
        help="built-up raster on the store's grid (nonzero: built; e.g. WorldCover class 50 or "
        "rasterised footprints), PWTT's urban mask applied before the circular means",
    )
