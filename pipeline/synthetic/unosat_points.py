"""UNOSAT-style damage-site points for the synthetic town.

Laid out like a UNOSAT Comprehensive Damage Assessment: one point per site in EPSG:4326, one
column group per assessment date (``SensorDate``, ``Main_Damage_Site_Class``, ``Damage_Status``
with suffixes ``_2``, ``_3``), written twice: a GeoPackage with full names and a zipped ESRI
shapefile whose names GDAL truncates to 10 characters, as in UNOSAT's shapefile downloads.
"""

from __future__ import annotations

import datetime as dt
import struct
import tempfile
import warnings
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry

from contract.atomic import atomic_path
from contract.gpkg import pinned_ogr_time
from pipeline.synthetic.damage import DamagePlan

STATUS_NEW, STATUS_SAME, STATUS_NONE = "New Damage", "Already Damaged", "No Visible Damage"


def assessment_dates(after: dt.date, rng: np.random.Generator) -> list[dt.date]:
    """Three assessment dates: one before the after scene, two after it."""
    first = after - dt.timedelta(days=int(rng.integers(3, 20)))
    second = after + dt.timedelta(days=int(rng.integers(30, 90)))
    third = second + dt.timedelta(days=int(rng.integers(60, 120)))
    return [first, second, third]


def build_sites(
    rng: np.random.Generator,
    plan: DamagePlan,
    xy: np.ndarray,
    eligible: np.ndarray,
    dates: list[dt.date],
    aoi_utm: BaseGeometry,
    crs: str,
    code: str,
    nvd_share: float = 0.1,
) -> gpd.GeoDataFrame:
    """One row per site in the CDA's wide layout, in EPSG:4326.

    ``xy`` holds each building's point in the grid CRS (row = building id). A share
    ``nvd_share`` of the intact buildings is assessed "No Visible Damage" (class 6) at every
    date, as UNOSAT does for buildings it checked: the hard negatives of the dataset step.
    """
    classes, points = _assessed(rng, plan, xy, eligible, nvd_share)
    _outside(rng, aoi_utm, classes, points)
    cls = np.array(classes, dtype=float)
    status = _statuses(cls)
    n = len(cls)
    frame = pd.DataFrame(
        {
            "SiteID": [f"{code}-{i + 1:05d}" for i in range(n)],
            "SensorDate": pd.to_datetime([dates[0]] * n),
            "Main_Damage_Site_Class": pd.array(cls[:, 0], dtype="Int32"),
            "SensorDate_2": pd.to_datetime([dates[1]] * n),
            "Main_Damage_Site_Class_2": pd.array(cls[:, 1], dtype="Int32"),
            "Damage_Status_2": status[0],
            "SensorDate_3": pd.to_datetime([dates[2]] * n),
            "Main_Damage_Site_Class_3": pd.array(cls[:, 2], dtype="Int32"),
            "Damage_Status_3": status[1],
            "Confidence": rng.choice(["High", "Medium"], size=n, p=[0.7, 0.3]),
            "Neighborhood": "Synthetic",
        }
    )
    gdf = gpd.GeoDataFrame(frame, geometry=points, crs=crs).to_crs("EPSG:4326")
    return gdf


def _assessed(
    rng: np.random.Generator,
    plan: DamagePlan,
    xy: np.ndarray,
    eligible: np.ndarray,
    nvd_share: float,
) -> tuple[list[list[float]], list[Point]]:
    """The classes at the three dates and the point of every assessed building."""
    classes: list[list[float]] = []
    points: list[Point] = []
    for bid in eligible:
        now, later = int(plan.now[bid]), int(plan.later[bid])
        if now in (1, 2, 3):
            upgraded = 2 if now == 3 and rng.random() < 0.2 else now
            row: list[float] = [now, upgraded, upgraded]
        elif now == 4:
            row = [4, 4 if rng.random() < 0.5 else 6, 6]
        elif now == 11:
            row = [11, 11, 11]
        elif later:
            row = [6 if rng.random() < 0.5 else np.nan, later, later]
        elif rng.random() < nvd_share:
            row = [6, 6, 6]
        else:
            continue
        classes.append(row)
        points.append(Point(xy[bid]))
    return classes, points


def _outside(
    rng: np.random.Generator,
    aoi_utm: BaseGeometry,
    classes: list[list[float]],
    points: list[Point],
) -> None:
    """A few sites just outside the AOI polygon (UNOSAT areas do not follow our AOI edges)."""
    ring = aoi_utm.buffer(250).difference(aoi_utm.buffer(40))
    minx, miny, maxx, maxy = ring.bounds
    outside = 0
    while outside < 5 and not ring.is_empty:
        p = Point(rng.uniform(minx, maxx), rng.uniform(miny, maxy))
        if ring.contains(p):
            classes.append([int(rng.choice([1, 2])), np.nan, np.nan])
            points.append(p)
            outside += 1


def _statuses(cls: np.ndarray) -> list[np.ndarray]:
    """``Damage_Status_2`` and ``_3``: new, same or no damage against the previous date."""
    none = np.array(None, dtype=object)
    status = []
    for prev, cur in ((np.full(len(cls), np.nan), cls[:, 1]), (cls[:, 1], cls[:, 2])):
        col = np.where(
            np.isnan(cur),
            none,
            np.where(
                np.isin(cur, (1, 2, 3, 4, 11)),
                np.where(np.isin(prev, (1, 2, 3, 4, 11)), STATUS_SAME, STATUS_NEW),
                STATUS_NONE,
            ),
        )
        status.append(col)
    status[0] = np.where(np.isnan(cls[:, 0]), none, status[0])  # first change vs date one
    return status


def write_geopackage(gdf: gpd.GeoDataFrame, path: Path, stamp: dt.date) -> None:
    """Full column names; the timestamp GDAL stores is pinned so the bytes are reproducible."""
    with atomic_path(path) as tmp, pinned_ogr_time(f"{stamp.isoformat()}T00:00:00Z"):
        pyogrio.write_dataframe(gdf, tmp, layer="Damage_Sites", driver="GPKG")


def write_zipped_shapefile(gdf: gpd.GeoDataFrame, path: Path, stamp: dt.date) -> None:
    """A zipped shapefile with GDAL's 10-character names, byte-reproducible."""
    with tempfile.TemporaryDirectory() as tmpdir:
        shp = Path(tmpdir) / "Damage_Sites.shp"
        with warnings.catch_warnings():  # GDAL announces each truncated name; that is the point
            warnings.simplefilter("ignore", RuntimeWarning)
            pyogrio.write_dataframe(gdf, shp, driver="ESRI Shapefile", encoding="UTF-8")
        dbf = shp.with_suffix(".dbf")
        raw = bytearray(dbf.read_bytes())
        raw[1:4] = struct.pack("BBB", stamp.year - 1900, stamp.month, stamp.day)
        dbf.write_bytes(bytes(raw))
        with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for part in sorted(Path(tmpdir).iterdir()):
                info = zipfile.ZipInfo(
                    part.name, date_time=(stamp.year, stamp.month, stamp.day, 0, 0, 0)
                )
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, part.read_bytes())
