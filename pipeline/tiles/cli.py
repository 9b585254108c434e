"""``pipeline targets`` (per-pixel targets from UNOSAT points) and ``pipeline tiles`` (cut them).

Argparse wiring only: the libraries are imported when a command runs, so ``pipeline --help``
does not pay for rasterio and geopandas.
"""

from __future__ import annotations

import argparse

from contract.npz_keys import TILE_CELL
from contract.options import (
    distinct_outputs,
    existing_path,
    float_in,
    iso_date,
    multiple_of,
    positive_float,
)
from pipeline.defaults import DEFAULT_MEMORY_MB
from pipeline.tiles import DEFAULT_DISC_PX, DEFAULT_RING_PX, DEFAULT_TILE_SIZE

#: the widest disc or ring around a site, px (500 m: a site is one building)
MAX_SITE_RADIUS_PX = 50.0

TARGET_CLASSES_TEXT = "1,2"


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Both commands, in the order of the workflow."""
    _add_targets(sub)
    _add_tiles(sub)


def _run_targets(args: argparse.Namespace) -> int:
    distinct_outputs([args.out], [args.grid, args.unosat])
    from pipeline.aoi import load_aoi
    from pipeline.labels.cli import parse_classes_arg
    from pipeline.tiles.targets import TargetOptions, make_point_targets

    aoi = load_aoi(args.aoi_file)
    unosat = args.unosat or (aoi.labels.path if aoi.labels else "")
    opts = TargetOptions(
        classes=parse_classes_arg(args.classes),
        disc_px=args.disc_px,
        ring_px=args.ring_px,
        after_date=args.after_date,
    )
    make_point_targets(aoi, args.grid, unosat, args.out, opts)
    return 0


def _add_targets(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "targets",
        help="per-pixel targets (1/0/255) of one AOI from its UNOSAT points",
        description="Write a uint8 target GeoTIFF on the grid of --grid for the pixel model: "
        "1 within --disc-px of a site whose first assessment in --classes is dated on or "
        "before the after scene, 255 within --ring-px of every site of any class and "
        "outside the assessed area or valid observations, 0 on the rest of the "
        "assessed ground. A JSON summary is written beside it.",
    )
    p.add_argument("aoi_file", type=existing_path, help="AOI GeoJSON file")
    p.add_argument(
        "--grid",
        required=True,
        type=existing_path,
        help="after scene GeoTIFF (grid, valid pixels, ACQUISITION_DATE)",
    )
    p.add_argument(
        "--unosat",
        type=existing_path,
        help="UNOSAT damage-site file (default: the AOI's labels.path)",
    )
    p.add_argument("--out", required=True, help="output target GeoTIFF")
    p.add_argument(
        "--classes",
        default=TARGET_CLASSES_TEXT,
        help="UNOSAT classes whose sites are positive (default: %(default)s, destroyed and "
        "severe damage); sites of every other class only get the ignore ring",
    )
    p.add_argument(
        "--disc-px",
        type=float_in(0.0, MAX_SITE_RADIUS_PX),
        default=DEFAULT_DISC_PX,
        help="radius of the positive disc around a site, px (default: %(default)s)",
    )
    p.add_argument(
        "--ring-px",
        type=float_in(0.0, MAX_SITE_RADIUS_PX),
        default=DEFAULT_RING_PX,
        help="radius of the ignore ring around every site, px (default: %(default)s)",
    )
    p.add_argument("--after-date", type=iso_date, help="override the after date (YYYY-MM-DD)")
    p.set_defaults(func=_run_targets)


def _run_tiles(args: argparse.Namespace) -> int:
    distinct_outputs([args.out], [args.before, args.after, args.targets])
    from pipeline.aoi import load_aoi
    from pipeline.errors import PipelineUsageError
    from pipeline.tiles.cut import cut_tiles

    if (args.targets is None) == (not args.all_negative):
        raise PipelineUsageError("give --targets, or --all-negative for a pre-war pair (not both)")
    cut_tiles(
        load_aoi(args.aoi_file).slug,
        args.before,
        args.after,
        args.targets,
        args.out,
        size=args.size,
        min_labelled=args.min_labelled,
        memory_mb=args.memory_mb,
    )
    return 0


def _add_tiles(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tiles",
        help="cut aligned before/after/target tiles of one AOI (pixel model)",
        description="Cut side-by-side tiles from the before and after scenes and a target "
        "raster (1 damage or change, 0 negative, 255 ignore: 'pipeline targets', or a "
        "change map from 'pipeline oscd') on one grid. Pixels without an observation "
        "in either scene become 255; tiles with fewer than --min-labelled labelled "
        "pixels are dropped. With --all-negative (two dates before the war) every "
        "observed pixel is negative. Writes before/after (N, 4, T, T) uint16, label "
        "(N, T, T) uint8, damage_pixels, row/col, x/y, lon/lat, crs, transform and aoi.",
    )
    p.add_argument("aoi_file", type=existing_path, help="AOI GeoJSON file (names the tiles)")
    p.add_argument("--before", required=True, type=existing_path, help="before scene GeoTIFF")
    p.add_argument("--after", required=True, type=existing_path, help="after scene GeoTIFF")
    p.add_argument(
        "--targets", type=existing_path, help="target GeoTIFF (1/0/255) on the scenes' grid"
    )
    p.add_argument(
        "--all-negative",
        action="store_true",
        help="a temporal negative pair: both scenes before 2022-02-24, every pixel negative",
    )
    p.add_argument("--out", required=True, help="output NPZ")
    p.add_argument(
        "--size",
        type=multiple_of(TILE_CELL),
        default=DEFAULT_TILE_SIZE,
        help=f"tile side, px, a multiple of {TILE_CELL} (default: %(default)s)",
    )
    p.add_argument(
        "--min-labelled",
        type=int,
        default=1,
        help="labelled (non-255) pixels a tile needs to be kept (default: %(default)s)",
    )
    p.add_argument(
        "--memory-mb",
        type=positive_float,
        default=DEFAULT_MEMORY_MB,
        help="memory budget for reading the rasters, MiB (default: %(default)s)",
    )
    p.set_defaults(func=_run_tiles)
