"""``pipeline unosat`` (download an AOI's UNOSAT file) and ``pipeline labels`` (rasterise it).

Argparse wiring only: the libraries (:mod:`.fetch`, :mod:`.rasterise`) are imported when a
command runs, so ``pipeline --help`` does not pay for geopandas and rasterio.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from contract.options import existing_path, iso_date
from pipeline.errors import PipelineUsageError
from pipeline.labels import DEFAULT_RADIUS_M

if TYPE_CHECKING:
    from pipeline.labels.unosat_values import ClassMap


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Both label commands, in the order of the workflow."""
    _add_unosat(sub)
    _add_labels(sub)


def _run_unosat(args: argparse.Namespace) -> int:
    from pipeline.aoi import load_aoi
    from pipeline.labels.fetch import fetch_unosat

    fetch_unosat(load_aoi(args.aoi_file), args.out)
    return 0


def _add_unosat(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "unosat",
        help="download an AOI's UNOSAT file from its labels.url",
        description="Download the AOI's UNOSAT damage-site file from labels.url "
        "to labels.path (or --out); without a URL, explain where to "
        "get the file and where to put it.",
    )
    p.add_argument("aoi_file", type=existing_path, help="AOI GeoJSON file")
    p.add_argument("--out", help="destination (default: the AOI's labels.path)")
    p.set_defaults(func=_run_unosat)


def _class_map_arg(text: str) -> ClassMap:
    from pipeline.labels.unosat_values import parse_class_map

    try:
        return parse_class_map(text)
    except PipelineUsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def parse_classes_arg(text: str) -> list[int]:
    from pipeline.labels.unosat_values import CLASS_NAMES

    try:
        classes = [int(c) for c in text.split(",") if c.strip()]
    except ValueError as exc:
        raise PipelineUsageError(f"--classes must be comma-separated codes, got {text!r}") from exc
    unknown = set(classes) - set(CLASS_NAMES)
    if not classes or unknown:
        raise PipelineUsageError(
            f"--classes {text!r}: unknown codes {sorted(unknown)}; UNOSAT "
            f"codes are {sorted(CLASS_NAMES)}"
        )
    return classes


def _run_labels(args: argparse.Namespace) -> int:
    from pipeline.aoi import load_aoi
    from pipeline.labels.rasterise import make_labels

    aoi = load_aoi(args.aoi_file)
    unosat = args.unosat or (aoi.labels.path if aoi.labels else "")
    make_labels(
        aoi,
        args.grid,
        unosat,
        args.out,
        classes=parse_classes_arg(args.classes),
        radius_m=args.radius_m,
        after_date=args.after_date,
        class_map=args.class_map,
    )
    return 0


def _add_labels(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "labels",
        help="rasterise UNOSAT damage sites onto a scene's grid",
        description="Write a uint8 label GeoTIFF on exactly the grid of --grid: 1 damage, 0 "
        "assessed and not damaged, 255 unknown (outside the UNOSAT assessment "
        "area or the AOI, or no valid observation). A site is positive when its "
        "first assessment in a damage class is dated on or before the after "
        "scene's date. A JSON summary is written beside the raster, and the "
        "'No Visible Damage' sites (hard negatives) to <out stem>_nvd.gpkg.",
    )
    p.add_argument("aoi_file", type=existing_path, help="AOI GeoJSON file")
    p.add_argument(
        "--grid",
        required=True,
        type=existing_path,
        help="scene GeoTIFF whose grid, nodata and ACQUISITION_DATE tag are used (the after scene)",
    )
    p.add_argument(
        "--unosat",
        type=existing_path,
        help="UNOSAT damage-site file: zipped shapefile, shapefile, GeoPackage, "
        "GeoJSON or file geodatabase (default: the AOI file's labels.path)",
    )
    p.add_argument("--out", required=True, help="output label GeoTIFF")
    p.add_argument(
        "--classes",
        default="1,2,3",
        help="UNOSAT classes counted as damage (default: %(default)s; 1 destroyed, "
        "2 severe, 3 moderate, 4 possible, 11 possible from adjacent impact)",
    )
    p.add_argument(
        "--radius-m",
        type=float,
        default=DEFAULT_RADIUS_M,
        help="burn pixels whose centre lies within this distance of a site "
        "(default: %(default)s m, one pixel)",
    )
    p.add_argument(
        "--class-map",
        type=_class_map_arg,
        help="map class codes or texts of the file that are not UNOSAT's to UNOSAT "
        "codes (or none = not assessed), e.g. '7=1,Heavily damaged=2,5=none'; "
        "extends the AOI file's labels.class_map",
    )
    p.add_argument(
        "--after-date",
        type=iso_date,
        help="override the after date (YYYY-MM-DD) instead of reading the scene's tag",
    )
    p.set_defaults(func=_run_labels)
