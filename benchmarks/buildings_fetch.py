"""Footprints and districts for a 10 km AOI from local services: time and bytes read, against
reading whole files.

Usage: python benchmarks/buildings_fetch.py [--region-km 30] [--aoi-km 10] [--spacing-m 60]
       [--files 4] [--group-rows 20000] [--units 1500]

Builds (cached under ``benchmarks/out/``) a region of ``--region-km`` square with a footprint
every ``--spacing-m`` metres (rotated rectangles, 8-20 m), and serves it through the test
suite's servers (``tests/building_servers.py``) in the real layouts: an Overture release of
``--files`` GeoParquet files (Overture's schema, geohash-sorted, ``--group-rows``-row groups,
zstd), an Overpass interpreter, and geoBoundaries with a country of ``--units`` Voronoi
districts (Ukraine has 1,469 hromadas). A ``--aoi-km`` square T map sits in the middle. It
prints, each beside what reading the whole source costs:

- Overture: ``damagenet aggregate``'s fetch (listing, footers, pruned row groups by range
  request) against downloading the release's files whole; then a second AOI of the same
  release, which opens only the files its box meets;
- OpenStreetMap: the Overpass answer for the AOI's box against one for the whole region;
- districts: the GeoJSON download (whole: the API has no box query) and reading the units that
  meet the map against reading all;
- your own footprints: ``aggregate`` on a region-wide GeoPackage, read with the map's box,
  against reading the whole file;
- the whole command from the cache: T per footprint and per district.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import rasterio
import requests
import shapely
from pyproj import Transformer

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(Path(__file__).resolve().parent), str(ROOT)]
from _common import OUT  # noqa: E402
from building_servers import (  # noqa: E402
    CENTRE,
    UTM,
    BuildingServer,
    overpass_elements,
    write_map,
    write_overture,
)

from damagenet.buildings.aggregate import AggregateOptions, aggregate  # noqa: E402
from damagenet.buildings.fetch import SourceOptions, map_box, named_buildings  # noqa: E402
from damagenet.buildings.zones import DistrictZones  # noqa: E402

MIB = 2**20


def region(km: float, spacing: float) -> gpd.GeoDataFrame:
    """Rotated rectangles on a jittered grid over ``km`` square around the centre (WGS 84)."""
    rng = np.random.default_rng(5)
    cx, cy = Transformer.from_crs(4326, UTM, always_xy=True).transform(*CENTRE)
    ticks = np.arange(-km * 500, km * 500, spacing) + spacing / 2
    xs, ys = (a.ravel() for a in np.meshgrid(cx + ticks, cy + ticks))
    xs, ys = xs + rng.uniform(-8, 8, xs.size), ys + rng.uniform(-8, 8, ys.size)
    w, h = rng.uniform(8, 20, xs.size), rng.uniform(8, 16, xs.size)
    angle = rng.uniform(0, 3, xs.size)
    corners = np.array([(-1, -1), (1, -1), (1, 1), (-1, 1), (-1, -1)]) / 2
    x, y = corners[:, 0] * w[:, None], corners[:, 1] * h[:, None]
    ca, sa = np.cos(angle)[:, None], np.sin(angle)[:, None]
    ring = np.stack([xs[:, None] + x * ca - y * sa, ys[:, None] + x * sa + y * ca], axis=-1)
    frame = gpd.GeoDataFrame(
        {"n": np.arange(xs.size), "height": np.round(rng.uniform(3, 30, xs.size), 1)},
        geometry=shapely.polygons(ring),
        crs=UTM,
    )
    return frame.to_crs(4326)


def country(units: int) -> dict:
    """Voronoi districts over a Ukraine-sized box, edges every ~1 km, like ADM3 boundaries."""
    rng = np.random.default_rng(6)
    lon, lat = CENTRE
    pts = shapely.points(rng.uniform(lon - 9, lon + 9, units), rng.uniform(lat - 4, lat + 4, units))
    pts = np.append(pts, shapely.Point(lon, lat))  # one unit seeded at the AOI
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(pts)))
    cells = shapely.clip_by_rect(cells, lon - 9, lat - 4, lon + 9, lat + 4)
    cells = shapely.segmentize(cells, 0.01)
    features = [
        {
            "type": "Feature",
            "properties": {
                "shapeName": f"Hromada {i}",
                "shapeISO": "None",
                "shapeID": f"U{i:05d}",
                "shapeGroup": "UKR",
                "shapeType": "ADM3",
            },
            "geometry": shapely.geometry.mapping(c),
        }
        for i, c in enumerate(cells)
    ]
    return {"type": "FeatureCollection", "features": features}


def build(folder: Path, args: argparse.Namespace) -> dict[str, Path]:
    """The served files, the maps and a region-wide GeoPackage (cached)."""
    done = folder / "done.json"
    paths = {
        "region": folder / "region.gpkg",
        "map": folder / "maps" / "bench_pwtt.tif",
        "corner": folder / "maps" / "corner_pwtt.tif",
        "elements": folder / "overpass.json",
    }
    if done.exists():
        return paths
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "gb").mkdir(parents=True)
    (folder / "maps").mkdir()
    frame = region(args.region_km, args.spacing_m)
    write_overture(folder, frame, files=args.files, group_rows=args.group_rows)
    paths["elements"].write_text(json.dumps(overpass_elements(frame)))
    doc = json.dumps(country(args.units))
    (folder / "gb" / "geoBoundaries-UKR-ADM3.geojson").write_text(doc)
    frame.to_file(paths["region"], layer="buildings")
    cx, cy = Transformer.from_crs(4326, UTM, always_xy=True).transform(*CENTRE)
    half = args.aoi_km * 500
    px = int(args.aoi_km * 100)
    write_map(paths["map"], "t", "bench", (round(cx - half, -1), round(cy + half, -1)), px)
    corner = (round(cx + args.region_km * 400, -1), round(cy + args.region_km * 400, -1))
    write_map(paths["corner"], "t", "corner", corner, 200)
    done.write_text(json.dumps(vars(args)))
    return paths


def timed(func, *a, **kw):
    t0 = time.perf_counter()
    out = func(*a, **kw)
    return out, time.perf_counter() - t0


def sources(server: BuildingServer, data: Path) -> SourceOptions:
    return SourceOptions(
        data_dir=data,
        osm_url=server.osm_url,
        overture_url=server.overture_url,
        geoboundaries_url=server.geoboundaries_url,
    )


def overture(server: BuildingServer, folder: Path, paths: dict[str, Path], data: Path) -> None:
    with rasterio.open(paths["map"]) as src:
        box = map_box(src)
    entry, secs = timed(named_buildings, "overture", box, "bench", sources(server, data))
    p, sent = entry.provenance, server.sent("/s3/")
    files = sorted((folder / "overturemaps-us-west-2").rglob("theme=buildings/*/*.parquet"))
    files = [f for f in files if "2024-11-13.0" in str(f)]
    whole = sum(f.stat().st_size for f in files)
    print(
        f"overture, AOI: {p['features']:,} buildings in {secs:.2f} s; {sent / MIB:.2f} MiB in "
        f"{len(server.log)} requests ({p['row_groups_read']} of {p['row_groups_total']} row "
        f"groups, {p['files_read']} of {p['files']} files)"
    )
    server.log.clear()
    bucket = folder / "overturemaps-us-west-2"
    urls = [f"{server.overture_url}/{f.relative_to(bucket).as_posix()}" for f in files]
    _, whole_s = timed(lambda: [requests.get(u, timeout=600).content for u in urls])
    print(
        f"overture, whole files downloaded: {whole / MIB:.2f} MiB in {whole_s:.2f} s; the fetch "
        f"read {sent / whole:.1%} of the bytes"
    )
    server.log.clear()
    with rasterio.open(paths["corner"]) as src:
        corner = map_box(src)
    entry, secs = timed(named_buildings, "overture", corner, "corner", sources(server, data))
    p = entry.provenance
    print(
        f"overture, a second AOI (2 km, region corner) of the same release: {secs:.2f} s, "
        f"{server.sent('/s3/') / MIB:.2f} MiB, {p['files_read']} of {p['files']} files opened"
    )


def osm(server: BuildingServer, paths: dict[str, Path], data: Path, region_km: float) -> None:
    server.log.clear()
    with rasterio.open(paths["map"]) as src:
        box = map_box(src)
    entry, secs = timed(named_buildings, "osm", box, "bench", sources(server, data))
    sent = server.sent("/api/interpreter")
    lon, lat = CENTRE
    dlon, dlat = region_km / 2 / (111.32 * np.cos(np.radians(lat))), region_km / 2 / 110.57
    bbox = f"({lat - dlat},{lon - dlon},{lat + dlat},{lon + dlon})"
    whole_q = f"[out:json];way[building]{bbox};out geom;"
    server.log.clear()
    _, whole_s = timed(requests.post, server.osm_url, data={"data": whole_q}, timeout=600)
    whole = server.sent("/api/interpreter")
    print(
        f"osm, AOI box: {entry.provenance['features']:,} buildings, {sent / MIB:.2f} MiB in "
        f"{secs:.2f} s (query, parse, polygons, GeoParquet); whole region's answer "
        f"{whole / MIB:.2f} MiB in {whole_s:.2f} s (download only)"
    )


def districts(server: BuildingServer, paths: dict[str, Path], data: Path) -> None:
    server.log.clear()
    from damagenet.buildings.fetch import named_districts

    entry, secs = timed(named_districts, sources(server, data))
    print(
        f"districts: metadata + GeoJSON {server.sent('/gb/') / MIB:.2f} MiB in {secs:.2f} s "
        "(whole country: geoBoundaries has no box query; cached once per country)"
    )
    with rasterio.open(paths["map"]) as src:
        b = src.bounds
        (zones, near_s) = timed(DistrictZones, entry.path, src.crs, None, tuple(b))
        (allz, all_s) = timed(DistrictZones, entry.path, src.crs, None, None)
    print(
        f"districts read for the map: {zones.n} units in {near_s:.2f} s; all {allz.n} units "
        f"in {all_s:.2f} s"
    )


def own_file(paths: dict[str, Path], tmp: Path) -> None:
    total = pyogrio.read_info(paths["region"])["features"]
    opts = AggregateOptions(progress=False)
    summary, secs = timed(aggregate, paths["map"], paths["region"], tmp / "own" / "agg.gpkg", opts)
    box = summary["buildings_read_box"]
    near, near_s = timed(pyogrio.read_dataframe, paths["region"], bbox=tuple(box), use_arrow=True)
    _, whole_s = timed(pyogrio.read_dataframe, paths["region"], use_arrow=True)
    size = paths["region"].stat().st_size
    print(
        f"own GeoPackage ({total:,} footprints, {size / MIB:.0f} MiB): reading the map's box "
        f"({len(near):,} footprints) {near_s:.2f} s against the whole file {whole_s:.2f} s; "
        f"the whole aggregate command {secs:.2f} s for {summary['buildings']:,} buildings"
    )


def from_cache(server: BuildingServer, paths: dict[str, Path], data: Path, tmp: Path) -> None:
    server.log.clear()
    opts = AggregateOptions(sources=sources(server, data), zones="geoboundaries", progress=False)
    summary, secs = timed(aggregate, paths["map"], "overture", tmp / "cache" / "agg.gpkg", opts)
    print(
        f"aggregate from the cache (overture + geoBoundaries, T map {summary['map_kind']}): "
        f"{summary['buildings']:,} buildings, {summary['zones']['count']} districts in "
        f"{secs:.2f} s, {len(server.log)} requests"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--region-km", type=float, default=30.0)
    parser.add_argument("--aoi-km", type=float, default=10.0)
    parser.add_argument("--spacing-m", type=float, default=60.0)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--group-rows", type=int, default=20_000)
    parser.add_argument("--units", type=int, default=1500)
    args = parser.parse_args()
    key = "_".join(f"{v:g}" for v in vars(args).values())
    folder = OUT / f"buildings_fetch_{key}"
    paths, build_s = timed(build, folder, args)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; served files built in {build_s:.0f} s"
    )
    print(f"region {args.region_km:g} km square, a footprint every {args.spacing_m:g} m; "
          f"AOI {args.aoi_km:g} km square")  # fmt: skip
    elements = json.loads(paths["elements"].read_text())
    (folder / "gb").mkdir(exist_ok=True)
    with BuildingServer(folder, elements) as server, tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        overture(server, folder, paths, data)
        osm(server, paths, data, args.region_km)
        districts(server, paths, data)
        own_file(paths, Path(tmp))
        from_cache(server, paths, data, Path(tmp))


if __name__ == "__main__":
    main()
