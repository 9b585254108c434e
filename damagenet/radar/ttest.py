"""The per-pixel t-test of PWTT: pre- and post-war moments of log backscatter, per relative orbit
and polarisation, the t statistic, and its combination over orbits and polarisations.

As PWTT's code computes it: with ``n``, mean ``m`` and standard deviation ``sd`` of each window
(``sd`` as Earth Engine's ``Reducer.stdDev``: divided by ``n``),

    s_p^2 = ((n_pre - 1) sd_pre^2 + (n_post - 1) sd_post^2) / (n_pre + n_post - 2)
    t     = |m_post - m_pre| / (s_p sqrt(1 / n_pre + 1 / n_post)).

The Welch option uses the sample variances ``s^2`` (divided by ``n - 1``) without pooling,
``t = |m_post - m_pre| / sqrt(s_pre^2 / n_pre + s_post^2 / n_post)``. A pixel is tested only
with ``n_pre >= 3`` and ``n_post >= 2`` observations; elsewhere, and where the denominator is
0, t is missing (NaN). Orbits are combined by the maximum (published) or by Stouffer's sum
weighted by ``sqrt(df)``, ``df = n_pre + n_post - 2`` (the current code's default), and the
polarisations by the maximum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_PRE = 3
MIN_POST = 2
COMBINE_MAX = "max"
COMBINE_STOUFFER = "stouffer"
COMBINES = (COMBINE_MAX, COMBINE_STOUFFER)


class WindowSums:
    """Running count, sum and sum of squares of one window's log backscatter, per pixel."""

    def __init__(self, shape: tuple[int, int]) -> None:
        self.n = np.zeros(shape, dtype=np.int16)  # at most 32767 acquisitions
        self.s = np.zeros(shape, dtype=np.float64)
        self.ss = np.zeros(shape, dtype=np.float64)

    def columns(self, cols: slice) -> WindowSums:
        """A view of some columns (to test a wide strip a tile at a time)."""
        view = WindowSums((0, 0))
        view.n, view.s, view.ss = self.n[:, cols], self.s[:, cols], self.ss[:, cols]
        return view

    def add(self, log_power: np.ndarray) -> None:
        valid = np.isfinite(log_power)
        x = np.where(valid, log_power, 0.0)
        self.n += valid
        self.s += x
        self.ss += x * x

    def moments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n``, mean and population variance (NaN where ``n`` is 0)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self.s / self.n
            var = np.maximum(self.ss / self.n - mean * mean, 0.0)
        return self.n, mean, var


@dataclass(frozen=True)
class OrbitTest:
    """One orbit and polarisation's t and degrees of freedom (NaN / 0 where untested)."""

    t: np.ndarray
    df: np.ndarray


def t_statistic(pre: WindowSums, post: WindowSums, welch: bool = False) -> OrbitTest:
    """The pooled (or Welch) t of one orbit and polarisation, NaN where not testable."""
    n1, m1, v1 = pre.moments()
    n2, m2, v2 = post.moments()
    ok = (n1 >= MIN_PRE) & (n2 >= MIN_POST)
    a, b = np.maximum(n1, 1).astype(np.float64), np.maximum(n2, 1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        if welch:
            # s^2 / n with s^2 = v n / (n - 1) the sample variance
            denom = np.sqrt(v1 / np.maximum(a - 1, 1) + v2 / np.maximum(b - 1, 1))
        else:
            pooled = ((a - 1) * v1 + (b - 1) * v2) / np.maximum(a + b - 2, 1)
            denom = np.sqrt(pooled) * np.sqrt(1 / a + 1 / b)
        t = np.abs(m2 - m1) / denom
    ok &= denom > 0
    df = np.where(ok, n1 + n2 - 2, 0)
    return OrbitTest(np.where(ok, t, np.nan), df)


class OrbitCombination:
    """One polarisation's t over orbits, folded in orbit by orbit: the running maximum, or
    Stouffer's ``sum(sqrt(df) t) / sqrt(sum(df))`` over the orbits that test a pixel."""

    def __init__(self, shape: tuple[int, int], method: str = COMBINE_MAX) -> None:
        if method not in COMBINES:
            raise ValueError(f"unknown orbit combination {method!r}")
        self.method = method
        stouffer = method == COMBINE_STOUFFER
        self.t = np.full((0, 0) if stouffer else shape, np.nan)
        self.num = np.zeros(shape if stouffer else (0, 0))
        self.den = np.zeros(shape if stouffer else (0, 0))

    def add(self, test: OrbitTest, cols: slice = slice(None)) -> None:
        if self.method == COMBINE_MAX:
            self.t[:, cols] = np.fmax(self.t[:, cols], test.t)
            return
        tested = test.df > 0
        df = test.df.astype(np.float64)
        self.num[:, cols] += np.where(tested, np.sqrt(df) * np.nan_to_num(test.t), 0.0)
        self.den[:, cols] += np.where(tested, df, 0.0)

    def result(self) -> np.ndarray:
        if self.method == COMBINE_MAX:
            return self.t
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.den > 0, self.num / np.sqrt(self.den), np.nan)


def combine_polarisations(per_pol: Sequence[np.ndarray]) -> np.ndarray:
    """The maximum over polarisations, ignoring a missing one."""
    return np.fmax.reduce(list(per_pol))
