"""The plan of a realistic town in metres: streets, blocks, lots and building footprints.

Real towns are not a perfect grid of equal roofs: street spacing varies, houses of different
sizes sit at different set-backs and angles in lots with gardens, apartment slabs and industrial
halls are much larger, some lots are empty. The plan is a list of rotated rectangles (building
footprints) plus the street geometry; :mod:`pipeline.synthetic.render` paints it at 2.5 m.
Coordinates are metres in a local frame: ``x`` to the right (east), ``y`` downwards (south),
origin at the scene's top-left corner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import shapely

#: Building kinds.
HOUSE, APARTMENT, HALL = 1, 2, 3
#: Roof materials: (B02, B03, B04, B08) digital numbers of the clean roof.
ROOF_SPECTRA = np.array(
    [
        [780, 840, 1250, 1650],  # red clay tile
        [1150, 1220, 1260, 1500],  # grey concrete / asbestos cement
        [520, 560, 600, 720],  # dark bitumen
        [1650, 1750, 1800, 2050],  # bright metal
        [700, 900, 800, 1300],  # green painted metal
        [950, 1000, 1050, 1350],  # weathered grey
    ],
    dtype=np.float32,
)
#: Roof material probabilities per building kind.
ROOF_P = {
    HOUSE: (0.35, 0.15, 0.15, 0.1, 0.15, 0.1),
    APARTMENT: (0.0, 0.45, 0.3, 0.05, 0.0, 0.2),
    HALL: (0.0, 0.3, 0.15, 0.4, 0.05, 0.1),
}


@dataclass
class TownPlan:
    """Footprints (index i is building id i + 1) and the street frame of one town."""

    cx: np.ndarray  # centre x (m)
    cy: np.ndarray  # centre y (m)
    length: np.ndarray  # side along the rotated u axis (m)
    width: np.ndarray  # side along the rotated v axis (m)
    angle: np.ndarray  # rotation of the footprint (radians)
    height: np.ndarray  # building height (m), for shadows
    kind: np.ndarray  # HOUSE, APARTMENT, HALL
    roof: np.ndarray  # index into ROOF_SPECTRA
    vacant: np.ndarray  # bool: a lot without a building before, where one may be built
    street_angle: float
    u_lines: np.ndarray  # street centre lines (m along u)
    v_lines: np.ndarray
    street_width: float
    block_kind: dict[tuple[int, int], str]

    @property
    def n(self) -> int:
        return int(self.cx.size)

    def polygons(self) -> np.ndarray:
        """Shapely polygons of the footprints (in the local metre frame)."""
        idx = np.arange(self.n)
        du = np.array([-0.5, 0.5, 0.5, -0.5, -0.5])
        dv = np.array([-0.5, -0.5, 0.5, 0.5, -0.5])
        u = du[None, :] * self.length[idx, None]
        v = dv[None, :] * self.width[idx, None]
        c, s = np.cos(self.angle[idx, None]), np.sin(self.angle[idx, None])
        x = self.cx[idx, None] + u * c - v * s
        y = self.cy[idx, None] + u * s + v * c
        return shapely.polygons(np.stack([x, y], axis=-1))


def _lines(rng: np.random.Generator, extent: float, gap: tuple[float, float]) -> np.ndarray:
    """Irregularly spaced street lines covering [-extent, extent]."""
    steps = rng.uniform(*gap, size=int(2 * extent / gap[0]) + 2)
    return -extent + np.cumsum(steps)


def plan_town(
    rng: np.random.Generator,
    centre: tuple[float, float],
    radius: float,
    urban: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> TownPlan:
    """Lay out streets and buildings around ``centre`` (x, y in m) within ``radius``.

    ``urban(x, y)`` says (vectorised) whether points lie in the (irregular) built-up area.
    """
    theta = float(rng.uniform(-0.6, 0.6))
    street_w = float(rng.uniform(8, 12))
    u_lines = _lines(rng, radius * 1.3, (70, 150))
    v_lines = _lines(rng, radius * 1.3, (60, 190))
    cos_t, sin_t = np.cos(theta), np.sin(theta)
    parts, block_kind = _blocks(rng, centre, (cos_t, sin_t), u_lines, v_lines, street_w, urban)
    if parts:
        uu, vv, ll, ww, aa, hh, kk, vac = (np.concatenate(c) for c in zip(*parts, strict=True))
    else:
        uu = vv = ll = ww = aa = hh = np.zeros(0)
        kk, vac = np.zeros(0, dtype=int), np.zeros(0, dtype=bool)
    x = centre[0] + uu * cos_t - vv * sin_t
    y = centre[1] + uu * sin_t + vv * cos_t
    keep = urban(x, y)
    kind = kk[keep].astype(np.int8)
    roof = np.zeros(kind.size, dtype=np.int64)
    for k, p in ROOF_P.items():
        sel = kind == k
        roof[sel] = rng.choice(len(ROOF_SPECTRA), size=int(sel.sum()), p=p)
    return TownPlan(
        cx=x[keep],
        cy=y[keep],
        length=ll[keep],
        width=ww[keep],
        angle=theta + aa[keep],
        height=hh[keep],
        kind=kind,
        roof=roof,
        vacant=vac[keep].astype(bool),
        street_angle=theta,
        u_lines=u_lines,
        v_lines=v_lines,
        street_width=street_w,
        block_kind=block_kind,
    )


def _blocks(
    rng: np.random.Generator,
    centre: tuple[float, float],
    rotation: tuple[float, float],
    u_lines: np.ndarray,
    v_lines: np.ndarray,
    street_w: float,
    urban: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> tuple[list[tuple], dict[tuple[int, int], str]]:
    """Each urban block's kind and the building rectangles of the built ones."""
    cos_t, sin_t = rotation
    parts: list[tuple] = []
    block_kind: dict[tuple[int, int], str] = {}
    for i in range(len(u_lines) - 1):
        for j in range(len(v_lines) - 1):
            u0, u1 = u_lines[i] + street_w / 2, u_lines[i + 1] - street_w / 2
            v0, v1 = v_lines[j] + street_w / 2, v_lines[j + 1] - street_w / 2
            um, vm = (u0 + u1) / 2, (v0 + v1) / 2
            x = centre[0] + um * cos_t - vm * sin_t
            y = centre[1] + um * sin_t + vm * cos_t
            if not urban(np.array([x]), np.array([y]))[0]:
                continue
            r = rng.random()
            kind = (
                "house"
                if r < 0.58
                else "apartment"
                if r < 0.76
                else "hall"
                if r < 0.86
                else "park"
                if r < 0.93
                else "empty"
            )
            block_kind[(i, j)] = kind
            if kind in ("park", "empty"):
                continue
            rects = {"house": _houses, "apartment": _slabs, "hall": _halls}[kind](
                rng, u0, u1, v0, v1
            )
            parts.append(rects)
    return parts, block_kind


def _houses(rng: np.random.Generator, u0: float, u1: float, v0: float, v1: float):
    """Rows of detached houses, each in its own lot with a garden behind it."""
    along_u = (u1 - u0) >= (v1 - v0)
    a0, a1, b0, b1 = (u0, u1, v0, v1) if along_u else (v0, v1, u0, u1)
    depths = np.cumsum(rng.uniform(24, 36, size=int((b1 - b0) / 24) + 1))
    depths = b0 + depths[depths < b1 - b0 - 10]
    out = []
    for row_start in np.concatenate([[b0], depths]):
        lots = np.cumsum(rng.uniform(14, 26, size=int((a1 - a0) / 14) + 1))
        lots = lots[lots < a1 - a0]
        starts = a0 + np.concatenate([[0.0], lots[:-1]])
        frontage = a0 + lots - starts
        n = starts.size
        la = np.minimum(rng.uniform(7, 14, n), frontage - 3)
        lb = rng.uniform(7, 12, n)
        ca = starts + frontage / 2 + rng.uniform(-1.5, 1.5, n)
        cb = row_start + rng.uniform(2, 8, n) + lb / 2
        ok = (la > 5) & (cb + lb / 2 < b1 - 1)
        out.append((ca[ok], cb[ok], la[ok], lb[ok]))
    ca, cb, la, lb = (np.concatenate(c) for c in zip(*out, strict=True))
    n = ca.size
    u, v, lu, lv = (ca, cb, la, lb) if along_u else (cb, ca, lb, la)
    angle = rng.normal(0, 0.07, n)
    height = rng.uniform(4.5, 8.5, n)
    vacant = rng.random(n) < 0.1
    return u, v, lu, lv, angle, height, np.full(n, HOUSE), vacant


def _slabs(rng: np.random.Generator, u0: float, u1: float, v0: float, v1: float):
    """Apartment slabs in rows, or towers, with yards between them."""
    along_u = rng.random() < 0.5
    a0, a1, b0, b1 = (u0, u1, v0, v1) if along_u else (v0, v1, u0, u1)
    depth = rng.uniform(11, 16)
    spacing = depth + rng.uniform(18, 35)
    rows = np.arange(b0 + 6 + depth / 2, b1 - 6 - depth / 2 + 1e-6, spacing)
    length = min(a1 - a0 - 12, rng.uniform(30, 100))
    if length < 12 or rows.size == 0:
        return (np.zeros(0),) * 6 + (np.zeros(0, dtype=int), np.zeros(0, dtype=bool))
    ca = np.full(rows.size, (a0 + a1) / 2) + rng.uniform(-4, 4, rows.size)
    la = np.full(rows.size, length) * rng.uniform(0.8, 1.0, rows.size)
    lb = np.full(rows.size, depth)
    u, v, lu, lv = (ca, rows, la, lb) if along_u else (rows, ca, lb, la)
    n = rows.size
    return (
        u,
        v,
        lu,
        lv,
        rng.normal(0, 0.02, n),
        rng.uniform(14, 32, n),
        np.full(n, APARTMENT),
        np.zeros(n, dtype=bool),
    )


def _halls(rng: np.random.Generator, u0: float, u1: float, v0: float, v1: float):
    """One to three industrial halls in a paved yard."""
    n = int(rng.integers(1, 4))
    span = (u1 - u0) / n
    lu = np.minimum(rng.uniform(20, 60, n), span - 6)
    lv = np.minimum(rng.uniform(20, 70, n), v1 - v0 - 8)
    u = u0 + span * (np.arange(n) + 0.5) + rng.uniform(-2, 2, n)
    v = (v0 + v1) / 2 + rng.uniform(-3, 3, n)
    ok = (lu > 8) & (lv > 8)
    return (
        u[ok],
        v[ok],
        lu[ok],
        lv[ok],
        rng.normal(0, 0.01, int(ok.sum())),
        rng.uniform(7, 12, int(ok.sum())),
        np.full(int(ok.sum()), HALL),
        np.zeros(int(ok.sum()), dtype=bool),
    )
