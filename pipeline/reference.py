"""The UNOSAT assessment areas shipped with the package.

``data/unosat_aois.geojson`` is the set of 18 UNOSAT damage-assessment extents in Ukraine
(UKR1..UKR18) published under the MIT licence by Dietrich et al. (2025). Outside these polygons
UNOSAT made no assessment, so label rasters mark that ground *unknown*.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from pipeline.errors import InputFileError


@cache
def unosat_areas() -> dict[str, BaseGeometry]:
    """UNOSAT area code -> polygon in EPSG:4326."""
    text = resources.files("pipeline").joinpath("data/unosat_aois.geojson").read_text()
    doc = json.loads(text)
    return {f["properties"]["aoi"]: shape(f["geometry"]) for f in doc["features"]}


def unosat_area(code: str) -> BaseGeometry:
    """The assessment polygon of one UNOSAT area code such as ``UKR2``."""
    areas = unosat_areas()
    if code not in areas:
        raise InputFileError(f"unknown UNOSAT area {code!r}; known: {', '.join(sorted(areas))}")
    return areas[code]


def find_unosat_area(geom: BaseGeometry) -> str | None:
    """Code of the UNOSAT area overlapping ``geom`` most, or None if none does."""
    best, best_area = None, 0.0
    for code, area in unosat_areas().items():
        overlap = area.intersection(geom).area
        if overlap > best_area:
            best, best_area = code, overlap
    return best
