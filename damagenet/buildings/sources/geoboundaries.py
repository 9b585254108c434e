"""Administrative units (ADM3 hromadas for Ukraine) from the geoBoundaries API, cached.

``GET <api>/<ISO>/<ADM>/`` answers a metadata JSON naming the boundary set (``boundaryID``,
``buildDate``, ``boundaryLicense``, ``boundarySource``) and its downloads: ``gjDownloadURL``
(full-detail GeoJSON) and ``simplifiedGeometryGeoJSON``. The GeoJSON is downloaded whole (the
service has no box query; Ukraine's ADM3 is tens of megabytes in full detail), checked to be a
complete FeatureCollection, and cached once per country and level for every AOI in it; the
aggregation then reads only the units that meet the map (a bounding-box read). Units carry
``shapeName``, ``shapeID`` (the zone id) and ``shapeISO``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from damagenet.buildings.sources.cache import Entry, cached
from damagenet.buildings.sources.defaults import DISTRICT_DETAILS
from damagenet.buildings.sources.http import Client, RetryableAnswer, ServiceError, checked_content

SERVICE = "geoBoundaries"
#: the metadata key of each --districts-detail's download
DETAIL_KEYS = dict(
    zip(DISTRICT_DETAILS, ("gjDownloadURL", "simplifiedGeometryGeoJSON"), strict=True)
)


def metadata(client: Client, api: str, iso: str, level: str) -> dict[str, Any]:
    """The metadata JSON of one country and level (the API answers a list for ``ALL``)."""
    url = f"{api.rstrip('/')}/{iso}/{level}/"
    try:
        meta = client.get_json(url)
    except ServiceError as exc:
        if "HTTP 404" not in str(exc):
            raise
        raise ServiceError(
            f"{exc}; geoBoundaries has no {level} for {iso}: check --districts-iso and "
            "--districts-level"
        ) from exc
    if isinstance(meta, list):
        meta = meta[0] if len(meta) == 1 else None
    if not isinstance(meta, dict) or "gjDownloadURL" not in meta:
        raise ServiceError(
            f"{SERVICE}: {url} answered no boundary metadata (no gjDownloadURL); check "
            f"--districts-iso {iso} and --districts-level {level}"
        )
    return meta


def _geojson(url: str, resp: Any) -> bytes:
    """The GeoJSON body, refused when cut short or not a FeatureCollection with features."""
    body = checked_content(url, resp)
    try:
        doc = json.loads(body)
    except ValueError as exc:  # a download cut short stops mid-document
        raise RetryableAnswer(f"{url}: not complete GeoJSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise ServiceError(f"{SERVICE}: {url} is not a GeoJSON FeatureCollection")
    if not doc.get("features"):
        raise ServiceError(f"{SERVICE}: {url} is a FeatureCollection without features")
    return body


def districts(
    cache_root: Path, iso: str, level: str, api: str, detail: str, client: Client
) -> Entry:
    """The cached boundary file of ``iso`` at ``level``, fetched when missing."""
    iso, level = iso.upper(), level.upper()
    query = {"service": SERVICE, "api": api, "iso": iso, "level": level, "detail": detail}

    def fetch(tmp: Path) -> dict[str, Any]:
        meta = metadata(client, api, iso, level)
        url = meta.get(DETAIL_KEYS[detail])
        if not url:
            raise ServiceError(f"{SERVICE}: metadata of {iso} {level} has no {DETAIL_KEYS[detail]}")
        tmp.write_bytes(client.call("GET", url, lambda r: _geojson(url, r)))
        return {
            "source": f"geoBoundaries {meta.get('boundaryType', level)} of {iso}",
            "url": url,
            "release": meta.get("buildDate"),
            "boundary_id": meta.get("boundaryID"),
            "boundary_source": meta.get("boundarySource"),
            "year_represented": meta.get("boundaryYearRepresented"),
            "licence": meta.get("boundaryLicense"),
            "attribution": f"geoBoundaries (www.geoboundaries.org), {meta.get('boundarySource')}",
            "bytes_downloaded": client.bytes_read,
        }

    return cached(
        cache_root / "districts", f"geoboundaries-{iso}-{level}", ".geojson", query, fetch
    )
