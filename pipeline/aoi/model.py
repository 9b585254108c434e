"""Areas of interest: one GeoJSON file per city, and the validated :class:`AOI` it loads into.

An AOI file is a GeoJSON FeatureCollection holding one Feature in EPSG:4326 (the form QGIS writes
and edits). Its properties drive the whole workflow: the scene dates, the UNOSAT assessment area
and where that city's UNOSAT file lives. An AOI without ``labels`` is map-only: it gets scenes
and damage maps, never labels or a training role. Checks live in :mod:`pipeline.aoi.validation`,
property parsers in :mod:`pipeline.aoi.fields`, the writer in :mod:`pipeline.aoi.writer`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pyproj import CRS
from shapely.geometry.base import BaseGeometry

from pipeline.aoi.fields import DateWindow, LabelSource
from pipeline.aoi.validation import NO_UNOSAT_AREA, check_aoi_file
from pipeline.errors import InputFileError
from pipeline.geo import geometry_area_km2, reproject_geometry, utm_epsg_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AOI:
    """A validated area of interest."""

    name: str
    slug: str
    geometry: BaseGeometry  # EPSG:4326, lon/lat
    before: DateWindow
    after: DateWindow
    unosat_aoi: str  # "none" outside every UNOSAT assessment area
    labels: LabelSource | None  # None: a map-only AOI
    assessment_area: BaseGeometry | None = None  # EPSG:4326; defaults to the UNOSAT area
    source_file: Path | None = None

    @property
    def utm_epsg(self) -> int:
        return utm_epsg_for(self.geometry)

    @property
    def has_labels(self) -> bool:
        return self.labels is not None

    @property
    def has_unosat_area(self) -> bool:
        return self.unosat_aoi != NO_UNOSAT_AREA

    def area_km2(self) -> float:
        return geometry_area_km2(self.geometry)

    def geometry_in(self, crs: CRS | str | int) -> BaseGeometry:
        """The AOI polygon reprojected to ``crs``."""
        return reproject_geometry(self.geometry, "EPSG:4326", crs)


def validate_aoi_file(path: str | Path) -> tuple[AOI | None, list[str], list[str]]:
    """Validate one AOI file; return ``(aoi or None, errors, warnings)``."""
    fields, errors, warnings = check_aoi_file(path)
    return (AOI(**fields) if fields is not None else None), errors, warnings


def load_aoi(path: str | Path) -> AOI:
    """Load an AOI file or raise :class:`~pipeline.errors.InputFileError` listing every problem
    (in one line, as the command line prints it)."""
    aoi, errors, warnings = validate_aoi_file(path)
    for w in warnings:
        log.warning(w)
    if errors or aoi is None:
        raise InputFileError(one_line(Path(path), errors))
    return aoi


def one_line(path: Path, errors: list[str]) -> str:
    """Every problem of one AOI file in one line, the file named once."""
    if len(errors) == 1:
        return errors[0]
    parts = [e.removeprefix(f"{path}: ") for e in errors]
    return f"{path}: {len(parts)} problems: " + "; ".join(parts)


def discover_aoi_files(folder: str | Path = "aois") -> list[Path]:
    """All ``*.geojson`` files in the AOI folder, sorted by name."""
    return sorted(Path(folder).glob("*.geojson"))
