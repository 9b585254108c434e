"""Areas of interest: one GeoJSON file per city, loaded and validated.

An AOI file is a GeoJSON FeatureCollection holding one Feature in EPSG:4326 (the form QGIS writes
and edits). Its properties drive the whole workflow: the scene dates, the UNOSAT assessment area
and where that city's UNOSAT file lives. Validation collects *every* problem of a file, each
naming the field, because an analyst fixing a file wants the whole list at once.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import shapely
from pyproj import CRS, Transformer
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

#: Day of the full-scale invasion; the study's *before* scenes all precede it.
INVASION_DATE = dt.date(2022, 2, 24)
#: The study's earliest *after* date.
AFTER_EARLIEST = dt.date(2022, 3, 1)
MIN_AREA_KM2 = 0.1
MAX_AREA_KM2 = 2500.0
REQUIRED_PROPERTIES = ("name", "slug", "before", "after", "unosat_aoi", "labels")
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


@dataclass(frozen=True)
class DateWindow:
    """An inclusive date window; a single acquisition date is a window of one day."""

    start: dt.date
    end: dt.date

    @property
    def is_single_day(self) -> bool:
        return self.start == self.end

    def to_json(self) -> str | list[str]:
        if self.is_single_day:
            return self.start.isoformat()
        return [self.start.isoformat(), self.end.isoformat()]

    def __str__(self) -> str:
        if self.is_single_day:
            return self.start.isoformat()
        return f"{self.start.isoformat()}/{self.end.isoformat()}"


@dataclass(frozen=True)
class LabelSource:
    """Where the UNOSAT damage-site file for an AOI is expected, and how to read it."""

    path: str
    url: str | None = None
    product: str | None = None
    #: Overrides for column names: keys ``site_id``, ``date``, ``class``, ``status``, ``layer``;
    #: a value may be a list of names, one per assessment date.
    fields: dict[str, Any] = field(default_factory=dict)
    #: Class codes or texts of the file mapped to UNOSAT codes (or None: not assessed), e.g.
    #: ``{"7": 1}``; validated by :func:`pipeline.unosat_values.class_map_from`.
    class_map: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AOI:
    """A validated area of interest."""

    name: str
    slug: str
    geometry: BaseGeometry  # EPSG:4326, lon/lat
    before: DateWindow
    after: DateWindow
    unosat_aoi: str
    labels: LabelSource
    assessment_area: BaseGeometry | None = None  # EPSG:4326; defaults to the UNOSAT area
    source_file: Path | None = None

    @property
    def utm_epsg(self) -> int:
        return utm_epsg_for(self.geometry)

    def area_km2(self) -> float:
        return geometry_area_km2(self.geometry)

    def geometry_in(self, crs: CRS | str | int) -> BaseGeometry:
        """The AOI polygon reprojected to ``crs``."""
        return reproject_geometry(self.geometry, "EPSG:4326", crs)


def utm_epsg_for(geom: BaseGeometry) -> int:
    """EPSG code of the WGS84 UTM zone holding the geometry's centroid."""
    c = geom.centroid
    zone = int((c.x + 180.0) // 6.0) + 1
    zone = min(max(zone, 1), 60)
    return (32600 if c.y >= 0 else 32700) + zone


def reproject_geometry(geom: BaseGeometry, src: Any, dst: Any) -> BaseGeometry:
    transformer = Transformer.from_crs(CRS.from_user_input(src), CRS.from_user_input(dst),
                                       always_xy=True)
    return shapely.transform(geom, transformer.transform, interleaved=False)


def geometry_area_km2(geom: BaseGeometry) -> float:
    """Area of a lon/lat geometry in km², measured in its UTM zone."""
    return reproject_geometry(geom, "EPSG:4326", utm_epsg_for(geom)).area / 1e6


def parse_date(value: Any) -> dt.date:
    """Parse ``YYYY-MM-DD`` strictly; anything else is refused with the value shown."""
    if isinstance(value, dt.date):
        return value
    # GIS tools may save a date field as YYYY/MM/DD or as a midnight datetime
    m = re.fullmatch(r"(\d{4})[-/](\d{2})[-/](\d{2})(?:[T ]00:00(?::00(?:\.0+)?)?Z?)?",
                     value.strip()) if isinstance(value, str) else None
    if m is None:
        raise ValueError(f"unknown date format {value!r} (expected YYYY-MM-DD)")
    try:
        return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError as exc:
        raise ValueError(f"invalid date {value!r} ({exc})") from exc


def parse_window(value: Any) -> DateWindow:
    """A date, a ``[start, end]`` pair, a ``start/end`` string or a ``YYYY-MM`` month.

    The string forms exist because QGIS may save a list attribute back as text.
    """
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"unreadable date window {value!r}") from exc
        elif re.fullmatch(r"[^/]{8,}/[^/]{8,}", text):  # ISO 8601 interval START/END
            value = text.split("/", 1)
        elif re.fullmatch(r"\d{4}-\d{2}", text):
            year, month = map(int, text.split("-"))
            last = calendar.monthrange(year, month)[1]
            return DateWindow(dt.date(year, month, 1), dt.date(year, month, last))
        else:
            day = parse_date(text)
            return DateWindow(day, day)
    if isinstance(value, list | tuple):
        if len(value) != 2:
            raise ValueError(f"a date window needs [start, end], got {value!r}")
        start, end = parse_date(value[0]), parse_date(value[1])
        if end < start:
            raise ValueError(f"window ends ({end}) before it starts ({start})")
        return DateWindow(start, end)
    raise ValueError(f"unknown date format {value!r} (expected YYYY-MM-DD or [start, end])")


def _parse_labels(value: Any) -> LabelSource:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = {"path": value}
    if not isinstance(value, dict) or not isinstance(value.get("path"), str):
        raise ValueError("labels must be an object with at least a 'path' string")
    fields = value.get("fields") or {}
    if isinstance(fields, str):
        fields = json.loads(fields)
    if not isinstance(fields, dict):
        raise ValueError("labels.fields must be an object mapping field roles to column names")
    unknown = set(fields) - {"site_id", "date", "class", "status", "layer"}
    if unknown:
        raise ValueError(f"labels.fields has unknown keys {sorted(unknown)}")
    class_map = value.get("class_map") or {}
    if not isinstance(class_map, dict):
        raise ValueError("labels.class_map must be an object mapping codes or texts found in "
                         "the file to UNOSAT codes, e.g. {\"7\": 1}")
    return LabelSource(path=value["path"], url=value.get("url"), product=value.get("product"),
                       fields=dict(fields), class_map={str(k): v for k, v in class_map.items()})


def _read_feature(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PipelineError(f"{path}: AOI file not found") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise PipelineError(f"{path}: expected a GeoJSON object")
    if doc.get("type") == "FeatureCollection":
        feats = doc.get("features") or []
        if len(feats) != 1:
            raise PipelineError(f"{path}: a FeatureCollection with exactly one Feature is "
                                f"expected, found {len(feats)}")
        return feats[0]
    if doc.get("type") == "Feature":
        return doc
    raise PipelineError(f"{path}: expected a GeoJSON Feature or FeatureCollection, "
                        f"got type {doc.get('type')!r}")


def validate_aoi_file(path: str | Path) -> tuple[AOI | None, list[str], list[str]]:
    """Validate one AOI file; return ``(aoi or None, errors, warnings)``.

    Every message starts with the file and names the field it concerns.
    """
    path = Path(path)
    errors: list[str] = []
    warnings: list[str] = []
    try:
        feat = _read_feature(path)
    except PipelineError as exc:
        return None, [str(exc)], []
    props = feat.get("properties") or {}

    def err(fld: str, msg: str) -> None:
        errors.append(f"{path}: {fld}: {msg}")

    for key in REQUIRED_PROPERTIES:
        if props.get(key) in (None, ""):
            err(key, "missing property")

    geom: BaseGeometry | None = None
    if not feat.get("geometry"):
        err("geometry", "no geometry")
    else:
        try:
            geom = shape(feat["geometry"])
        except Exception as exc:  # shapely raises several types for malformed GeoJSON
            err("geometry", f"unreadable geometry ({exc})")
    if geom is not None:
        if geom.geom_type not in ("Polygon", "MultiPolygon"):
            err("geometry", f"must be a Polygon or MultiPolygon, got {geom.geom_type}")
            geom = None
        elif geom.is_empty:
            err("geometry", "empty polygon")
            geom = None
        elif not geom.is_valid:
            err("geometry", f"invalid polygon: {explain_validity(geom)}")
            geom = None
        else:
            minx, miny, maxx, maxy = geom.bounds
            if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
                err("geometry", "coordinates are not longitude/latitude (EPSG:4326 expected)")
                geom = None
    if geom is not None:
        area = geometry_area_km2(geom)
        if not MIN_AREA_KM2 <= area <= MAX_AREA_KM2:
            err("geometry", f"area {area:.3f} km² outside the allowed "
                            f"{MIN_AREA_KM2}-{MAX_AREA_KM2:g} km²")

    slug = props.get("slug")
    if isinstance(slug, str) and slug:
        if not SLUG_RE.match(slug):
            err("slug", f"{slug!r} must be lower-case letters, digits, '-' or '_'")
        if slug != path.stem.removesuffix(".geojson"):
            err("slug", f"{slug!r} does not match the file name {path.name!r} "
                        f"(expected {path.stem}.geojson)")

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
            warnings.append(f"{path}: before: {b} ends on or after {INVASION_DATE}; the study "
                            "used pre-invasion scenes")
        if a.start < AFTER_EARLIEST:
            warnings.append(f"{path}: after: {a} starts before {AFTER_EARLIEST}; the study used "
                            "scenes from March 2022 on")

    labels: LabelSource | None = None
    if props.get("labels") not in (None, ""):
        try:
            labels = _parse_labels(props["labels"])
        except (ValueError, json.JSONDecodeError) as exc:
            err("labels", str(exc))

    assessment: BaseGeometry | None = None
    if props.get("assessment_area"):
        try:
            raw = props["assessment_area"]
            assessment = (shapely.from_wkt(raw) if isinstance(raw, str) and not
                          raw.lstrip().startswith("{") else
                          shape(json.loads(raw) if isinstance(raw, str) else raw))
            if not assessment.is_valid or assessment.is_empty:
                err("assessment_area", "invalid or empty polygon")
        except Exception as exc:
            err("assessment_area", f"unreadable geometry ({exc})")

    if errors or geom is None or labels is None:
        return None, errors, warnings
    aoi = AOI(name=str(props["name"]), slug=str(slug), geometry=geom,
              before=windows["before"], after=windows["after"],
              unosat_aoi=str(props["unosat_aoi"]), labels=labels,
              assessment_area=assessment, source_file=path)
    return aoi, errors, warnings


def load_aoi(path: str | Path) -> AOI:
    """Load an AOI file or raise :class:`PipelineError` listing every problem."""
    aoi, errors, warnings = validate_aoi_file(path)
    for w in warnings:
        log.warning(w)
    if errors or aoi is None:
        raise PipelineError("\n".join(errors))
    return aoi


def discover_aoi_files(folder: str | Path = "aois") -> list[Path]:
    """All ``*.geojson`` files in the AOI folder, sorted by name."""
    return sorted(Path(folder).glob("*.geojson"))


def aoi_feature(name: str, slug: str, geometry: BaseGeometry, before: DateWindow,
                after: DateWindow, unosat_aoi: str, labels: dict[str, Any]) -> dict[str, Any]:
    """The FeatureCollection an AOI file holds, with properties in a fixed order."""
    props = {"name": name, "slug": slug, "before": before.to_json(), "after": after.to_json(),
             "unosat_aoi": unosat_aoi, "labels": labels}
    return {"type": "FeatureCollection", "name": slug,
            "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}},
            "features": [{"type": "Feature", "properties": props,
                          "geometry": mapping(geometry)}]}


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
