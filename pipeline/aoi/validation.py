"""Validation of an AOI file: one function per check, every problem collected at once.

An analyst fixing a file wants the whole list, each message naming the file and the field, so
the checks never stop at the first problem. :func:`check_aoi_file` returns the parsed fields of
a valid file; :mod:`pipeline.aoi` builds the :class:`~pipeline.aoi.AOI` from them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import shapely
from pyproj import CRS
from pyproj.exceptions import CRSError
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from pipeline.aoi.fields import (
    AFTER_EARLIEST,
    INVASION_DATE,
    NO_UNOSAT_AREA,
    DateWindow,
    LabelSource,
    parse_labels,
    parse_window,
)
from pipeline.errors import InputFileError
from pipeline.geo import geometry_area_km2, reproject_geometry
from pipeline.reference import unosat_areas

MIN_AREA_KM2 = 0.1
MAX_AREA_KM2 = 2500.0
#: ``labels`` is optional: an AOI without it is map-only (no training, no label raster).
REQUIRED_PROPERTIES = ("name", "slug", "before", "after", "unosat_aoi")
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
LONLAT = CRS.from_user_input("OGC:CRS84")

Report = Callable[[str, str], None]


def read_feature(path: Path) -> tuple[dict[str, Any], Any]:
    """The one Feature of an AOI file (a FeatureCollection of one, or a bare Feature) and the
    CRS its ``crs`` member declares (None when it declares none)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputFileError(f"{path}: AOI file not found") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise InputFileError(f"{path}: expected a GeoJSON object")
    if doc.get("type") == "FeatureCollection":
        feats = doc.get("features") or []
        if len(feats) != 1:
            raise InputFileError(
                f"{path}: a FeatureCollection with exactly one Feature is "
                f"expected, found {len(feats)}"
            )
        return feats[0], doc.get("crs")
    if doc.get("type") == "Feature":
        return doc, doc.get("crs")
    raise InputFileError(
        f"{path}: expected a GeoJSON Feature or FeatureCollection, got type {doc.get('type')!r}"
    )


def declared_crs(member: Any, err: Report) -> CRS | None:
    """The CRS a (2008-style) ``crs`` member names, None for longitude/latitude or none.

    GeoJSON is longitude/latitude; QGIS writes ``urn:ogc:def:crs:OGC:1.3:CRS84``. A file that
    names another CRS is read in it, never silently as degrees.
    """
    if member is None:
        return None
    name = member.get("properties", {}).get("name") if isinstance(member, dict) else None
    if not isinstance(name, str):
        err("crs", f"unreadable crs member {member!r}; remove it (GeoJSON is lon/lat)")
        return None
    try:
        crs = CRS.from_user_input(name)
    except CRSError:
        err("crs", f"unknown CRS {name!r}; reproject the polygon to EPSG:4326 (lon/lat)")
        return None
    return None if crs.equals(LONLAT, ignore_axis_order=True) else crs


def _in_declared_crs(geom: BaseGeometry, crs: CRS, err: Report) -> BaseGeometry | None:
    """The polygon read in its declared CRS and brought to lon/lat; coordinates that look like
    degrees under a projected CRS are refused (the file says metres, the numbers do not)."""
    minx, miny, maxx, maxy = geom.bounds
    name = crs.to_string()
    if crs.is_projected and -180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90:
        err(
            "crs",
            f"declares {name} (metres) but the coordinates look like degrees (x {minx:.4f}.."
            f"{maxx:.4f}, y {miny:.4f}..{maxy:.4f}); remove the crs member if they are "
            "longitude/latitude, or reproject the polygon to EPSG:4326",
        )
        return None
    return reproject_geometry(geom, crs, "EPSG:4326")


def check_required(props: dict[str, Any], err: Report) -> None:
    for key in REQUIRED_PROPERTIES:
        if props.get(key) in (None, ""):
            err(key, "missing property")


def check_geometry(
    feat: dict[str, Any], err: Report, crs: CRS | None = None
) -> BaseGeometry | None:
    """A valid lon/lat (Multi)Polygon of a plausible city size, or None after reporting why.

    ``crs``: the CRS the file declares, when not longitude/latitude.
    """
    if not feat.get("geometry"):
        err("geometry", "no geometry")
        return None
    try:
        geom = shape(feat["geometry"])
    except Exception as exc:  # shapely raises several types for malformed GeoJSON
        err("geometry", f"unreadable geometry ({exc})")
        return None
    if crs is not None and not geom.is_empty:
        found = _in_declared_crs(geom, crs, err)
        if found is None:
            return None
        geom = found
    problem = _geometry_problem(geom)
    if problem:
        err("geometry", problem)
        return None
    area = geometry_area_km2(geom)
    if not MIN_AREA_KM2 <= area <= MAX_AREA_KM2:
        err(
            "geometry",
            f"area {area:.3f} km² outside the allowed {MIN_AREA_KM2}-{MAX_AREA_KM2:g} km²",
        )
    return geom


def _geometry_problem(geom: BaseGeometry) -> str | None:
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        return f"must be a Polygon or MultiPolygon, got {geom.geom_type}"
    if geom.is_empty:
        return "empty polygon"
    if not geom.is_valid:
        return f"invalid polygon: {explain_validity(geom)}"
    minx, miny, maxx, maxy = geom.bounds
    if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        return "coordinates are not longitude/latitude (EPSG:4326 expected)"
    return None


def check_slug(slug: Any, path: Path, err: Report) -> None:
    if not isinstance(slug, str) or not slug:
        return
    if not SLUG_RE.match(slug):
        err("slug", f"{slug!r} must be lower-case letters, digits, '-' or '_'")
    if slug != path.stem.removesuffix(".geojson"):
        err(
            "slug",
            f"{slug!r} does not match the file name {path.name!r} (expected {path.stem}.geojson)",
        )


def check_dates(props: dict[str, Any], err: Report, warn: Report) -> dict[str, DateWindow]:
    """Parsed before/after windows; the study's date rule is a warning, order is an error."""
    windows: dict[str, DateWindow] = {}
    for key in ("before", "after"):
        if props.get(key) in (None, ""):
            continue
        try:
            windows[key] = parse_window(props[key])
        except ValueError as exc:
            err(key, str(exc))
    if "before" in windows and "after" in windows:
        b, a = windows["before"], windows["after"]
        if a.start <= b.end:
            err("after", f"after ({a}) must come after before ({b})")
        if b.end >= INVASION_DATE:
            warn(
                "before",
                f"{b} ends on or after {INVASION_DATE}; the study used pre-invasion scenes",
            )
        if a.start < AFTER_EARLIEST:
            warn(
                "after",
                f"{a} starts before {AFTER_EARLIEST}; the study used scenes from March 2022 on",
            )
    return windows


def check_labels(props: dict[str, Any], err: Report) -> LabelSource | None:
    if props.get("labels") in (None, ""):
        return None
    try:
        return parse_labels(props["labels"])
    except (ValueError, json.JSONDecodeError) as exc:
        err("labels", str(exc))
        return None


def check_unosat_area(code: Any, geom: BaseGeometry | None, err: Report) -> None:
    """A known UNOSAT area code whose polygon the AOI intersects (catches swapped lon/lat)."""
    if not isinstance(code, str) or code in ("", NO_UNOSAT_AREA):
        return
    areas = unosat_areas()
    if code not in areas:
        err(
            "unosat_aoi",
            f"unknown UNOSAT area {code!r}; known: "
            f"{', '.join(sorted(areas, key=lambda c: int(c[3:])))} or "
            f"{NO_UNOSAT_AREA!r}",
        )
    elif geom is not None and not geom.intersects(areas[code]):
        lon, lat = geom.centroid.x, geom.centroid.y
        err(
            "unosat_aoi",
            f"the AOI (centre lon {lon:.4f}, lat {lat:.4f}) does not intersect "
            f"UNOSAT area {code}; check the polygon (longitude and latitude "
            "swapped?) or the code",
        )


def check_assessment_area(props: dict[str, Any], err: Report) -> BaseGeometry | None:
    raw = props.get("assessment_area")
    if not raw:
        return None
    try:
        area = (
            shapely.from_wkt(raw)
            if isinstance(raw, str) and not raw.lstrip().startswith("{")
            else shape(json.loads(raw) if isinstance(raw, str) else raw)
        )
    except Exception as exc:  # WKT and GeoJSON parsers raise several types
        err("assessment_area", f"unreadable geometry ({exc})")
        return None
    if not area.is_valid or area.is_empty:
        err("assessment_area", "invalid or empty polygon")
        return None
    return area


def check_aoi_file(path: str | Path) -> tuple[dict[str, Any] | None, list[str], list[str]]:
    """Validate one AOI file; return ``(fields or None, errors, warnings)``.

    ``fields`` are the keyword arguments of :class:`~pipeline.aoi.AOI`. Every message starts
    with the file and names the field it concerns.
    """
    path = Path(path)
    errors: list[str] = []
    warnings: list[str] = []
    try:
        feat, crs_member = read_feature(path)
    except InputFileError as exc:
        return None, [str(exc)], []
    props = feat.get("properties") or {}

    def err(fld: str, msg: str) -> None:
        errors.append(f"{path}: {fld}: {msg}")

    def warn(fld: str, msg: str) -> None:
        warnings.append(f"{path}: {fld}: {msg}")

    check_required(props, err)
    geom = check_geometry(feat, err, declared_crs(crs_member, err))
    check_slug(props.get("slug"), path, err)
    windows = check_dates(props, err, warn)
    labels = check_labels(props, err)
    check_unosat_area(props.get("unosat_aoi"), geom, err)
    assessment = check_assessment_area(props, err)
    if errors or geom is None:
        return None, errors, warnings
    fields = {
        "name": str(props["name"]),
        "slug": str(props["slug"]),
        "geometry": geom,
        "before": windows["before"],
        "after": windows["after"],
        "unosat_aoi": str(props["unosat_aoi"]),
        "labels": labels,
        "assessment_area": assessment,
        "source_file": path,
    }
    return fields, errors, warnings
