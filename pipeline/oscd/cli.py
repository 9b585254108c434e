"""``pipeline oscd``: one city of the OSCD change benchmark as this project's scene pair.

Argparse wiring only: the library (:mod:`pipeline.oscd.convert`) is imported when the command
runs, so ``pipeline --help`` does not pay for rasterio.
"""

from __future__ import annotations

import argparse

LEVEL_CHOICES = ("L1C", "L2A")


def _run(args: argparse.Namespace) -> int:
    from pipeline.errors import PipelineUsageError
    from pipeline.oscd.convert import convert_city
    from pipeline.oscd.layout import labelled_cities

    if args.list:
        if args.city or args.out:
            raise PipelineUsageError("--list takes no --city or --out")
        print("\n".join(labelled_cities(args.root)))
        return 0
    if not args.city or not args.out:
        raise PipelineUsageError(
            "give --city CITY and --out FOLDER (or --list to see the labelled cities)"
        )
    convert_city(args.root, args.city, args.out, args.level)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "oscd",
        help="one city of the OSCD change benchmark as a scene pair and label raster",
        description="Read one city of the Onera Satellite Change Detection dataset as it ships "
        "(images/<city>/imgs_1|imgs_2/*_B0?.tif in EPSG:4326, dates.txt, <city>.geojson, "
        "labels/<city>/cm/<city>-cm.tif with 1 no change / 2 change and no georeference) "
        "and write, into --out: before.tif and after.tif (B02, B03, B04, B08 uint16 "
        "digital numbers on the city's 10 m UTM grid, nodata 0, acquisition date and "
        "processing level tagged, a JSON record beside each), labels.tif (1 change, 0 no "
        "change, 255 unknown, nearest resampling, same grid, JSON beside it) and "
        "<city>.geojson (the city's AOI file for 'pipeline tiles' and 'pipeline patches'). "
        "Refuses, writing nothing, a change map of other values or of a size matching "
        "neither date, missing bands or dates, and rasters that are not uint16 EPSG:4326.",
    )
    p.add_argument(
        "--root",
        required=True,
        help="OSCD folder holding images/ and labels/ (e.g. ../shared/oscd)",
    )
    p.add_argument("--city", help="city folder name under images/, e.g. paris")
    p.add_argument(
        "--out",
        help="output folder of the city, e.g. oscd/paris (required with --city); files "
        "already there with the same names are replaced",
    )
    p.add_argument(
        "--level",
        choices=LEVEL_CHOICES,
        help="processing level to record when the band file names do not state it "
        "(default: the names' level, else L1C, which OSCD ships); refused when the names "
        "state the other one",
    )
    p.add_argument(
        "--list",
        action="store_true",
        help="print the cities under --root that have a change map, one per line, and stop",
    )
    p.set_defaults(func=_run)
