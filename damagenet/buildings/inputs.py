"""What ``damagenet aggregate`` reads, resolved from its options: footprints and zones.

Footprints are a file (read only where it meets the map plus a margin: a country file costs
what the city needs) or a named open source fetched for the map's box into the cache. Zones
are a square grid aligned on multiples of its size in the map's CRS (``grid``), PWTT's grid in
Web Mercator (``pwtt-grid``), geoBoundaries' administrative units (``geoboundaries``) or a
district file. Each comes with its provenance (source, release, query, licence, attribution),
which goes into the summary and the GeoPackage's metadata.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import rasterio

from damagenet.buildings.fetch import (
    MARGIN_M,
    NAMED_BUILDINGS,
    SourceOptions,
    aoi_name,
    map_box,
    named_buildings,
    named_districts,
)
from damagenet.buildings.footprints import VectorSource, open_vector
from damagenet.buildings.sources.cache import Entry
from damagenet.buildings.sources.geoparquet import Box
from damagenet.buildings.zones import DistrictZones, GridZones, Zones, box_in, pwtt_grid

#: --zones values that are not files
ZONE_KINDS = ("grid", "pwtt-grid", "geoboundaries")


def map_bounds(prob: rasterio.DatasetReader, margin: float = 0.0) -> Box:
    b = prob.bounds
    return (b.left - margin, b.bottom - margin, b.right + margin, b.top + margin)


def open_buildings(
    map_path: Path,
    prob: rasterio.DatasetReader,
    buildings: str | Path,
    buildings_crs: str | None,
    sources: SourceOptions,
) -> tuple[VectorSource, dict[str, Any]]:
    """The footprints to read, restricted to the map's box plus a margin, and their provenance."""
    name = str(buildings)
    if name in NAMED_BUILDINGS:
        aoi = aoi_name(map_path, prob, sources.aoi)
        entry = named_buildings(name, map_box(prob), aoi, sources)
        source = open_vector(entry.path, None, what="buildings")
        provenance = _cached(entry)
    else:
        source = open_vector(buildings, buildings_crs, what="buildings")
        provenance = {"source": "file", "path": str(source.path)}
    source.bbox = box_in(map_bounds(prob, MARGIN_M), prob.crs, source.crs)
    return source, provenance


def open_zones(
    prob: rasterio.DatasetReader,
    zones: str | Path | None,
    grid_m: float,
    zones_crs: str | None,
    sources: SourceOptions,
) -> tuple[Zones, dict[str, Any]]:
    """The zones buildings are counted in, and their provenance."""
    bounds = map_bounds(prob)
    which = str(zones) if zones is not None else "grid"
    if which == "grid":
        grid = GridZones(bounds, grid_m, prob.crs)
        return grid, {"source": grid.describe()["alignment"]}
    if which == "pwtt-grid":
        grid = pwtt_grid(bounds, grid_m, prob.crs)
        return grid, {
            "source": "PWTT's grid: Earth Engine coveringGrid('EPSG:3857', "
            f"{grid_m:g}), {grid.describe()['alignment']}"
        }
    if which == "geoboundaries":
        entry = named_districts(sources)
        return DistrictZones(entry.path, prob.crs, None, bounds), _cached(entry)
    districts = DistrictZones(Path(which), prob.crs, zones_crs, bounds)
    return districts, {"source": "file", "path": which}


def _cached(entry: Entry) -> dict[str, Any]:
    return {"cache": str(entry.path), "from_cache": entry.from_cache, **entry.provenance}


def attribution(provenance: dict[str, dict[str, Any]]) -> str:
    """One line of sources, licences and attribution for the GeoPackage layers' description."""
    parts = []
    for role, p in provenance.items():
        if p.get("licence"):
            parts.append(
                f"{role}: {p['source']}, release {p.get('release')}, licence {p['licence']}, "
                f"{p.get('attribution', '')}"
            )
        elif p.get("path"):
            parts.append(f"{role}: {p['path']}")
    return "; ".join(parts)


def licence_metadata(provenance: dict[str, dict[str, Any]]) -> dict[str, str]:
    """GeoPackage layer metadata items (gpkg_metadata) naming each source's licence."""
    items: dict[str, str] = {}
    for role, p in provenance.items():
        prefix = role.upper()
        items[f"{prefix}_SOURCE"] = str(p.get("source", ""))
        for key in ("path", "url", "release", "licence", "attribution"):
            if p.get(key):
                items[f"{prefix}_{key.upper()}"] = str(p[key])
        for dataset, d in sorted(p.get("source_datasets", {}).items()):
            key = re.sub(r"[^A-Za-z0-9]+", "_", dataset).strip("_").upper()
            items[f"{prefix}_LICENCE_{key}"] = f"{d['licence']} ({d['buildings']} buildings)"
    return items
