"""PWTT's speckle filter: the Lee minimum-mean-square-error filter, 3 x 3, five looks.

A single Sentinel-1 image's backscatter is multiplicative noise around the true value (a
log-intensity standard deviation near 0.5 at five looks); the t-test compares means and
variances over time, so each image is first filtered the way PWTT's Earth Engine code does
(``lee_filter`` in ``oballinger/PWTT``): with the 3 x 3 neighbourhood's mean ``m`` and
variance ``v`` (population variance, as Earth Engine's ``Reducer.variance``) and the speckle's
relative variance ``eta^2 = 1 / ENL``,

    v_x = (v - m^2 eta^2) / (1 + eta^2),   b = max(v_x / v, 0),   out = (1 - b) |m| + b z.

Pixels without an observation (NaN, or power <= 0, whose logarithm is undefined) take no part
in their neighbours' statistics and stay missing; where the neighbourhood is constant (v = 0)
the weight is 0 and the output the mean.
"""

from __future__ import annotations

import numpy as np

#: Equivalent number of looks PWTT assumes for IW GRD.
ENL = 5.0


def box3(a: np.ndarray) -> np.ndarray:
    """Sum of each pixel's 3 x 3 neighbourhood, zeros outside the array (separable)."""
    rows = a.copy()
    rows[1:] += a[:-1]
    rows[:-1] += a[1:]
    out = rows.copy()
    out[:, 1:] += rows[:, :-1]
    out[:, :-1] += rows[:, 1:]
    return out


def observed(power: np.ndarray) -> np.ndarray:
    """Pixels holding an observation usable on a log scale."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(power) & (power > 0)


def lee_filter(power: np.ndarray, enl: float = ENL) -> np.ndarray:
    """Lee-filtered linear power of one image block (rows, cols); NaN where unobserved.

    Statistics are taken in float64; the block's outer ring sees only its inner neighbours, so
    callers pass a one-pixel halo and keep the interior.
    """
    valid = observed(power)
    z = np.where(valid, power, 0.0).astype(np.float64)
    n = box3(valid.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = box3(z) / n
        var = np.maximum(box3(z * z) / n - mean * mean, 0.0)
        eta2 = 1.0 / enl
        var_x = (var - mean * mean * eta2) / (1.0 + eta2)
        b = np.where(var > 0, var_x / var, 0.0)
    b = np.maximum(b, 0.0)
    out = (1.0 - b) * np.abs(mean) + b * z
    return np.where(valid, out, np.nan)
