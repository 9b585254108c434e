"""The radar's own pre-war variation: PWTT run inside the pre window, where no war happened.

The fused map (``damagenet fuse``) standardises T with how T behaves where nothing changed.
The store holds only the pre-war and post windows, so the no-war test is made inside the pre
window: per relative orbit, as many acquisitions as the orbit has in the post window (the same
degrees of freedom), taken from the same season one or more whole years before the post window
(frost, crops and soil moisture touch both alike), are tested against the orbit's other
pre-window acquisitions, and the result is filtered, combined and smoothed exactly as the map.
Its mean and standard deviation over the tested pixels (within the urban mask, if given) are
the null the fused map uses; they are recorded in the T map's tags and summary.

What it assumes: the pre window holds no change of its own (no war, few demolitions), and a
test with a slightly shorter reference period behaves like the real one. Where the season
cannot be matched (a pre window shorter than a year), the last acquisitions of the pre window
stand in, and the summary says so.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from damagenet.errors import InputFileError
from damagenet.radar.store import OrbitStack, RadarStore
from damagenet.radar.stream import BuiltRows, TestOptions, pwtt_rows, testable
from damagenet.radar.ttest import MIN_PRE

#: Tags of the T map that carry the null (read by ``damagenet fuse``).
TAG_MEAN = "NULL_T_MEAN"
TAG_SD = "NULL_T_SD"
TAG_TEST = "NULL_TEST"


@dataclass(frozen=True)
class RadarNull:
    """T's mean and standard deviation where no war happened, and how that test was made."""

    mean: float
    sd: float
    pixels: int
    test: str
    pseudo_post: dict[int, list[str]]

    def tags(self) -> dict[str, str]:
        return {TAG_MEAN: f"{self.mean:.6g}", TAG_SD: f"{self.sd:.6g}", TAG_TEST: self.test}

    def summary(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "sd": self.sd,
            "pixels": self.pixels,
            "test": self.test,
            "pseudo_post_acquisitions": {str(k): v for k, v in self.pseudo_post.items()},
        }


def season_start(store: RadarStore) -> dt.date | None:
    """The post window's start moved back by whole years into the pre window, if it fits."""
    start = store.post.start
    for years in range(1, 100):
        moved = dt.date(start.year - years, start.month, min(start.day, 28))
        if moved < store.pre.start:
            return None
        if moved <= store.pre.end:
            return moved
    return None


def null_stacks(store: RadarStore) -> tuple[list[OrbitStack], bool]:
    """Per orbit, the pseudo-post (``k`` pre acquisitions from the matched season, ``k`` the
    orbit's post count) and the pseudo-pre (its other pre acquisitions); whether the season
    was matched."""
    times = np.asarray(store.ds["time"].values, dtype="datetime64[ns]")
    start = season_start(store)
    matched = start is not None
    out = []
    for stack in filter(testable, store.orbits):
        k, pre = len(stack.post), list(stack.pre)  # time indices, in time order
        later = [] if start is None else [i for i in pre if times[i] >= np.datetime64(start)]
        if len(later) >= k:
            chosen = later[:k]
        else:
            chosen, matched = pre[-k:], False
        out.append(replace(stack, pre=tuple(i for i in pre if i not in chosen), post=tuple(chosen)))
    return out, matched


class Moments:
    """Running count, sum and sum of squares of the finite values seen."""

    def __init__(self) -> None:
        self.n, self.s, self.ss = 0, 0.0, 0.0

    def add(self, values: np.ndarray) -> None:
        x = values[np.isfinite(values)].astype(np.float64)
        self.n += x.size
        self.s += float(x.sum())
        self.ss += float((x * x).sum())

    def mean_sd(self) -> tuple[float, float]:
        mean = self.s / self.n
        return mean, float(np.sqrt(max(self.ss / self.n - mean * mean, 0.0)))


def radar_null(
    store: RadarStore, opts: TestOptions, strip_rows: int, built: BuiltRows | None = None
) -> RadarNull:
    """Run the no-war test over the store and summarise its T (see the module docstring)."""
    stacks, matched = null_stacks(store)
    usable = [s for s in stacks if testable(s)]
    if not usable:
        raise InputFileError(
            f"{store.path}: no orbit keeps {MIN_PRE} pre-window acquisitions once its post "
            "count is set aside for the pre-war null test; lengthen the pre window or map "
            "without --null"
        )
    times = np.asarray(store.ds["time"].values, dtype="datetime64[D]")
    pseudo_post = {s.orbit: [str(times[i]) for i in s.post] for s in usable}
    moments = Moments()
    for rows in pwtt_rows(replace(store, orbits=usable), opts, strip_rows, built):
        moments.add(rows.t)
    if moments.n < 2:
        raise InputFileError(f"{store.path}: the pre-war null test tested no pixel")
    mean, sd = moments.mean_sd()
    how = "same season, whole years before the post window" if matched else "end of pre window"
    test = f"per orbit, n_post pre-window acquisitions ({how}) against the other pre-window ones"
    return RadarNull(mean, sd, moments.n, test, pseudo_post)
