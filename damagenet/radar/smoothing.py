"""PWTT's spatial smoothing of the t map: a 10 m focal median and circular means of 50, 100 and
150 m; T is the mean of the four layers.

A destroyed building is a few pixels of 10 m, and one pixel's t is noisy; PWTT averages the
median-filtered t over three neighbourhood sizes so that clusters of change stand out and
isolated speckle does not. Missing pixels (no test, outside the urban mask) take no part: each
circular mean is normalised by the valid pixels under the disc (Earth Engine's normalised
``Kernel.circle`` over a masked image), and T is missing where the median is.
"""

from __future__ import annotations

import math

import numpy as np

MEDIAN_RADIUS_M = 10.0
CIRCLE_RADII_M = (50.0, 100.0, 150.0)


def radius_px(metres: float, pixel_size: float) -> float:
    """A radius in pixels of the grid (PWTT's radii are in metres on a 10 m grid)."""
    return metres / pixel_size


def halo_px(pixel_size: float) -> int:
    """Pixels of context each side that the smoothing of one pixel reads."""
    median = max(1, round(radius_px(MEDIAN_RADIUS_M, pixel_size)))
    return median + math.floor(radius_px(max(CIRCLE_RADII_M), pixel_size))


def focal_median(a: np.ndarray, radius: int) -> np.ndarray:
    """Median of the valid pixels in each (2r+1)^2 square; NaN where none is valid."""
    h, w = a.shape
    padded = np.full((h + 2 * radius, w + 2 * radius), np.nan, dtype=np.float64)
    padded[radius : radius + h, radius : radius + w] = a
    size = 2 * radius + 1
    stack = np.stack([padded[dy : dy + h, dx : dx + w] for dy in range(size) for dx in range(size)])
    stack.sort(axis=0)  # NaN sort last
    k = np.isfinite(stack).sum(axis=0)
    lo = np.take_along_axis(stack, np.maximum((k - 1) // 2, 0)[None], axis=0)[0]
    hi = np.take_along_axis(stack, (k // 2)[None], axis=0)[0]
    return np.where(k > 0, (lo + hi) / 2, np.nan)


def disc_half_widths(radius: float) -> list[tuple[int, int]]:
    """``(dy, half width)`` of each row of the disc ``dx^2 + dy^2 <= r^2``."""
    r = math.floor(radius)
    return [
        (dy, math.floor(math.sqrt(radius * radius - dy * dy) + 1e-9)) for dy in range(-r, r + 1)
    ]


def disc_sum(a: np.ndarray, radius: float) -> np.ndarray:
    """Sum of ``a`` over the disc around each pixel, zeros outside (running row sums, exact
    in float64 and the same whatever the block)."""
    h, w = a.shape
    r = math.floor(radius)
    cum = np.zeros((h + 2 * r, w + 2 * r + 1), dtype=np.float64)
    cum[r : r + h, r + 1 : r + 1 + w] = a
    np.cumsum(cum, axis=1, out=cum)
    out = np.zeros((h, w), dtype=np.float64)
    cols = np.arange(w) + r
    for dy, half in disc_half_widths(radius):
        rows = cum[r + dy : r + dy + h]
        out += rows[:, cols + half + 1] - rows[:, cols - half]
    return out


def circular_mean(a: np.ndarray, radius: float) -> np.ndarray:
    """Mean of the valid pixels of ``a`` within ``radius`` pixels; NaN where none is valid."""
    valid = np.isfinite(a)
    num = disc_sum(np.where(valid, a, 0.0), radius)
    den = disc_sum(valid.astype(np.float64), radius)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def pwtt_smooth(t: np.ndarray, pixel_size: float, built: np.ndarray | None = None) -> np.ndarray:
    """T = mean of the focal median of ``t`` and its three circular means.

    ``built`` (optional, same shape) is PWTT's urban mask, applied after the median and before
    the circular means, as its code does.
    """
    med = focal_median(t, max(1, round(radius_px(MEDIAN_RADIUS_M, pixel_size))))
    if built is not None:
        med = np.where(built, med, np.nan)
    layers = [circular_mean(med, radius_px(r, pixel_size)) for r in CIRCLE_RADII_M]
    return (med + layers[0] + layers[1] + layers[2]) / 4.0
