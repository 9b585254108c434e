"""PWTT's arithmetic against a second implementation written here straight from the formulas,
one pixel at a time with plain Python loops (no shared code with ``damagenet.radar``).

The map is computed in strips of four rows from a store chunked four by four, so strip edges,
the speckle filter's and the smoothing's context across them, missing observations and
untestable pixels are all exercised.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
from support.cli import run_cli as _run_cli
from support.radar_stores import make_store, schedule, speckled

from damagenet.radar.pwtt_map import PwttOptions, pwtt_map

H, W = 22, 19
ORBITS = {21: (5, 3), 94: (4, 2), 167: (2, 4)}  # orbit 167 has too few pre acquisitions
ENL = 5.0


def run_cli(argv: list[str]) -> int:
    """``damagenet pwtt ARGS`` through the real command line (parser errors are exit 2)."""
    return _run_cli(["damagenet", *argv])


def lee_at(img: np.ndarray, i: int, j: int) -> float:
    """Lee MMSE value of pixel (i, j): mean and population variance of the valid 3 x 3."""
    z = img[i, j]
    if not (math.isfinite(z) and z > 0):
        return math.nan
    vals = [
        img[a, b]
        for a in range(i - 1, i + 2)
        for b in range(j - 1, j + 2)
        if 0 <= a < img.shape[0]
        and 0 <= b < img.shape[1]
        and math.isfinite(img[a, b])
        and img[a, b] > 0
    ]
    m = sum(vals) / len(vals)
    v = sum((x - m) ** 2 for x in vals) / len(vals)
    eta2 = 1 / ENL
    if v <= 0:
        return m
    b = max((v - m * m * eta2) / (1 + eta2) / v, 0.0)
    return (1 - b) * abs(m) + b * z


def moments(xs: list[float]) -> tuple[int, float, float]:
    n = len(xs)
    m = sum(xs) / n if n else math.nan
    return n, m, (sum((x - m) ** 2 for x in xs) / n if n else math.nan)


def t_at(stack, times, i, j, welch):
    """(t, df) of one orbit and polarisation at (i, j); t NaN where not testable."""
    pre = [math.log(v) for v in (lee_at(stack[k], i, j) for k in times[0]) if math.isfinite(v)]
    post = [math.log(v) for v in (lee_at(stack[k], i, j) for k in times[1]) if math.isfinite(v)]
    (n1, m1, v1), (n2, m2, v2) = moments(pre), moments(post)
    if n1 < 3 or n2 < 2:
        return math.nan, 0
    if welch:
        denom = math.sqrt(v1 * n1 / (n1 - 1) / n1 + v2 * n2 / (n2 - 1) / n2)  # s^2 / n
    else:
        sp = math.sqrt(((n1 - 1) * v1 + (n2 - 1) * v2) / (n1 + n2 - 2))
        denom = sp * math.sqrt(1 / n1 + 1 / n2)
    return (abs(m2 - m1) / denom if denom > 0 else math.nan), n1 + n2 - 2


def raw_t(data, groups, welch=False, stouffer=False) -> np.ndarray:
    """Max over orbits (or Stouffer), then max over polarisations, every pixel."""
    out = np.full((H, W), np.nan)
    for i in range(H):
        for j in range(W):
            per_pol = []
            for stack in data:
                tests = [t_at(stack, g, i, j, welch) for g in groups]
                good = [(t, df) for t, df in tests if math.isfinite(t)]
                if not good:
                    continue
                if stouffer:
                    per_pol.append(
                        sum(math.sqrt(df) * t for t, df in good)
                        / math.sqrt(sum(df for _, df in good))
                    )
                else:
                    per_pol.append(max(t for t, _ in good))
            if per_pol:
                out[i, j] = max(per_pol)
    return out


def smooth_at(t: np.ndarray, i: int, j: int) -> float:
    """Mean of the 3 x 3 valid median and the valid means within 5, 10 and 15 px of (i, j)."""

    def median(a, b):
        vals = sorted(
            t[x, y]
            for x in range(a - 1, a + 2)
            for y in range(b - 1, b + 2)
            if 0 <= x < H and 0 <= y < W and math.isfinite(t[x, y])
        )
        if not vals:
            return math.nan
        k = len(vals)
        return (vals[(k - 1) // 2] + vals[k // 2]) / 2

    med = np.array([[median(a, b) for b in range(W)] for a in range(H)])
    if not math.isfinite(med[i, j]):
        return math.nan
    layers = [med[i, j]]
    for r in (5, 10, 15):
        vals = [
            med[x, y]
            for x in range(H)
            for y in range(W)
            if (x - i) ** 2 + (y - j) ** 2 <= r * r and math.isfinite(med[x, y])
        ]
        layers.append(sum(vals) / len(vals))
    return sum(layers) / 4


@pytest.fixture(scope="module")
def town(tmp_path_factory):
    """A store with a damaged block (post-war VV up, VH down), a swath gap and a dead pixel."""
    rng = np.random.default_rng(7)
    times, orbits = schedule(ORBITS)
    n = len(times)
    vv, vh = speckled(rng, (n, H, W), 0.3), speckled(rng, (n, H, W), 0.06)
    post = times >= np.datetime64("2022-03-01")
    vv[np.ix_(post, range(6, 12), range(5, 10))] *= 3.0
    vh[np.ix_(post, range(6, 12), range(5, 10))] *= 0.5
    vv[0, :, :4] = vh[0, :, :4] = np.nan  # the first pass misses the western columns
    vv[2, 3, 3] = 0.0  # no power: no logarithm
    path = make_store(
        tmp_path_factory.mktemp("arith") / "town.zarr", vv, vh, times, orbits, chunk=4
    )
    groups = []
    for orbit in sorted(ORBITS):
        mine = orbits == orbit
        groups.append((np.flatnonzero(mine & ~post).tolist(), np.flatnonzero(mine & post).tolist()))
    data = [vv.astype(np.float64), vh.astype(np.float64)]
    return path, data, groups


PIXELS = [(0, 0), (0, 3), (3, 3), (8, 7), (11, 9), (12, 10), (21, 18), (15, 0), (4, 17)]


def _read(path):
    with rasterio.open(path) as src:
        return src.read(1, masked=True).filled(np.nan)


@pytest.mark.parametrize(("welch", "stouffer"), [(False, False), (True, False), (False, True)])
def test_unsmoothed_t_matches_formulas(town, tmp_path, welch, stouffer):
    path, data, groups = town
    out = tmp_path / "town_pwtt.tif"
    opts = PwttOptions(smoothing="none", welch=welch, stouffer=stouffer, strip_rows=4)
    pwtt_map(path, out, opts)
    got, want = _read(out), raw_t(data, groups, welch, stouffer)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-5)
    assert np.isfinite(want).all()  # every pixel testable through orbits 21 and 94


def test_smoothed_T_matches_formulas_at_pixels(town, tmp_path):
    path, data, groups = town
    out = tmp_path / "town_pwtt.tif"
    summary = pwtt_map(path, out, PwttOptions(strip_rows=4))
    got, t = _read(out), raw_t(data, groups)
    for i, j in PIXELS:
        assert got[i, j] == pytest.approx(smooth_at(t, i, j), abs=1e-4), (i, j)
    with rasterio.open(out.with_name("town_pwtt_class.tif")) as src:
        cls = src.read(1)
    np.testing.assert_array_equal(cls, (got > 3.3).astype(np.uint8))
    assert summary["damaged_pixels"] == int((got > 3.3).sum()) > 0


def test_strip_size_does_not_change_a_byte(town, tmp_path):
    path, _, _ = town
    a, b = tmp_path / "a" / "town_pwtt.tif", tmp_path / "b" / "town_pwtt.tif"
    pwtt_map(path, a, PwttOptions(strip_rows=4))
    assert run_cli(["pwtt", "--radar", str(path), "--out", str(b), "--strip-rows", "1000"]) == 0
    for name in ("town_pwtt.tif", "town_pwtt_class.tif", "town_pwtt_quicklook.png"):
        assert (a.parent / name).read_bytes() == (b.parent / name).read_bytes(), name
