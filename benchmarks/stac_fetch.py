"""Bytes and wall time of the STAC source for a 10 km AOI, against whole-file downloads.

Usage: python benchmarks/stac_fetch.py [--tile-km 55] [--aoi-km 10]

Serves one Sentinel-2-like tile (B02, B03, B04, B08 at 10 m, SCL at 20 m; deflate COGs with
1024 px blocks and overviews, as the public Earth Search COGs) from 127.0.0.1 through the
test suite's STAC server, runs ``pipeline scene --source stac`` for a square AOI inside it and
prints the bytes the server sent and the wall time, beside the competitor: downloading the five
files whole (what a tool without range reads fetches) from the same server. A real tile is
109.8 km on a side; ``--tile-km 110`` writes one at full size (about 1 GB of COGs), the default
writes a quarter of that area to keep the run short on a small machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests
from affine import Affine
from pyproj import Transformer

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(Path(__file__).resolve().parent), str(ROOT)]
from _common import OUT  # noqa: E402
from stac_server import StacServer, make_item, write_cog  # noqa: E402

from pipeline.aoi import load_aoi  # noqa: E402
from pipeline.scenes import acquire_scene  # noqa: E402
from pipeline.scenes.stac_source import StacOptions  # noqa: E402

CENTRE = (30.52, 50.45)  # Kyiv, UTM zone 36N
BANDS = {"B02": 600, "B03": 800, "B04": 700, "B08": 2600}


def _tile(folder: Path, tile_km: float) -> tuple[Affine, int]:
    """The tile's COGs (cached): a smooth field plus noise, so blocks compress like real ones."""
    px = int(round(tile_km * 100)) // 2 * 2
    x, y = Transformer.from_crs(4326, 32636, always_xy=True).transform(*CENTRE)
    transform = Affine(10, 0, round(x / 10) * 10 - px * 5, 0, -10, round(y / 10) * 10 + px * 5)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for band, base in BANDS.items():
        path = folder / f"{band}.tif"
        if not path.exists():
            ramp = (np.arange(px, dtype=np.uint16) % 512)[None, :]
            data = base + 1000 + ramp + rng.integers(0, 400, size=(px, px), dtype=np.uint16)
            write_cog(path, data, "EPSG:32636", transform, blocksize=1024)
    if not (folder / "SCL.tif").exists():
        scl = rng.choice(
            np.array([4, 5, 6, 8], np.uint8), size=(px // 2, px // 2), p=[0.6, 0.3, 0.05, 0.05]
        )
        write_cog(
            folder / "SCL.tif",
            scl,
            "EPSG:32636",
            Affine(20, 0, transform.c, 0, -20, transform.f),
            blocksize=1024,
        )
    return transform, px


def _aoi(folder: Path, km: float) -> Path:
    lon, lat = CENTRE
    dlon = km / 2 / (111.32 * np.cos(np.radians(lat)))
    dlat = km / 2 / 110.57
    ring = [
        [lon - dlon, lat - dlat],
        [lon + dlon, lat - dlat],
        [lon + dlon, lat + dlat],
        [lon - dlon, lat + dlat],
        [lon - dlon, lat - dlat],
    ]
    path = folder / "bench.geojson"
    props = {
        "name": "bench",
        "slug": "bench",
        "before": "2021-05",
        "after": "2022-05",
        "unosat_aoi": "none",
        "labels": {"path": "x.zip"},
    }
    path.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": props,
                        "geometry": {"type": "Polygon", "coordinates": [ring]},
                    }
                ],
            }
        )
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tile-km",
        type=float,
        default=55.0,
        help="side of the served tile in km (real tiles: 110)",
    )
    parser.add_argument("--aoi-km", type=float, default=10.0, help="side of the AOI in km")
    args = parser.parse_args()
    os.environ.setdefault("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR")
    os.environ.setdefault("CPL_VSIL_CURL_ALLOWED_EXTENSIONS", ".tif")
    folder = OUT / f"stac_tile_{args.tile_km:g}km"
    transform, px = _tile(folder, args.tile_km)
    names = [*(f"{b}.tif" for b in BANDS), "SCL.tif"]
    whole = sum((folder / n).stat().st_size for n in names)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    print(f"tile {args.tile_km:g} km = {px} x {px} px at 10 m; five COGs {whole / 2**20:.1f} MiB")
    with StacServer(folder) as server, tempfile.TemporaryDirectory() as tmp:
        hrefs = {b: server.file_url(f"{b}.tif") for b in BANDS} | {
            "SCL": server.file_url("SCL.tif")
        }
        server.reset(
            [
                make_item(
                    "c1",
                    "S2A_T36UUA_20220505_0_L2A",
                    "2022-05-05T09:05:00Z",
                    "EPSG:32636",
                    transform,
                    (px, px),
                    hrefs,
                    5.0,
                    "sentinel-2-c1-l2a",
                )
            ]
        )
        aoi = load_aoi(_aoi(Path(tmp), args.aoi_km))
        t0 = time.perf_counter()
        acquire_scene(
            aoi, "after", Path(tmp) / "after.tif", "stac", stac=StacOptions(url=server.url)
        )
        stac_s = time.perf_counter() - t0
        stac_bytes = sum(server.bytes_served.values())
        reads = sum(r.startswith("GET /files/") for r in server.requests)
        server.bytes_served.clear()
        t0 = time.perf_counter()
        for name in names:
            requests.get(server.file_url(name), timeout=600).raise_for_status()
        whole_s = time.perf_counter() - t0
    share = args.aoi_km**2 / args.tile_km**2
    print(f"AOI {args.aoi_km:g} km x {args.aoi_km:g} km = {share:.1%} of the tile's area")
    print(
        f"stac source (odc-stac range reads, product written): {stac_bytes / 2**20:.1f} MiB "
        f"in {reads} range requests, {stac_s:.1f} s"
    )
    print(
        f"whole-file download of the same five COGs:         {whole / 2**20:.1f} MiB, "
        f"{whole_s:.1f} s (download only, loopback)"
    )
    print(
        f"bytes: {stac_bytes / whole:.1%} of the whole files; at 100 Mbit/s that is "
        f"{stac_bytes * 8 / 1e8:.1f} s against {whole * 8 / 1e8:.1f} s"
    )


if __name__ == "__main__":
    main()
