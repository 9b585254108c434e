"""``damagenet aggregate``: damage per building and zone (:mod:`damagenet.buildings.aggregate`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from contract.options import positive_float, threshold_or_auto


def _run_cli(args: argparse.Namespace) -> int:
    from damagenet.buildings.aggregate import (  # heavy: only when the command runs
        AggregateOptions,
        aggregate,
    )

    aggregate(
        args.map,
        args.buildings,
        args.out,
        AggregateOptions(
            zones=Path(args.zones) if args.zones else None,
            grid_m=args.grid_m,
            threshold=args.threshold,
            uncertainty=Path(args.uncertainty) if args.uncertainty else None,
            buildings_crs=args.buildings_crs,
            zones_crs=args.zones_crs,
            batch_size=args.batch_size,
            progress=not args.quiet,
        ),
    )
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "aggregate",
        help="damage per building footprint and per district or grid cell",
        description="Intersect a damage probability map with building footprints: per "
        "building the area-weighted mean and max probability (exact pixel "
        "coverage) and a damaged flag; per zone the buildings, damaged buildings, "
        "damaged share with a 95% interval and footprint area. Writes OUT.gpkg "
        "(layers buildings, zones, styled for QGIS), OUT_buildings.csv, "
        "OUT_zones.csv, OUT_buildings.qml, OUT_zones.qml, OUT_summary.json.",
    )
    p.add_argument(
        "--map",
        required=True,
        help="probability GeoTIFF from 'damagenet predict' (X_damage_prob.tif)",
    )
    p.add_argument(
        "--buildings",
        required=True,
        help="footprints: GeoPackage, GeoParquet, FlatGeobuf, shapefile, GeoJSON or "
        "CSV with a WKT 'geometry' column; OSM, Overture, Microsoft or Google "
        "Open Buildings layouts; any CRS; a 0/1 'damaged' column is scored",
    )
    p.add_argument(
        "--out",
        required=True,
        help="output GeoPackage, e.g. results/buildings/"
        "bucha.gpkg; the CSVs and styles go beside it",
    )
    p.add_argument(
        "--zones",
        help="district polygons (any of the formats above); default: a "
        "square grid of --grid-m over the map",
    )
    p.add_argument(
        "--grid-m",
        type=positive_float,
        default=500.0,
        help="grid cell size in the map's CRS units (metres) when no --zones (%(default)s)",
    )
    p.add_argument(
        "--threshold",
        type=threshold_or_auto,
        default="auto",
        help="probability at or above which a building is damaged: 'auto' = the "
        "map's own (its THRESHOLD tag or summary JSON), or a number in (0, 1) "
        "(%(default)s)",
    )
    p.add_argument(
        "--uncertainty",
        help="uncertainty raster (ensemble spread, a standard deviation) on the "
        "map's grid: adds uncertainty_mean per building and zone intervals "
        "from the spread instead of Wilson intervals",
    )
    p.add_argument(
        "--buildings-crs", help="CRS of a footprint file that does not declare one (e.g. EPSG:4326)"
    )
    p.add_argument("--zones-crs", help="CRS of a zones file that does not declare one")
    p.add_argument(
        "--batch-size",
        type=int,
        default=20_000,
        help="footprints per batch; memory grows with it (%(default)s)",
    )
    p.set_defaults(func=_run_cli)
