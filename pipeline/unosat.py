"""Reading UNOSAT Comprehensive Damage Assessment (CDA) damage-site files.

UNOSAT ships points as zipped shapefiles, file geodatabases or GeoPackages, with one column group
per assessment date (``SensorDate``, ``Main_Damage_Site_Class``; later dates suffixed ``_2``,
``_3``...). Shapefiles truncate names to 10 characters (``SensorDa_1``, ``Main_Dam_1``: GDAL
numbers the *second* group ``_1``). Classes are codes or text; dates are dates, datetimes or
strings. This module turns any of these into one table: each site's point and the date and class
of the first assessment in which it is damaged.
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

from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

DATE_FULL = "SensorDate"
CLASS_FULL = "Main_Damage_Site_Class"
CLASS_NAMES = {1: "Destroyed", 2: "Severe Damage", 3: "Moderate Damage", 4: "Possible Damage",
               6: "No Visible Damage", 11: "Possible Damage from adjacent impact / debris"}
TEXT_CLASSES = {
    "destroyed": 1, "severe damage": 2, "severely damaged": 2, "moderate damage": 3,
    "moderately damaged": 3, "possible damage": 4, "possibly damaged": 4,
    "no visible damage": 6, "no damage": 6,
    "possible damage from adjacent impact / debris": 11,
    "possible damage from adjacent impact, debris": 11,
    "possible damage from adjacent impact": 11,
}
DEFAULT_DAMAGE_CLASSES = (1, 2, 3)


@dataclass
class Sites:
    """Damage sites with their first damage instance, in the file's CRS."""

    frame: gpd.GeoDataFrame   # columns: geometry, first_date, first_class, last_class
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
            raise PipelineError(f"{path}: not a readable zip file ({exc})") from exc
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
    raise PipelineError(f"{path}: cannot open as a vector dataset "
                        f"({errors[-1] if errors else 'no layers found'})")


def pick_layer(path: Path, dataset: str, layers: list[str], override: str | None) -> str:
    """The damage-site layer: the override, the only point layer, or the one named like it."""
    if override:
        if override not in layers:
            raise PipelineError(f"{path}: layer {override!r} not found; layers: {layers}")
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


def find_groups(columns: Sequence[str], overrides: dict[str, Any], source: Path
                ) -> tuple[list[str], list[str]]:
    """Pair date and class columns per assessment date, in date-group order."""
    def as_list(value: Any) -> list[str]:
        return [value] if isinstance(value, str) else list(value)

    if overrides.get("date") or overrides.get("class"):
        dates = as_list(overrides.get("date") or [])
        classes = as_list(overrides.get("class") or [])
        missing = [c for c in dates + classes if c not in columns]
        if missing or len(dates) != len(classes) or not dates:
            raise PipelineError(
                f"{source}: field overrides date={dates} class={classes} do not match the file "
                f"(missing: {missing}; one date column per class column needed); columns "
                f"present: {list(columns)}")
        return dates, classes
    date_by_group: dict[int, str] = {}
    class_by_group: dict[int, str] = {}
    for col in columns:
        if (g := _group_index(col, DATE_FULL)) is not None:
            date_by_group.setdefault(g, col)
        elif (g := _group_index(col, CLASS_FULL)) is not None:
            class_by_group.setdefault(g, col)
    groups = sorted(set(date_by_group) & set(class_by_group))
    if not groups:
        what = "class" if date_by_group else "date" if class_by_group else "date or class"
        raise PipelineError(
            f"{source}: no recognisable damage {what} columns (expected {DATE_FULL} and "
            f"{CLASS_FULL}, with _2, _3... per assessment date, or their 10-character "
            f"shapefile forms); columns present: {list(columns)}. Name them in the AOI file's "
            "labels.fields (date, class).")
    return [date_by_group[g] for g in groups], [class_by_group[g] for g in groups]


def parse_classes(values: pd.Series, source: Path, column: str) -> np.ndarray:
    """Class codes as float (NaN = not assessed) from codes or UNOSAT's text labels."""
    if pd.api.types.is_numeric_dtype(values):
        return values.astype(float).to_numpy()
    out = np.full(len(values), np.nan)
    bad: set[str] = set()
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() == "":
            continue
        text = str(v).strip()
        try:
            out[i] = float(text)
        except ValueError:
            code = TEXT_CLASSES.get(re.sub(r"\s+", " ", text.lower()))
            if code is None:
                bad.add(text)
            else:
                out[i] = code
    if bad:
        raise PipelineError(f"{source}: column {column} has unknown damage classes "
                            f"{sorted(bad)[:5]}; known: codes {sorted(CLASS_NAMES)} or "
                            f"{sorted(set(TEXT_CLASSES))}")
    return out


def parse_dates(values: pd.Series, source: Path, column: str) -> pd.Series:
    """Dates (NaT = none) from date, datetime or string columns.

    Slash dates are read day first (``05/06/2022`` is 5 June), UNOSAT's usual form.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        return pd.to_datetime(values).dt.tz_localize(None).dt.normalize() \
            if getattr(values.dt, "tz", None) else pd.to_datetime(values).dt.normalize()
    text = values.astype("string").str.strip().replace("", pd.NA)
    slash = text.str.match(r"^\d{1,2}/\d{1,2}/\d{4}", na=False)
    parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    if slash.any():
        parsed[slash] = pd.to_datetime(text[slash].str.slice(0, 10), dayfirst=True,
                                       errors="coerce", format="%d/%m/%Y")
    other = ~slash & text.notna()
    if other.any():
        parsed[other] = pd.to_datetime(text[other].str.replace("/", "-", regex=False),
                                       errors="coerce", format="mixed")
    failed = text.notna() & parsed.isna()
    if failed.any():
        raise PipelineError(f"{source}: column {column} has dates that cannot be read, e.g. "
                            f"{list(text[failed].head(3))}")
    return parsed.dt.normalize()


def read_sites(path: str | Path, fields: dict[str, Any] | None = None,
               damage_classes: Sequence[int] = DEFAULT_DAMAGE_CLASSES) -> Sites:
    """Read a CDA file and compute each site's first damage instance."""
    path = Path(path)
    fields = fields or {}
    if not path.exists():
        raise PipelineError(f"{path}: UNOSAT file not found")
    dataset, layers = _vsi_path(path)
    layer = pick_layer(path, dataset, layers, fields.get("layer"))
    try:
        gdf = gpd.read_file(dataset, layer=layer, engine="pyogrio")
    except Exception as exc:
        raise PipelineError(f"{path}: cannot read layer {layer!r} ({exc})") from exc
    if gdf.empty:
        raise PipelineError(f"{path}: layer {layer!r} is empty (no damage sites)")
    if gdf.crs is None:
        raise PipelineError(f"{path}: layer {layer!r} has no CRS (a shapefile without its .prj?)")
    geom_types = set(gdf.geometry.geom_type.dropna())
    if not geom_types & {"Point", "MultiPoint"}:
        raise PipelineError(f"{path}: layer {layer!r} holds no point geometries "
                            f"(found {sorted(geom_types) or 'none'}); UNOSAT damage sites are "
                            "points")
    gdf = gdf[gdf.geometry.geom_type.isin(["Point", "MultiPoint"])].copy()
    gdf["geometry"] = gdf.geometry.representative_point()
    columns = [c for c in gdf.columns if c != "geometry"]
    date_cols, class_cols = find_groups(columns, fields, path)
    dates = np.stack([parse_dates(gdf[c], path, c).to_numpy(dtype="datetime64[D]")
                      for c in date_cols], axis=1)
    classes = np.stack([parse_classes(gdf[c], path, c) for c in class_cols], axis=1)
    damaged = np.isin(classes, list(damage_classes))
    has_date = ~np.isnat(dates)
    masked = np.where(damaged & has_date, dates, np.datetime64("NaT"))
    first_date = np.full(len(gdf), np.datetime64("NaT"), dtype="datetime64[D]")
    first_class = np.full(len(gdf), np.nan)
    valid_rows = (damaged & has_date).any(axis=1)
    if valid_rows.any():
        idx = np.argmin(np.where(np.isnat(masked), np.datetime64("9999-12-31"), masked), axis=1)
        rows = np.nonzero(valid_rows)[0]
        first_date[rows] = dates[rows, idx[rows]]
        first_class[rows] = classes[rows, idx[rows]]
    assessed = ~np.isnan(classes)
    last_idx = np.where(assessed.any(axis=1), assessed.shape[1] - 1 - np.argmax(
        assessed[:, ::-1], axis=1), 0)
    last_class = classes[np.arange(len(gdf)), last_idx]
    frame = gpd.GeoDataFrame({"first_date": first_date, "first_class": first_class,
                              "last_class": last_class,
                              "damaged_undated": (damaged & ~has_date).any(axis=1)
                              & ~valid_rows},
                             geometry=gdf.geometry.to_numpy(), crs=gdf.crs)
    log.info("%s: layer %s, %d sites, date groups %s", path.name, layer, len(frame),
             list(zip(date_cols, class_cols, strict=True)))
    return Sites(frame=frame, source=path, layer=layer, date_columns=date_cols,
                 class_columns=class_cols)
