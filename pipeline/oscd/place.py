"""Where a city lies: its footprint, its AOI record and its 10 m UTM grid.

The change map follows the first date's pixels, so the first date's georeference is the city's
footprint. The AOI is built from that footprint exactly as its file will hold it (coordinates
rounded by the AOI writer), and the grid is the AOI's grid (:func:`pipeline.grid.aoi_grid`: the
UTM zone of :func:`pipeline.geo.utm_epsg_for`, 10 m pixels, bounds snapped outward), so
``pipeline scene`` or any other step run on the written AOI file lands on the same pixels.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from rasterio.transform import array_bounds
from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from pipeline.aoi import AOI, DateWindow
from pipeline.aoi.validation import NO_UNOSAT_AREA
from pipeline.aoi.writer import aoi_feature, dump_aoi_json
from pipeline.errors import InputFileError
from pipeline.oscd.layout import CityFiles, DateFiles

log = logging.getLogger(__name__)
#: How far (in source pixels) the city's GeoJSON may lie from the first date's georeference.
EXTENT_TOLERANCE_PX = 1.5


def footprint(files: DateFiles) -> BaseGeometry:
    """The lon/lat rectangle a date's rasters cover, from their georeference."""
    west, south, east, north = array_bounds(*files.shape, files.transform)
    return box(west, south, east, north)


def check_extent(files: CityFiles, area: BaseGeometry) -> None:
    """Refuse a city whose GeoJSON extent disagrees with its rasters' georeference.

    The extent is written in GeoJSON's fixed longitude/latitude order, so a reader that took
    the rasters' latitude-first EPSG:4326 axes the wrong way round is caught here. A missing
    extent only loses the cross-check.
    """
    path = files.extent
    if not path.is_file():
        log.warning(
            "%s: not found; %s's extent comes from its georeference alone", path, files.city
        )
        return
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        feats = doc["features"] if doc.get("type") == "FeatureCollection" else [doc]
        extent = unary_union([shape(f["geometry"]) for f in feats])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputFileError(f"{path}: unreadable city extent ({exc})") from exc
    pixel = max(abs(files.before.transform.a), abs(files.before.transform.e))
    gap = max(abs(a - b) for a, b in zip(extent.bounds, area.bounds, strict=True))
    if gap > EXTENT_TOLERANCE_PX * pixel:
        found = ", ".join(f"{v:.5f}" for v in extent.bounds)
        want = ", ".join(f"{v:.5f}" for v in area.bounds)
        raise InputFileError(
            f"{path}: the city's extent ({found}) lies {gap / pixel:.1f} px from the "
            f"georeference of {files.before.bands['B02']} ({want}, west, south, east, north); "
            "latitude and longitude read the wrong way round, or files of another city?"
        )


def city_aoi(files: CityFiles) -> tuple[AOI, dict[str, Any]]:
    """The city's map-only AOI record and the GeoJSON document of its AOI file.

    Map-only (no ``labels``): the change map is given to each later step directly, and
    ``unosat_aoi`` is ``none`` since no UNOSAT assessment covers an OSCD city.
    """
    area = footprint(files.before)
    check_extent(files, area)
    name = f"{files.city} (OSCD)"
    before = DateWindow(files.before.date, files.before.date)
    after = DateWindow(files.after.date, files.after.date)
    doc = aoi_feature(name, files.city, area, before, after, NO_UNOSAT_AREA, None)
    doc = json.loads(dump_aoi_json(doc))  # the geometry exactly as the file holds it
    geometry = shape(doc["features"][0]["geometry"])
    return AOI(name, files.city, geometry, before, after, NO_UNOSAT_AREA, None), doc
