"""Geometry helpers in lon/lat and UTM that AOIs, grids and labels share."""

from __future__ import annotations

from typing import Any

import shapely
from pyproj import CRS, Transformer
from pyproj.aoi import AreaOfInterest
from pyproj.database import query_utm_crs_info
from shapely.geometry.base import BaseGeometry


def utm_epsg_for(geom: BaseGeometry) -> int:
    """EPSG code of the WGS84 UTM zone holding the geometry's centroid (pyproj's own lookup).

    On a zone boundary pyproj returns both zones; the one whose central meridian is nearer wins,
    so the choice is stable.
    """
    c = geom.centroid
    infos = query_utm_crs_info(
        datum_name="WGS 84", area_of_interest=AreaOfInterest(c.x, c.y, c.x, c.y)
    )
    codes = [int(i.code) for i in infos if i.code[:3] in ("326", "327")]
    hemisphere = 32600 if c.y >= 0 else 32700
    codes = [code for code in codes if code - hemisphere in range(1, 61)] or codes
    if not codes:
        raise ValueError(f"no WGS84 UTM zone contains lon {c.x:.5f}, lat {c.y:.5f}")
    return min(codes, key=lambda code: abs(((code % 100) - 0.5) * 6 - 180 - c.x))


def reproject_geometry(geom: BaseGeometry, src: Any, dst: Any) -> BaseGeometry:
    """``geom`` from CRS ``src`` to CRS ``dst`` (anything pyproj accepts), x/y = lon/lat order."""
    transformer = Transformer.from_crs(
        CRS.from_user_input(src), CRS.from_user_input(dst), always_xy=True
    )
    return shapely.transform(geom, transformer.transform, interleaved=False)


def geometry_area_km2(geom: BaseGeometry) -> float:
    """Area of a lon/lat geometry in km², measured in its UTM zone."""
    return reproject_geometry(geom, "EPSG:4326", utm_epsg_for(geom)).area / 1e6
