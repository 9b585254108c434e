"""Building aggregation throughput and memory, beside a rasterstats-style competitor.

Usage: python benchmarks/aggregate.py [--size 5000] [--buildings 100000] [--naive 5000]

Prints, in one run on a synthetic ``--size`` square probability map (float32, 256 px deflate
tiles, a nodata corner) and ``--buildings`` rotated rectangular footprints (8-30 m, random
order, EPSG:4326 GeoPackage, so every batch touches the whole map and is reprojected):

- ``damagenet aggregate`` (exact fractional coverage, 500 m grid zones, all outputs written):
  buildings per second and the peak resident memory of its fresh process, for all buildings
  and for half of them (memory should not grow with the count);
- the competitor on the first ``--naive`` footprints: rasterstats' algorithm (per feature: read
  the window of its bounds, rasterize a centre-of-pixel mask, masked mean and max) in the same
  kind of fresh process, and how many footprints it leaves without a value because they cover
  no pixel centre.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from rasterio.windows import Window

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CRS, OUT, TRANSFORM, baseline_rss, run_child  # noqa: E402

OURS = """
import json
from damagenet.buildings.aggregate import AggregateOptions, aggregate
s = aggregate({map!r}, {buildings!r}, {out!r}, AggregateOptions(progress=False))
print(json.dumps({{"seconds": s["seconds"], "buildings": s["buildings"],
                   "assessed": s["buildings_assessed"]}}))
"""

NAIVE = """
import json, time
import numpy as np, pyogrio, rasterio, shapely
from rasterio.features import geometry_mask
from rasterio.windows import from_bounds
gdf = pyogrio.read_dataframe({buildings!r}, max_features={n})
t0 = time.perf_counter()
with rasterio.open({map!r}) as src:
    geoms = gdf.to_crs(src.crs).geometry.to_numpy()
    means, empty, no_centre = [], 0, 0
    for g in geoms:
        win = from_bounds(*g.bounds, transform=src.transform).round_offsets().round_lengths()
        win = rasterio.windows.Window(win.col_off, win.row_off, max(win.width, 1),
                                      max(win.height, 1))
        arr = src.read(1, window=win, boundless=True, fill_value=src.nodata)
        inside = ~geometry_mask([g], arr.shape, src.window_transform(win))
        no_centre += not inside.any()
        mask = inside & (arr != src.nodata)
        if mask.any():
            means.append((float(arr[mask].mean()), float(arr[mask].max())))
        else:
            empty += 1
print(json.dumps({{"seconds": time.perf_counter() - t0, "buildings": len(geoms),
                   "empty": empty, "no_centre": no_centre}}))
"""


def make_map(size: int, folder: Path) -> Path:
    """A smooth random probability map with a nodata corner, written in strips (cached)."""
    path = folder / f"map_{size}_damage_prob.tif"
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=size,
        height=size,
        count=1,
        dtype="float32",
        crs=CRS,
        transform=TRANSFORM,
        nodata=-9999.0,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
        predictor=3,
    ) as dst:
        for r0 in range(0, size, 500):
            h = min(500, size - r0)
            coarse = rng.random((h // 10 + 1, size // 10 + 1)).astype("float32")
            block = np.kron(coarse, np.ones((10, 10), "float32"))[:h, :size]
            if r0 < size // 10:
                block[:, : size // 10] = -9999.0
            dst.write(block, 1, window=Window(0, r0, size, h))
        dst.update_tags(THRESHOLD="0.5000")
    return path


def make_buildings(size: int, n: int, folder: Path) -> Path:
    """``n`` rotated rectangles 8-30 m across the map, in random order, in EPSG:4326 (cached)."""
    path = folder / f"buildings_{size}_{n}.gpkg"
    if path.exists():
        return path
    rng = np.random.default_rng(1)
    extent = size * TRANSFORM.a
    cx = TRANSFORM.c + rng.uniform(0, extent, n)
    cy = TRANSFORM.f - rng.uniform(0, extent, n)
    w, h = rng.uniform(8, 30, n), rng.uniform(8, 20, n)
    angle = rng.uniform(0, np.pi, n)
    corners = np.array([(-1, -1), (1, -1), (1, 1), (-1, 1), (-1, -1)]) / 2
    x = corners[:, 0] * w[:, None]
    y = corners[:, 1] * h[:, None]
    ca, sa = np.cos(angle)[:, None], np.sin(angle)[:, None]
    ring = np.stack([cx[:, None] + x * ca - y * sa, cy[:, None] + x * sa + y * ca], axis=-1)
    polys = shapely.polygons(ring)
    gdf = gpd.GeoDataFrame(
        {"osm_id": [f"w{i}" for i in range(n)], "building": "yes"}, geometry=polys, crs=CRS
    ).to_crs(4326)
    gdf.to_file(path, layer="buildings")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=5000, help="map side, px")
    parser.add_argument("--buildings", type=int, default=100_000, help="footprints")
    parser.add_argument(
        "--naive", type=int, default=5000, help="footprints for the rasterstats-style competitor"
    )
    args = parser.parse_args()
    folder = OUT / "aggregate"
    folder.mkdir(parents=True, exist_ok=True)
    map_path = make_map(args.size, folder)
    print(
        f"machine: {platform.machine()}, {platform.python_version()}; map {args.size} x "
        f"{args.size} px, {args.buildings:,} footprints (EPSG:4326, random order)"
    )
    floor = baseline_rss("damagenet.buildings.aggregate")
    print(f"importing damagenet.buildings.aggregate alone: peak RSS {floor:.0f} MiB")
    for n in (args.buildings // 2, args.buildings):
        buildings = make_buildings(args.size, n, folder)
        out = folder / f"result_{n}" / "agg.gpkg"
        (res,), peak = run_child(
            OURS.format(map=str(map_path), buildings=str(buildings), out=str(out))
        )
        print(
            f"damagenet aggregate, {n:,} footprints: {res['seconds']:.1f} s = "
            f"{res['buildings'] / res['seconds']:,.0f} buildings/s "
            f"({res['assessed']:,} with a value); peak RSS {peak:.0f} MiB"
        )
    buildings = make_buildings(args.size, args.buildings, folder)
    (res,), peak = run_child(
        NAIVE.format(map=str(map_path), buildings=str(buildings), n=args.naive)
    )
    print(
        f"rasterstats-style per-feature mask, first {res['buildings']:,} footprints: "
        f"{res['seconds']:.1f} s = {res['buildings'] / res['seconds']:,.0f} buildings/s; "
        f"{res['empty']:,} without a value, {res['no_centre']:,} of them because they "
        f"cover no pixel centre; peak RSS "
        f"{peak:.0f} MiB"
    )


if __name__ == "__main__":
    main()
