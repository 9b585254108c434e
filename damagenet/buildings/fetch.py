"""Footprints and districts named by source (``osm``, ``overture``, ``geoboundaries``) for a map.

The box asked for is the map's extent in WGS 84 (edges densified, so a UTM map's curved outline
is covered) plus a margin, so footprints just beyond the edge are counted as outside the map
instead of vanishing. Footprints are cached per AOI under ``<data>/buildings/<aoi>/``,
boundaries per country and level under ``<data>/districts/`` (:mod:`.sources.cache`), the
extents of an Overture release's files under ``<data>/overture/``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rasterio
from rasterio.warp import transform_bounds

from damagenet.buildings.sources import geoboundaries, osm, overture
from damagenet.buildings.sources.cache import Entry, cached
from damagenet.buildings.sources.defaults import GEOBOUNDARIES_URL, OSM_URL, OVERTURE_URL
from damagenet.buildings.sources.geoparquet import Box
from damagenet.buildings.sources.http import Client

NAMED_BUILDINGS = ("osm", "overture")
#: margin around the map (map units, metres) for the footprint query and file reads
MARGIN_M = 100.0


@dataclass
class SourceOptions:
    """Where named sources live, how hard to try them, and where their answers are cached."""

    data_dir: Path = Path("data")
    aoi: str | None = None
    osm_url: str = OSM_URL
    overture_url: str = OVERTURE_URL
    geoboundaries_url: str = GEOBOUNDARIES_URL
    districts_iso: str = "UKR"
    districts_level: str = "ADM3"
    districts_detail: str = "full"
    #: attempts per request (429, 5xx, cut-off downloads and unreachable hosts are retried)
    tries: int = 4
    #: first wait between attempts, doubled after each
    backoff_s: float = 1.0
    #: seconds without a byte from the server before a try is given up (Overpass queries
    #: may think for up to their own 180 s timeout before answering)
    timeout_s: float = 240.0

    def client(self, service: str) -> Client:
        return Client(service, self.tries, self.backoff_s, self.timeout_s)


def map_box(src: rasterio.DatasetReader, margin: float = MARGIN_M) -> Box:
    """The map's extent plus ``margin`` in WGS 84 (west, south, east, north), rounded outwards
    to 1e-6 degrees (about 0.1 m) so the cache key does not hang on the last float digit."""
    b = src.bounds
    west, south, east, north = transform_bounds(
        src.crs,
        "EPSG:4326",
        b.left - margin,
        b.bottom - margin,
        b.right + margin,
        b.top + margin,
        densify_pts=21,
    )
    down, up = (lambda v: math.floor(v * 1e6) / 1e6), (lambda v: math.ceil(v * 1e6) / 1e6)
    return (down(west), down(south), up(east), up(north))


def aoi_name(map_path: Path, src: rasterio.DatasetReader, given: str | None) -> str:
    """The AOI the cache is filed under: the option, the map's AOI tag, else its file name."""
    if given:
        return given
    tag = src.tags().get("AOI")
    if tag:
        return tag
    stem = map_path.stem
    for suffix in ("_damage_prob", "_pwtt", "_prob"):
        stem = stem.removesuffix(suffix)
    return stem


def named_buildings(name: str, box: Box, aoi: str, opts: SourceOptions) -> Entry:
    """Fetch (or read from the cache) the footprints of source ``name`` in ``box``."""
    url = opts.osm_url if name == "osm" else opts.overture_url
    client = opts.client(osm.SERVICE if name == "osm" else overture.SERVICE)

    def fetch(tmp: Path) -> dict[str, Any]:
        if name == "osm":
            return osm.fetch(box, url, tmp, client)
        return overture.fetch(box, url, tmp, client, opts.data_dir / "overture")

    query = {"source": name, "url": url, "bbox": list(box)}
    return cached(opts.data_dir / "buildings" / aoi, name, ".parquet", query, fetch)


def named_districts(opts: SourceOptions) -> Entry:
    """geoBoundaries' units of ``districts_iso`` at ``districts_level``, cached per country."""
    client = opts.client(geoboundaries.SERVICE)
    return geoboundaries.districts(
        opts.data_dir,
        opts.districts_iso,
        opts.districts_level,
        opts.geoboundaries_url,
        opts.districts_detail,
        client,
    )
