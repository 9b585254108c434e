"""UNOSAT damage classes and assessment dates in every spelling the published files use.

Classes come as codes (1 Destroyed, 2 Severe, 3 Moderate, 4 Possible, 6 No Visible Damage,
11 Possible Damage from adjacent impact / debris) or as text (``Destroyed``, ``Severe Damage``,
``Severely Damaged``, ``1 - Destroyed``...). A code or text the reader does not know is an error
listing what was found, never silently "undamaged", unless the AOI file's ``labels.class_map``
or ``pipeline labels --class-map`` maps it to one of the codes (or to ``none``: not assessed).

Dates come as dates, datetimes, ISO strings, day-first ``05/05/2022`` strings, ``20220505``
numbers, or (ArcGIS feature-service exports) epoch milliseconds such as ``1683676800000``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import InputFileError, PipelineUsageError

CLASS_NAMES = {
    1: "Destroyed",
    2: "Severe Damage",
    3: "Moderate Damage",
    4: "Possible Damage",
    6: "No Visible Damage",
    11: "Possible Damage from adjacent impact / debris",
}
NO_VISIBLE_DAMAGE = 6
#: Every damage class (any code but "No Visible Damage").
ANY_DAMAGE = tuple(c for c in CLASS_NAMES if c != NO_VISIBLE_DAMAGE)
TEXT_CLASSES = {
    "destroyed": 1,
    "severe damage": 2,
    "severely damaged": 2,
    "moderate damage": 3,
    "moderately damaged": 3,
    "possible damage": 4,
    "possibly damaged": 4,
    "no visible damage": 6,
    "no damage": 6,
    "possible damage from adjacent impact debris": 11,
    "possible damage from adjacent impact": 11,
    "possible damage adjacent impact debris": 11,
}
CODE_AFFIX = re.compile(r"^\s*(\d+)\s*[-.:)]\s*|\s*\(\s*(\d+)\s*\)\s*$")
EPOCH_MS_MIN = 1e11  # 1973 in epoch milliseconds; larger numbers are not yyyymmdd
ClassMap = dict[str, int | None]


def normalise_text(text: str) -> str:
    """``'1 - Severe_Damage '`` -> ``'severe damage'``: case, separators and code affixes off."""
    text = CODE_AFFIX.sub("", str(text))
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def _map_key(key: object) -> str:
    text = str(key).strip()
    try:
        return str(int(float(text)))
    except ValueError:
        return normalise_text(text)


def class_map_from(mapping: Mapping[Any, Any] | None, source: str) -> ClassMap:
    """Validate a ``class_map``: keys are codes or texts, values known codes or None."""
    out: ClassMap = {}
    for key, value in (mapping or {}).items():
        if value is None or str(value).strip().lower() in ("none", "null", ""):
            out[_map_key(key)] = None
            continue
        try:
            code = int(str(value).strip())
        except ValueError:
            code = -1
        if code not in CLASS_NAMES:
            raise PipelineUsageError(
                f"{source}: class_map maps {key!r} to {value!r}; targets must be UNOSAT codes "
                f"{sorted(CLASS_NAMES)} or none (not assessed)"
            )
        out[_map_key(key)] = code
    return out


def parse_class_map(text: str) -> ClassMap:
    """``--class-map 7=1,Heavily damaged=2,5=none``."""
    pairs = [p for p in text.split(",") if p.strip()]
    if not pairs or any("=" not in p for p in pairs):
        raise PipelineUsageError(
            f"--class-map {text!r}: expected FOUND=CODE pairs separated by "
            "commas, e.g. 7=1,Heavily damaged=2,5=none"
        )
    return class_map_from(dict(p.split("=", 1) for p in pairs), "--class-map")


def _code_of(value: object, class_map: ClassMap) -> tuple[float, str | None]:
    """(code or NaN, the unknown spelling if any) of one cell."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return np.nan, None
    text = str(value).strip()
    if text == "":
        return np.nan, None
    key = _map_key(text)
    if key in class_map:
        mapped = class_map[key]
        return (np.nan if mapped is None else float(mapped)), None
    if key.isdigit():
        code = int(key)
        return (float(code), None) if code in CLASS_NAMES else (np.nan, key)
    named = TEXT_CLASSES.get(key)
    return (float(named), None) if named is not None else (np.nan, text)


def parse_classes(
    values: pd.Series, source: Path, column: str, class_map: ClassMap | None = None
) -> np.ndarray:
    """Class codes as float (NaN = not assessed); unknown codes or texts are refused."""
    class_map = class_map or {}
    out = np.full(len(values), np.nan)
    unknown: Counter[str] = Counter()
    for i, v in enumerate(values.tolist()):
        out[i], bad = _code_of(v, class_map)
        if bad is not None:
            unknown[bad] += 1
    if unknown:
        found = Counter(
            str(v).strip()
            for v in values.tolist()
            if v is not None and not pd.isna(v) and str(v).strip()
        )
        raise InputFileError(
            f"{source}: column {column} has damage classes this reader does not know: "
            f"{dict(sorted(unknown.items()))} (classes found: {dict(sorted(found.items()))}); "
            f"known: codes {sorted(CLASS_NAMES)} or {sorted(CLASS_NAMES.values())}. Map them "
            "with labels.class_map in the AOI file or --class-map (e.g. 7=1 or 7=none)"
        )
    return out


def parse_dates(values: pd.Series, source: Path, column: str) -> pd.Series:
    """Dates (NaT = none) from dates, datetimes, strings, yyyymmdd or epoch milliseconds.

    Slash dates are read day first (``05/06/2022`` is 5 June), UNOSAT's usual form.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.to_datetime(values)
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
        return parsed.dt.normalize()
    if pd.api.types.is_numeric_dtype(values):
        return _numeric_dates(values.astype(float), source, column)
    text = values.astype("string").str.strip().replace("", pd.NA)
    parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    digits = text.str.fullmatch(r"\d{8}|\d{11,14}", na=False)
    if digits.any():
        parsed[digits] = _numeric_dates(text[digits].astype(float), source, column)
    slash = text.str.match(r"^\d{1,2}/\d{1,2}/\d{4}", na=False)
    if slash.any():
        parsed[slash] = pd.to_datetime(
            text[slash].str.slice(0, 10), dayfirst=True, errors="coerce", format="%d/%m/%Y"
        )
    other = ~slash & ~digits & text.notna()
    if other.any():
        iso = pd.to_datetime(
            text[other].str.replace("/", "-", regex=False),
            errors="coerce",
            format="mixed",
            utc=True,
        )
        parsed[other] = iso.dt.tz_localize(None)
    failed = text.notna() & parsed.isna()
    if failed.any():
        raise InputFileError(
            f"{source}: column {column} has dates that cannot be read, e.g. "
            f"{list(text[failed].head(3))}"
        )
    return parsed.dt.normalize()


def _numeric_dates(values: pd.Series, source: Path, column: str) -> pd.Series:
    """Epoch milliseconds (ArcGIS exports) or yyyymmdd numbers."""
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    ms = values >= EPOCH_MS_MIN
    ymd = values.between(19000101, 21001231)
    out[ms] = pd.to_datetime(values[ms], unit="ms")
    out[ymd] = pd.to_datetime(
        values[ymd].astype("int64").astype(str), format="%Y%m%d", errors="coerce"
    )
    failed = values.notna() & out.isna()
    if failed.any():
        raise InputFileError(
            f"{source}: column {column} has numbers that are neither epoch milliseconds nor "
            f"yyyymmdd dates, e.g. {list(values[failed].head(3))}"
        )
    return out.dt.normalize()
