"""Reading UNOSAT Comprehensive Damage Assessment (CDA) damage-site files.

UNOSAT ships points as zipped shapefiles, file geodatabases or GeoPackages, with one column group
per assessment date (``SensorDate``, ``Main_Damage_Site_Class``; later dates suffixed ``_2``,
``_3``...). Shapefiles truncate names to 10 characters (``SensorDa_1``, ``Main_Dam_1``: GDAL
numbers the *second* group ``_1``). Classes are codes or text; dates are dates, datetimes or
strings or epoch milliseconds (:mod:`pipeline.labels.unosat_values`). ArcGIS feature-service
exports may call the class ``MainDamage``. Downstream tools pass the long layout, one row per site
and assessment (site id, point, date, class), which is pivoted to the wide one. This module
turns any of these into one table: each site's point and id, the date and class of the first
assessment in which it is damaged, and what later steps need about "No Visible Damage" sites.
"""

from __future__ import annotations

import logging
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio

from pipeline.errors import InputFileError
from pipeline.labels.unosat_values import (
    ANY_DAMAGE,
    NO_VISIBLE_DAMAGE,
    ClassMap,
    parse_classes,
    parse_dates,
)

log = logging.getLogger(__name__)

DATE_FULL = "SensorDate"
CLASS_FULL = "Main_Damage_Site_Class"
#: Names the class column goes by: CDA files, and ArcGIS feature-service aliases.
CLASS_ALIASES = ("MainDamage",)
#: Long layout (one row per site and assessment), lower-cased names.
LONG_SITE = ("siteid", "site_id", "site")
LONG_DATE = ("sensordate", "sensor_date", "date", "assessment_date")
LONG_CLASS = ("main_damage_site_class", "maindamage", "damage_class", "class", "damage")
DEFAULT_DAMAGE_CLASSES = (1, 2, 3)
SUPPORTED = (
    "supported: a point layer of damage sites, one column group per assessment date "
    "(SensorDate, Main_Damage_Site_Class, then _2, _3...; shapefile-truncated names "
    "too) or one row per site and assessment (site id, point, date, class)"
)


@dataclass
class Sites:
    """Damage sites with their first damage instance, in the file's CRS."""

    #: columns: geometry, site_id, first_date, first_class, last_class, damaged_undated,
    #: first_any_damage, last_nvd_date (see :func:`first_instance`)
    frame: gpd.GeoDataFrame
    source: Path
    layer: str
    date_columns: list[str]
    class_columns: list[str]


def _vsi_path(path: Path) -> tuple[str, list[str]]:
    """GDAL path of the dataset and its layers; looks inside zips for .gdb/.gpkg/.shp."""
    candidates = [str(path)]
    if path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except zipfile.BadZipFile as exc:
            raise InputFileError(f"{path}: not a readable zip file ({exc})") from exc
        candidates = [f"/vsizip/{path}"]
        inner = sorted({n.split(".gdb/")[0] + ".gdb" for n in names if ".gdb/" in n})
        inner += sorted(n for n in names if n.lower().endswith((".gpkg", ".shp", ".geojson")))
        candidates += [f"/vsizip/{path}/{n}" for n in inner]
    errors = []
    for cand in candidates:
        try:
            layers = pyogrio.list_layers(cand)
        except Exception as exc:  # pyogrio raises DataSourceError and friends
            errors.append(str(exc))
            continue
        if len(layers):
            return cand, [str(name) for name, _ in layers]
    raise InputFileError(
        f"{path}: cannot open as a vector dataset ({errors[-1] if errors else 'no layers found'})"
    )


def pick_layer(path: Path, dataset: str, layers: list[str], override: str | None) -> str:
    """The damage-site layer: the override, the only point layer, or the one named like it."""
    if override:
        if override not in layers:
            raise InputFileError(f"{path}: layer {override!r} not found; layers: {layers}")
        return override
    info = {name: pyogrio.read_info(dataset, layer=name) for name in layers}
    points = [n for n in layers if "point" in str(info[n].get("geometry_type", "")).lower()]
    pool = points or layers
    if len(pool) == 1:
        return pool[0]
    named = [n for n in pool if re.search(r"damage.?site", n, re.I)]
    named = named or [n for n in pool if re.search(r"damage", n, re.I)]
    if named:
        return named[0]
    return max(pool, key=lambda n: info[n].get("features", 0))


def _group_index(column: str, full: str) -> int | None:
    """Assessment-date index (1-based) of a column that is ``full`` or its truncation.

    ``full`` -> 1, ``full_N`` -> N; truncated ``abbrev`` -> 1, ``abbrev_K`` -> K + 1.
    """
    m = re.fullmatch(r"(.*?)(?:_(\d+))?", column)
    assert m is not None
    base, num = m.group(1), m.group(2)
    low_base, low_full = base.lower(), full.lower()
    if low_base == low_full:
        return int(num) if num else 1
    if len(base) >= 6 and low_full.startswith(low_base):
        return int(num) + 1 if num else 1
    if num is None and len(column) >= 6 and low_full.startswith(column.lower()):
        return 1
    return None


def _class_group(column: str) -> int | None:
    for full in (CLASS_FULL, *CLASS_ALIASES):
        if (g := _group_index(column, full)) is not None:
            return g
    return None


def find_groups(
    columns: Sequence[str], overrides: dict[str, Any], source: Path
) -> tuple[list[str], list[str]]:
    """Pair date and class columns per assessment date, in date-group order."""

    def as_list(value: Any) -> list[str]:
        return [value] if isinstance(value, str) else list(value)

    if overrides.get("date") or overrides.get("class"):
        dates = as_list(overrides.get("date") or [])
        classes = as_list(overrides.get("class") or [])
        missing = [c for c in dates + classes if c not in columns]
        if missing or len(dates) != len(classes) or not dates:
            raise InputFileError(
                f"{source}: field overrides date={dates} class={classes} do not match the file "
                f"(missing: {missing}; one date column per class column needed); columns "
                f"present: {list(columns)}"
            )
        return dates, classes
    date_by_group: dict[int, str] = {}
    class_by_group: dict[int, str] = {}
    for col in columns:
        if (g := _group_index(col, DATE_FULL)) is not None:
            date_by_group.setdefault(g, col)
        elif (g := _class_group(col)) is not None:
            class_by_group.setdefault(g, col)
    groups = sorted(set(date_by_group) & set(class_by_group))
    if not groups:
        long_cols = _long_columns(columns, overrides)
        if long_cols is not None:
            return [long_cols[1]], [long_cols[2]]
        what = "class" if date_by_group else "date" if class_by_group else "date or class"
        raise InputFileError(
            f"{source}: no recognisable damage {what} columns (expected {DATE_FULL} and "
            f"{CLASS_FULL}, with _2, _3... per assessment date, or their 10-character "
            f"shapefile forms, or site id, date and class columns of the long layout); "
            f"columns present: {list(columns)}. Name them in the AOI file's labels.fields "
            "(site_id, date, class)."
        )
    return [date_by_group[g] for g in groups], [class_by_group[g] for g in groups]


def _long_columns(columns: Sequence[str], overrides: dict[str, Any]) -> tuple[str, str, str] | None:
    """(site id, date, class) columns of a long table, if the names say so."""
    by_lower = {c.lower(): c for c in columns}

    def pick(role: str, names: tuple[str, ...]) -> str | None:
        given = overrides.get(role)
        if isinstance(given, str) and given in columns:
            return given
        return next((by_lower[n] for n in names if n in by_lower), None)

    site, date, cls = pick("site_id", LONG_SITE), pick("date", LONG_DATE), pick("class", LONG_CLASS)
    return (site, date, cls) if site and date and cls else None


def site_ids(gdf: gpd.GeoDataFrame, overrides: dict[str, Any]) -> pd.Series:
    """Each row's site id (the row number where the file has none), as text."""
    by_lower = {c.lower(): c for c in gdf.columns}
    name = (
        overrides.get("site_id")
        if overrides.get("site_id") in gdf.columns
        else next((by_lower[n] for n in LONG_SITE if n in by_lower), None)
    )
    if name is None:
        return pd.Series([str(i) for i in range(len(gdf))], index=gdf.index)
    return gdf[name].astype("string").fillna("").astype(str)


def _is_long(gdf: gpd.GeoDataFrame, ids: pd.Series, date_cols: list[str]) -> bool:
    """One row per site and assessment: one date column, site ids repeated at one point.

    Repeated ids at *different* points are a wide file with duplicate ids, not a long one.
    """
    if len(date_cols) != 1:
        return False
    ids = ids.reset_index(drop=True)
    repeated = (ids.duplicated(keep=False) & (ids != "")).to_numpy()
    if not repeated.any():
        return False
    xy = pd.DataFrame(
        {
            "id": ids[repeated].to_numpy(),
            "x": gdf.geometry.x.to_numpy()[repeated].round(7),
            "y": gdf.geometry.y.to_numpy()[repeated].round(7),
        }
    )
    return bool((xy.groupby("id")[["x", "y"]].nunique() == 1).all().all())


def _wide_from_long(
    gdf: gpd.GeoDataFrame, ids: pd.Series, dates: np.ndarray, classes: np.ndarray
) -> tuple[gpd.GeoSeries, pd.Series, np.ndarray, np.ndarray]:
    """Pivot a long table to one row per site with its assessments in date order."""
    table = pd.DataFrame(
        {
            "site": ids.to_numpy(),
            "date": dates[:, 0],
            "cls": classes[:, 0],
            "row": np.arange(len(ids)),
        }
    )
    table = table.sort_values(["site", "date", "row"], kind="stable")
    table["k"] = table.groupby("site", sort=False).cumcount()
    sites = pd.Index(table["site"].unique())
    i = sites.get_indexer(table["site"])
    k = table["k"].to_numpy()
    wide_dates = np.full((len(sites), k.max() + 1), np.datetime64("NaT"), dtype="datetime64[D]")
    wide_classes = np.full((len(sites), k.max() + 1), np.nan)
    wide_dates[i, k] = table["date"].to_numpy(dtype="datetime64[D]")
    wide_classes[i, k] = table["cls"].to_numpy()
    first_rows = table.drop_duplicates("site")["row"].to_numpy()
    geometry = gdf.geometry.iloc[first_rows].reset_index(drop=True)
    return geometry, pd.Series(sites.astype(str)), wide_dates, wide_classes


def read_sites(
    path: str | Path,
    fields: dict[str, Any] | None = None,
    damage_classes: Sequence[int] = DEFAULT_DAMAGE_CLASSES,
    class_map: ClassMap | None = None,
) -> Sites:
    """Read a CDA file (wide or long layout) and compute each site's first damage instance."""
    path = Path(path)
    fields = fields or {}
    gdf, layer = _read_points(path, fields)
    columns = [c for c in gdf.columns if c != "geometry"]
    date_cols, class_cols = find_groups(columns, fields, path)
    dates = np.stack(
        [parse_dates(gdf[c], path, c).to_numpy(dtype="datetime64[D]") for c in date_cols], axis=1
    )
    classes = np.stack([parse_classes(gdf[c], path, c, class_map) for c in class_cols], axis=1)
    ids = site_ids(gdf, fields)
    geometry = gdf.geometry.reset_index(drop=True)
    layout = "wide"
    if _is_long(gdf, ids, date_cols):
        geometry, ids, dates, classes = _wide_from_long(gdf, ids, dates, classes)
        layout = "long"
    frame = gpd.GeoDataFrame(
        {"site_id": ids.to_numpy(), **first_instance(dates, classes, damage_classes)},
        geometry=geometry.to_numpy(),
        crs=gdf.crs,
    )
    log.info(
        "%s: layer %s (%s layout), %d sites, date groups %s",
        path.name,
        layer,
        layout,
        len(frame),
        list(zip(date_cols, class_cols, strict=True)),
    )
    return Sites(
        frame=frame, source=path, layer=layer, date_columns=date_cols, class_columns=class_cols
    )


def _read_points(path: Path, fields: dict[str, Any]) -> tuple[gpd.GeoDataFrame, str]:
    """The damage-site point layer of the file, with a CRS, one point per row."""
    if not path.exists():
        raise InputFileError(f"{path}: UNOSAT file not found")
    dataset, layers = _vsi_path(path)
    layer = pick_layer(path, dataset, layers, fields.get("layer"))
    try:
        gdf = gpd.read_file(dataset, layer=layer, engine="pyogrio")
    except Exception as exc:
        raise InputFileError(f"{path}: cannot read layer {layer!r} ({exc})") from exc
    if gdf.empty:
        raise InputFileError(f"{path}: layer {layer!r} is empty (no damage sites)")
    if gdf.crs is None:
        raise InputFileError(f"{path}: layer {layer!r} has no CRS (a shapefile without its .prj?)")
    geom_types = set(gdf.geometry.geom_type.dropna())
    if not geom_types & {"Point", "MultiPoint"}:
        raise InputFileError(
            f"{path}: layer {layer!r} holds no point geometries (found "
            f"{sorted(geom_types) or 'none'}); polygon or grid (damage-density) assessments "
            f"are not supported; {SUPPORTED}"
        )
    gdf = gdf[gdf.geometry.geom_type.isin(["Point", "MultiPoint"])].copy()
    gdf["geometry"] = gdf.geometry.representative_point()
    return gdf, layer


def first_instance(
    dates: np.ndarray, classes: np.ndarray, damage_classes: Sequence[int]
) -> dict[str, np.ndarray]:
    """Per site: first damage date and class, last class, and the facts about NVD sites.

    ``first_any_damage`` is the first date in *any* damage class (not only the chosen ones) and
    ``last_nvd_date`` the latest "No Visible Damage" assessment: a site assessed NVD and not
    damaged by a date is a hard negative for a scene of that date.
    """
    n = len(dates)
    has_date = ~np.isnat(dates)
    damaged = np.isin(classes, list(damage_classes))
    first_date, first_class = _first(dates, classes, damaged & has_date)
    first_any, _ = _first(dates, classes, np.isin(classes, ANY_DAMAGE) & has_date)
    nvd = (classes == NO_VISIBLE_DAMAGE) & has_date
    last_nvd = np.where(nvd, dates, np.datetime64("0001-01-01")).max(axis=1)
    last_nvd[~nvd.any(axis=1)] = np.datetime64("NaT")
    assessed = ~np.isnan(classes)
    last_idx = np.where(
        assessed.any(axis=1), assessed.shape[1] - 1 - np.argmax(assessed[:, ::-1], axis=1), 0
    )
    valid_rows = ~np.isnat(first_date)
    return {
        "first_date": first_date,
        "first_class": first_class,
        "last_class": classes[np.arange(n), last_idx],
        "damaged_undated": (damaged & ~has_date).any(axis=1) & ~valid_rows,
        "first_any_damage": first_any,
        "last_nvd_date": last_nvd,
    }


def _first(
    dates: np.ndarray, classes: np.ndarray, use: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Earliest date (and its class) among the cells ``use`` selects, per row."""
    n = len(dates)
    first_date = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
    first_class = np.full(n, np.nan)
    rows = np.nonzero(use.any(axis=1))[0]
    if rows.size:
        masked = np.where(use, dates, np.datetime64("9999-12-31"))
        idx = np.argmin(masked, axis=1)
        first_date[rows] = dates[rows, idx[rows]]
        first_class[rows] = classes[rows, idx[rows]]
    return first_date, first_class
