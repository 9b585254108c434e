"""``damagenet aggregate``: damage per building and zone (:mod:`damagenet.buildings.aggregate`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from contract.options import distinct_outputs, float_in, int_at_least
from damagenet.buildings.sources.defaults import (
    DISTRICT_DETAILS,
    GEOBOUNDARIES_URL,
    OSM_URL,
    OVERTURE_URL,
)


def threshold_value(text: str) -> float | str:
    """``auto`` or a number; whether it suits the map (a probability in (0, 1), or T) is
    checked once the map is open."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number, got {text!r}") from None


def _run_cli(args: argparse.Namespace) -> int:
    distinct_outputs([args.out], [args.map])
    from damagenet.buildings.aggregate import (  # heavy: only when the command runs
        AggregateOptions,
        aggregate,
    )
    from damagenet.buildings.fetch import SourceOptions

    sources = SourceOptions(
        data_dir=Path(args.data_dir),
        aoi=args.aoi,
        osm_url=args.osm_url,
        overture_url=args.overture_url,
        geoboundaries_url=args.geoboundaries_url,
        districts_iso=args.districts_iso,
        districts_level=args.districts_level,
        districts_detail=args.districts_detail,
        tries=args.retries,
    )
    aggregate(
        args.map,
        args.buildings,
        args.out,
        AggregateOptions(
            zones=args.zones,
            grid_m=args.grid_m,
            sources=sources,
            threshold=args.threshold,
            uncertainty=Path(args.uncertainty) if args.uncertainty else None,
            buildings_crs=args.buildings_crs,
            zones_crs=args.zones_crs,
            batch_size=args.batch_size,
            progress=not args.quiet,
        ),
    )
    return 0


def _map_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--map",
        required=True,
        help="probability GeoTIFF from 'damagenet predict' (X_damage_prob.tif), T map from "
        "'damagenet pwtt' (X_pwtt.tif) or fused map from 'damagenet fuse'; the kind is read "
        "from the band's description",
    )
    p.add_argument(
        "--out",
        required=True,
        help="output GeoPackage, e.g. results/aggregate/bucha.gpkg; the CSVs and styles go "
        "beside it",
    )
    p.add_argument(
        "--threshold",
        type=threshold_value,
        default="auto",
        help="value above which a building is damaged: 'auto' = the map's own (its THRESHOLD "
        "tag, a probability map's summary JSON, PWTT's 3.3 for a T map, 3 for a fused map), "
        "or a number (a probability in (0, 1), or a T or z value) (%(default)s)",
    )
    p.add_argument(
        "--uncertainty",
        help="uncertainty raster (ensemble spread, a standard deviation) on the map's grid: "
        "adds uncertainty_mean per building and zone intervals from the spread instead of "
        "Wilson intervals",
    )


def _building_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--buildings",
        required=True,
        help="footprints: 'osm' (OpenStreetMap via an Overpass API), 'overture' (Overture "
        "Maps GeoParquet), both fetched for the map's box and cached, or a file: GeoPackage, "
        "GeoParquet, FlatGeobuf, shapefile, GeoJSON or CSV with a WKT 'geometry' column, any "
        "CRS, read only where it meets the map; every attribute is kept; a 0/1 'damaged' "
        "column is scored",
    )
    p.add_argument("--buildings-crs", help="CRS of a footprint file that does not declare one")
    p.add_argument("--osm-url", default=OSM_URL, help="Overpass API interpreter (%(default)s)")
    p.add_argument(
        "--overture-url",
        default=OVERTURE_URL,
        help="Overture's S3 bucket or a mirror of its layout, optionally ending in "
        "/release/<version> (default: the newest release in %(default)s)",
    )
    p.add_argument(
        "--data-dir",
        default="data",
        help="cache of fetched footprints (<dir>/buildings/<aoi>/) and districts "
        "(<dir>/districts/) (%(default)s)",
    )
    p.add_argument(
        "--aoi", help="AOI name the cache is filed under (default: the map's AOI tag or name)"
    )
    p.add_argument(
        "--retries",
        type=int_at_least(1),
        default=4,
        help="attempts per request to a service, with backoff on 429, 5xx, cut-off "
        "downloads and unreachable hosts (%(default)s)",
    )


def _zone_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--zones",
        default="grid",
        help="'grid': square cells of --grid-m on multiples of --grid-m in the map's CRS; "
        "'pwtt-grid': PWTT's grid (cells of --grid-m Web Mercator units, EPSG:3857); "
        "'geoboundaries': administrative units from geoBoundaries (--districts-*); or a "
        "file of district polygons (any footprint format) (%(default)s)",
    )
    p.add_argument(
        "--grid-m",
        type=float_in(10.0, 1e6),
        default=500.0,
        help="grid cell size for 'grid' and 'pwtt-grid', 10 m (a pixel) or more (%(default)s)",
    )
    p.add_argument("--zones-crs", help="CRS of a zones file that does not declare one")
    p.add_argument(
        "--districts-iso", default="UKR", help="geoBoundaries country (ISO 3) (%(default)s)"
    )
    p.add_argument(
        "--districts-level",
        default="ADM3",
        help="geoBoundaries level, ADM0-ADM5 (%(default)s: hromadas in Ukraine)",
    )
    p.add_argument(
        "--districts-detail",
        choices=DISTRICT_DETAILS,
        default="full",
        help="geoBoundaries geometry: full detail or simplified (smaller) (%(default)s)",
    )
    p.add_argument(
        "--geoboundaries-url",
        default=GEOBOUNDARIES_URL,
        help="geoBoundaries API: <url>/<ISO>/<LEVEL>/ answers the metadata (%(default)s)",
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "aggregate",
        help="damage per building footprint and per district or grid cell",
        description="Intersect a damage probability, PWTT T or fused map with building footprints: "
        "per building the area-weighted mean and max of the map (exact pixel coverage) and "
        "a damaged flag; per zone the buildings, damaged buildings, damaged share with a 95% "
        "interval and footprint area. Writes OUT.gpkg (layers buildings, zones, styled for "
        "QGIS, with the sources' licences), OUT_buildings.csv, OUT_zones.csv, "
        "OUT_buildings.qml, OUT_zones.qml, OUT_summary.json.",
    )
    _map_options(p)
    _building_options(p)
    _zone_options(p)
    p.add_argument(
        "--batch-size",
        type=int_at_least(1),
        default=20_000,
        help="footprints per batch; memory grows with it (%(default)s)",
    )
    p.set_defaults(func=_run_cli)
