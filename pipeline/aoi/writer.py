"""Writing AOI files in the layout QGIS reads and edits (one Feature, EPSG:4326)."""

from __future__ import annotations

import json
from typing import Any

from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from pipeline.aoi.fields import DateWindow


def aoi_feature(
    name: str,
    slug: str,
    geometry: BaseGeometry,
    before: DateWindow,
    after: DateWindow,
    unosat_aoi: str,
    labels: dict[str, Any] | None,
) -> dict[str, Any]:
    """The FeatureCollection an AOI file holds, with properties in a fixed order.

    ``labels`` None writes a map-only AOI (no ``labels`` property).
    """
    props: dict[str, Any] = {
        "name": name,
        "slug": slug,
        "before": before.to_json(),
        "after": after.to_json(),
        "unosat_aoi": unosat_aoi,
    }
    if labels is not None:
        props["labels"] = labels
    return {
        "type": "FeatureCollection",
        "name": slug,
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}},
        "features": [{"type": "Feature", "properties": props, "geometry": mapping(geometry)}],
    }


def dump_aoi_json(doc: dict[str, Any]) -> str:
    """Serialise with rounded coordinates (1e-7 degree is ~1 cm) and a stable layout."""

    def rnd(obj: Any) -> Any:
        if isinstance(obj, float):
            return round(obj, 7)
        if isinstance(obj, list | tuple):
            return [rnd(o) for o in obj]
        if isinstance(obj, dict):
            return {k: rnd(v) for k, v in obj.items()}
        return obj

    return json.dumps(rnd(doc), indent=1, ensure_ascii=False) + "\n"
