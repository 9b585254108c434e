"""``pipeline aoi check`` and ``pipeline aoi new``: the analyst's AOI commands.

Argparse wiring only; :mod:`.create` makes new files and :mod:`.validation` checks them,
imported when a command runs, so ``pipeline --help`` does not pay for shapely and GDAL.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from contract.options import existing_path
from pipeline.aoi.fields import DEFAULT_AFTER_DAYS, DEFAULT_BEFORE, NO_UNOSAT_AREA


def _run_check(args: argparse.Namespace) -> int:
    from pipeline.aoi.create import check_aois
    from pipeline.aoi.model import discover_aoi_files
    from pipeline.errors import PipelineError

    files = [Path(f) for f in args.files] or discover_aoi_files(args.aoi_dir)
    if not files:
        raise PipelineError(f"no AOI files found in {args.aoi_dir}")
    lines, errors, warnings = check_aois(files)
    for line in lines:
        print(line)
    for w in warnings:
        print(f"warning: {w}")
    for e in errors:
        print(f"error: {e}")
    print(f"{len(lines)} of {len(files)} AOI files valid")
    return 1 if errors else 0


def _run_new(args: argparse.Namespace) -> int:
    from pipeline.aoi.create import bbox_geometry, new_aoi, parse_bbox, polygon_from_file
    from pipeline.aoi.model import load_aoi

    geometry = (
        polygon_from_file(Path(args.polygon))
        if args.polygon
        else bbox_geometry(parse_bbox(args.bbox))
    )
    path = new_aoi(
        args.name,
        geometry,
        args.before,
        args.after,
        Path(args.aoi_dir),
        args.labels,
        args.unosat_aoi,
        args.no_labels,
        args.force,
    )
    aoi = load_aoi(path)  # new_aoi kept it only if valid
    role = (
        "with labels from " + aoi.labels.path
        if aoi.labels
        else "map-only: no UNOSAT labels, use it with a trained model"
    )
    print(
        f"wrote {path} ({role}; before {aoi.before}, after {aoi.after}); "
        f"check or refine it, then run: pipeline aoi check {path}"
    )
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "aoi",
        help="check or create AOI files",
        description="Validate AOI files or write a new one.",
    )
    aoi_sub = p.add_subparsers(dest="aoi_command", required=True, metavar="ACTION")
    c = aoi_sub.add_parser(
        "check",
        help="validate AOI files and print one line each",
        description="Validate AOI files. Prints name, area, UTM EPSG code "
        "and dates per AOI; exits 1 naming file and field for "
        "every problem.",
    )
    c.add_argument(
        "files", nargs="*", type=existing_path, help="AOI files (default: every file in --aoi-dir)"
    )
    c.add_argument("--aoi-dir", default="aois", help="AOI folder (default: %(default)s)")
    c.set_defaults(func=_run_check)
    _add_new(aoi_sub)


def _add_new(aoi_sub: argparse._SubParsersAction) -> None:
    n = aoi_sub.add_parser(
        "new",
        help="write a new AOI file from a bounding box or a polygon file",
        description="Write <aoi-dir>/<slug>.geojson from a bounding box or a polygon file. "
        "Without a UNOSAT assessment area (or with --no-labels) the AOI is "
        "map-only: it gets damage maps from a trained model, no labels.",
    )
    where = n.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--bbox",
        nargs="+",
        metavar="W S E N",
        help="bounding box in degrees (EPSG:4326): W S E N or W,S,E,N",
    )
    where.add_argument(
        "--polygon",
        metavar="FILE",
        type=existing_path,
        help="vector file (GeoJSON, GeoPackage, shapefile, any CRS) whose polygons form the AOI",
    )
    n.add_argument("name", help="city name, e.g. 'Borodianka'; the slug is derived from it")
    n.add_argument(
        "--before",
        default=DEFAULT_BEFORE,
        help="before date YYYY-MM-DD, month YYYY-MM or window START/END (default: %(default)s)",
    )
    n.add_argument(
        "--after",
        help=f"after date or window (default: the last {DEFAULT_AFTER_DAYS} days up to today)",
    )
    n.add_argument("--labels", help="UNOSAT file path (default: data/unosat/<slug>.zip)")
    n.add_argument(
        "--no-labels",
        action="store_true",
        help="write a map-only AOI even where a UNOSAT area overlaps",
    )
    n.add_argument(
        "--unosat-aoi",
        help=f"UNOSAT area code (default: the one the AOI overlaps, or {NO_UNOSAT_AREA!r})",
    )
    n.add_argument("--aoi-dir", default="aois", help="AOI folder (default: %(default)s)")
    n.add_argument("--force", action="store_true", help="overwrite an existing file")
    n.set_defaults(func=_run_new)
