"""One radar acquisition of an AOI, and the pre and post date windows it is taken from.

Every source hands the store the same thing: a list of :class:`Acquisition`, each one pass of
one relative orbit on one day (its slices already mosaicked), with a reader that returns its VV
and VH linear power on the AOI grid. Reading is deferred, so the store can run the readers as
dask tasks, chunk by chunk, and only what the AOI covers is ever fetched.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from contract import radar
from pipeline.aoi import AOI, DateWindow
from pipeline.aoi.fields import parse_window
from pipeline.errors import InputFileError, PipelineUsageError

#: Shortest post window by default: PWTT's post window is one to two months, and an AOI's
#: *after* date is often a single day, which holds at most one acquisition per orbit.
MIN_POST_DAYS = 30
#: Reader of one acquisition: (2, H, W) float32, VV then VH, linear power, NaN = no data.
Reader = Callable[[], np.ndarray]


@dataclass(frozen=True)
class Acquisition:
    """One pass of one relative orbit on one day over the AOI."""

    start: dt.datetime  # UTC, the earliest slice's start
    orbit: int
    orbit_state: str  # ascending | descending
    platform: str  # sentinel-1a ...
    read: Reader = field(compare=False, repr=False)
    items: tuple[dict[str, Any], ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.orbit_state not in radar.ORBIT_STATES:
            raise InputFileError(
                f"orbit state {self.orbit_state!r} is none of {list(radar.ORBIT_STATES)}"
            )

    @property
    def key(self) -> tuple[int, dt.date]:
        return self.orbit, self.start.date()


def default_pre() -> DateWindow:
    """The twelve months before the war's start (PWTT's reference period)."""
    war = dt.date.fromisoformat(radar.WAR_START)
    return DateWindow(war.replace(year=war.year - 1), war - dt.timedelta(days=1))


def default_post(aoi: AOI) -> DateWindow:
    """The AOI's *after* window, at least :data:`MIN_POST_DAYS` long from its start."""
    after = aoi.after
    end = max(after.end, after.start + dt.timedelta(days=MIN_POST_DAYS - 1))
    return DateWindow(after.start, end)


def window_arg(text: str) -> DateWindow:
    """``START/END`` (or a month ``YYYY-MM``) from the command line; bad text is a usage error."""
    try:
        return parse_window(text)
    except ValueError as exc:
        raise PipelineUsageError(f"date window {text!r}: {exc}") from exc


def check_windows(pre: DateWindow, post: DateWindow) -> None:
    """The post window must start after the pre window ends: PWTT compares the two."""
    if post.start <= pre.end:
        raise PipelineUsageError(f"post window {post} does not start after the pre window {pre}")


def window_text(window: DateWindow) -> str:
    """``YYYY-MM-DD/YYYY-MM-DD`` (end inclusive), the store's attribute form."""
    return f"{window.start.isoformat()}/{window.end.isoformat()}"


def in_window(when: dt.datetime, window: DateWindow) -> bool:
    return window.start <= when.astimezone(dt.UTC).date() <= window.end


def normalise_platform(text: object) -> str:
    """``SENTINEL-1A``, ``S1A``, ``sentinel-1a`` -> ``sentinel-1a``; anything else refused."""
    value = str(text).strip().lower().replace("_", "-")
    if value.startswith("s1") and len(value) == 3:
        value = "sentinel-1" + value[2]
    if value not in ("sentinel-1a", "sentinel-1b", "sentinel-1c", "sentinel-1d"):
        raise InputFileError(f"platform {text!r} is not a Sentinel-1 satellite")
    return value


def normalise_state(text: object) -> str:
    value = str(text).strip().lower()
    if value not in radar.ORBIT_STATES:
        raise InputFileError(f"orbit state {text!r} is none of {list(radar.ORBIT_STATES)}")
    return value


def first_valid(layers: Iterable[np.ndarray]) -> np.ndarray:
    """Mosaic of (2, H, W) layers: each pixel from the first layer with data there.

    Consecutive slices of one pass overlap by a few lines; their values there are the same
    measurement, so keeping the first is exact and order-stable.
    """
    out: np.ndarray | None = None
    for layer in layers:
        out = layer if out is None else np.where(np.isnan(out), layer, out)
    if out is None:
        raise ValueError("no layer to mosaic")
    return out.astype(np.float32)


def sorted_series(acquisitions: Sequence[Acquisition]) -> list[Acquisition]:
    """By time, then orbit; two acquisitions of one orbit and day are a source's bug."""
    out = sorted(acquisitions, key=lambda a: (a.start, a.orbit))
    keys = [a.key for a in out]
    if len(set(keys)) != len(keys):
        raise InputFileError("two acquisitions of one relative orbit on one day; mosaic them")
    return out


def require_both(
    acquisitions: Sequence[Acquisition], pre: DateWindow, post: DateWindow, where: str
) -> None:
    """Refuse a series with no acquisition in one of its windows, naming where it was sought."""
    for name, window in (("pre", pre), ("post", post)):
        if not any(in_window(a.start, window) for a in acquisitions):
            raise InputFileError(
                f"{where}: no Sentinel-1 IW acquisition with VV and VH over the AOI in the "
                f"{name} window {window}; widen it with --{name}"
            )
