"""OpenStreetMap buildings for a box from an Overpass API interpreter (``out geom`` JSON).

The query asks for ways and multipolygon relations tagged ``building`` in the box and their
geometries inline (``out geom``), so one request answers it. Ways become polygons when closed;
relations are assembled from their outer and inner member ways. Overpass signals overload in
three ways, each retried with backoff: HTTP 429 (too many requests from this address), 504
(gateway timeout: the server is busy) and an HTTP 200 answer whose ``remark`` starts
"runtime error" (query timed out or ran out of memory), which carries partial or no data and so
is never cached.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import shapely

from damagenet.buildings.sources.geoparquet import Box
from damagenet.buildings.sources.http import Client, RetryableAnswer, ServiceError, json_answer

LICENCE = "ODbL-1.0"
ATTRIBUTION = "© OpenStreetMap contributors, ODbL 1.0 (https://www.openstreetmap.org/copyright)"
#: tags copied to their own columns (":" -> "_"); every tag is also kept in ``tags`` (JSON)
TAG_COLUMNS = (
    "building",
    "name",
    "building:levels",
    "height",
    "addr:street",
    "addr:housenumber",
    "start_date",
)
SERVICE = "Overpass API"


def overpass_query(bbox: Box, timeout_s: int = 180) -> str:
    """Overpass QL for buildings in ``bbox`` (west, south, east, north, degrees)."""
    w, s, e, n = bbox
    box = f"({s:.6f},{w:.6f},{n:.6f},{e:.6f})"
    return (
        f"[out:json][timeout:{timeout_s}];"
        f'(way["building"]{box};relation["building"]["type"="multipolygon"]{box};);'
        "out geom;"
    )


def fetch(bbox: Box, url: str, dest: Path, client: Client) -> dict[str, Any]:
    """Ask ``url`` for the buildings in ``bbox``, write them to GeoParquet ``dest``; provenance."""
    query = overpass_query(bbox)
    answer = client.call("POST", url, lambda r: _checked(url, r), data={"data": query})
    frame, skipped = to_frame(answer["elements"])
    if frame.empty:
        raise ServiceError(
            f"{SERVICE}: {url} returned no buildings in the box {bbox} (west, south, east, "
            "north); the area may have none mapped: try --buildings overture or a file"
        )
    frame.to_parquet(dest, index=False)
    osm3s = answer.get("osm3s", {})
    return {
        "source": "OpenStreetMap via Overpass API",
        "url": url,
        "overpass_query": query,
        "release": osm3s.get("timestamp_osm_base"),
        "licence": LICENCE,
        "attribution": ATTRIBUTION,
        "features": len(frame),
        "elements": len(answer["elements"]),
        "elements_without_polygon": skipped,
        "bytes_downloaded": client.bytes_read,
    }


def _checked(url: str, resp: Any) -> dict[str, Any]:
    answer = json_answer(url, resp)
    if not isinstance(answer, dict) or "elements" not in answer:
        raise RetryableAnswer(f"answer from {url} has no 'elements': not Overpass JSON")
    remark = str(answer.get("remark", ""))
    if "runtime error" in remark.lower():  # timeout or out of memory: data partial or missing
        raise RetryableAnswer(f"Overpass remark: {remark.strip()}")
    return answer


def to_frame(elements: list[dict[str, Any]]) -> tuple[gpd.GeoDataFrame, int]:
    """Buildings of Overpass elements (WGS 84) and how many gave no polygon."""
    rows, geoms, skipped = [], [], 0
    for el in elements:
        tags = el.get("tags", {})
        if el.get("type") not in ("way", "relation") or tags.get("building", "no") == "no":
            continue
        geom = _way(el) if el["type"] == "way" else _relation(el)
        if geom is None:
            skipped += 1
            continue
        row = {"osm_id": f"{el['type']}/{el['id']}", "osm_type": el["type"]}
        row |= {t.replace(":", "_"): tags.get(t) for t in TAG_COLUMNS}
        row["tags"] = json.dumps(tags, sort_keys=True, ensure_ascii=False)
        rows.append(row)
        geoms.append(geom)
    frame = gpd.GeoDataFrame(rows, geometry=geoms, crs="EPSG:4326")
    if frame.empty:
        frame = gpd.GeoDataFrame(
            columns=["osm_id", "osm_type", "tags"], geometry=[], crs="EPSG:4326"
        )
    return frame.sort_values("osm_id", kind="stable").reset_index(drop=True), skipped


def _coords(geometry: list[dict[str, float]] | None) -> np.ndarray | None:
    if not geometry:
        return None
    return np.array([(p["lon"], p["lat"]) for p in geometry if p], dtype=float)


def _way(el: dict[str, Any]) -> shapely.Geometry | None:
    xy = _coords(el.get("geometry"))
    if xy is None or len(xy) < 4 or not np.array_equal(xy[0], xy[-1]):
        return None  # an unclosed way tagged building: no area to measure
    return shapely.Polygon(xy)


def _relation(el: dict[str, Any]) -> shapely.Geometry | None:
    """Outer rings minus inner rings, from member ways joined end to end."""
    rings: dict[str, list[shapely.Geometry]] = {"outer": [], "inner": []}
    for m in el.get("members", []):
        xy = _coords(m.get("geometry"))
        if m.get("type") == "way" and xy is not None and len(xy) >= 2:
            rings["inner" if m.get("role") == "inner" else "outer"].append(shapely.LineString(xy))
    if not rings["outer"]:
        return None
    outer = shapely.union_all(shapely.get_parts(shapely.polygonize(rings["outer"])))
    if outer.is_empty:
        return None
    if rings["inner"]:
        outer = outer.difference(
            shapely.union_all(shapely.get_parts(shapely.polygonize(rings["inner"])))
        )
    return None if outer.is_empty else outer
