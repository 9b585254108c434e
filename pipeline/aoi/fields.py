"""Parsers of an AOI file's properties: dates, date windows and the label source.

Each accepts the forms GIS tools save back (QGIS may write a list as text, a date as
``YYYY/MM/DD`` or a midnight datetime) and raises ``ValueError`` naming the value it refused.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

#: Day of the full-scale invasion; the study's *before* scenes all precede it.
INVASION_DATE = dt.date(2022, 2, 24)
#: The study's earliest *after* date.
AFTER_EARLIEST = dt.date(2022, 3, 1)
#: Default before window of a new AOI: the 2021 growing season, before the invasion.
DEFAULT_BEFORE = "2021-05-01/2021-09-30"
#: Default after window of a new AOI: the last days up to today, so "a city hit last week"
#: needs no dates.
DEFAULT_AFTER_DAYS = 30
#: ``unosat_aoi`` value of an AOI outside every UNOSAT assessment area.
NO_UNOSAT_AREA = "none"
LABEL_FIELD_ROLES = frozenset({"site_id", "date", "class", "status", "layer"})
#: Characters a shell would interpret; label paths reach workflow commands.
UNSAFE_PATH_CHARS = frozenset("$`;&|<>\"'\\\n\r")


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
    #: ``{"7": 1}``; validated by :func:`pipeline.labels.unosat_values.class_map_from`.
    class_map: dict[str, Any] = field(default_factory=dict)


def parse_date(value: Any) -> dt.date:
    """Parse ``YYYY-MM-DD`` strictly; anything else is refused with the value shown."""
    if isinstance(value, dt.date):
        return value
    m = (
        re.fullmatch(
            r"(\d{4})[-/](\d{2})[-/](\d{2})(?:[T ]00:00(?::00(?:\.0+)?)?Z?)?", value.strip()
        )
        if isinstance(value, str)
        else None
    )
    if m is None:
        raise ValueError(f"unknown date format {value!r} (expected YYYY-MM-DD)")
    try:
        return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError as exc:
        raise ValueError(f"invalid date {value!r} ({exc})") from exc


def parse_window(value: Any) -> DateWindow:
    """A date, a ``[start, end]`` pair, a ``start/end`` string or a ``YYYY-MM`` month."""
    if isinstance(value, str):
        return _parse_window_text(value)
    if isinstance(value, list | tuple):
        if len(value) != 2:
            raise ValueError(f"a date window needs [start, end], got {value!r}")
        start, end = parse_date(value[0]), parse_date(value[1])
        if end < start:
            raise ValueError(f"window ends ({end}) before it starts ({start})")
        return DateWindow(start, end)
    raise ValueError(f"unknown date format {value!r} (expected YYYY-MM-DD or [start, end])")


def _parse_window_text(value: str) -> DateWindow:
    text = value.strip()
    if text.startswith("["):
        try:
            return parse_window(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ValueError(f"unreadable date window {value!r}") from exc
    if re.fullmatch(r"[^/]{8,}/[^/]{8,}", text):  # ISO 8601 interval START/END
        return parse_window(text.split("/", 1))
    if re.fullmatch(r"\d{4}-\d{2}", text):
        year, month = map(int, text.split("-"))
        last = calendar.monthrange(year, month)[1]
        return DateWindow(dt.date(year, month, 1), dt.date(year, month, last))
    day = parse_date(text)
    return DateWindow(day, day)


def parse_labels(value: Any) -> LabelSource:
    """The ``labels`` property: an object with a ``path``, or a bare path string."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = {"path": value}
        if isinstance(value, str):
            value = {"path": value}
    if not isinstance(value, dict) or not isinstance(value.get("path"), str):
        raise ValueError("labels must be an object with at least a 'path' string")
    check_label_path(value["path"])
    fields = value.get("fields") or {}
    if isinstance(fields, str):
        fields = json.loads(fields)
    if not isinstance(fields, dict):
        raise ValueError("labels.fields must be an object mapping field roles to column names")
    unknown = set(fields) - LABEL_FIELD_ROLES
    if unknown:
        raise ValueError(f"labels.fields has unknown keys {sorted(unknown)}")
    class_map = value.get("class_map") or {}
    if not isinstance(class_map, dict):
        raise ValueError(
            "labels.class_map must be an object mapping codes or texts found in "
            'the file to UNOSAT codes, e.g. {"7": 1}'
        )
    url = value.get("url")
    if url is not None and not str(url).startswith("https://"):
        raise ValueError(f"labels.url must be an https:// address, got {url!r}")
    return LabelSource(
        path=value["path"],
        url=url,
        product=value.get("product"),
        fields=dict(fields),
        class_map={str(k): v for k, v in class_map.items()},
    )


def check_label_path(path: str) -> None:
    """Refuse paths a shell would interpret, and relative paths that climb out of the project."""
    bad = sorted(UNSAFE_PATH_CHARS & set(path))
    if bad:
        raise ValueError(
            f"labels.path {path!r} contains characters a shell interprets "
            f"({' '.join(repr(c) for c in bad)})"
        )
    if not path.strip():
        raise ValueError("labels.path is empty")
    pure = PurePosixPath(path)
    if not pure.is_absolute() and ".." in pure.parts:
        raise ValueError(
            f"labels.path {path!r} leaves the project folder; give a path inside "
            "it or an absolute path"
        )
