"""The realistic synthetic town: painted at 2.5 m, seen by a 10 m sensor.

Real 10 m pixels are mixtures of roof, tree, road and garden, and most of what differs between
two real acquisitions is not war damage: fields are bare in one season and green in the other,
the sun is lower in autumn so shadows are longer, the two dates are misregistered by a fraction
of a pixel, haze that the scene classification misses brightens one date, and towns change by
themselves (demolition, new houses, new roofs). This module paints the town of
:mod:`pipeline.synthetic.layout` at ``FACTOR`` sub-pixels per 10 m pixel for each epoch with
those effects and damage of realistic size (mostly 1-3 px), then averages the sub-pixels to
10 m. Statistics against real patches: ``benchmarks/synthetic_realism.py``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine
from rasterio.features import rasterize
from scipy import ndimage

from pipeline.synthetic.damage import DamagePlan, damage_strength, plan_damage
from pipeline.synthetic.landscape import BUILDING, FOREST, ROAD, SOIL, VEGETATION, WATER
from pipeline.synthetic.layout import ROOF_SPECTRA, TownPlan, plan_town

#: Sub-pixels per 10 m pixel side (2.5 m).
FACTOR = 4
SUB_M = 10.0 / FACTOR
# Sub-pixel surface classes.
GRASS, TREE, ASPHALT, PAVED, ROOF, RIVER, FIELD, WOOD, BARE, RUBBLE, PLOT = range(11)
#: Truth land-cover class of each surface class (see landscape.py).
COVER_OF = np.array(
    [VEGETATION, FOREST, ROAD, ROAD, BUILDING, WATER, VEGETATION, FOREST, SOIL, SOIL, VEGETATION],
    dtype=np.uint8,
)
#: (dormant, green) spectra (B02, B03, B04, B08) per surface; mixed by the date's greenness.
SURFACE = {
    GRASS: ((700, 850, 950, 2100), (380, 680, 420, 3700)),
    TREE: ((520, 620, 700, 1800), (250, 470, 280, 3300)),
    ASPHALT: ((760, 830, 880, 1150),) * 2,
    PAVED: ((1150, 1250, 1330, 1650),) * 2,
    ROOF: ((1000, 1000, 1000, 1000),) * 2,  # replaced per building
    RIVER: ((520, 540, 340, 190),) * 2,
    FIELD: ((650, 900, 1150, 1800),) * 2,  # replaced per parcel and epoch
    WOOD: ((420, 520, 560, 1900), (230, 420, 250, 2900)),
    BARE: ((900, 1100, 1350, 1900),) * 2,
    RUBBLE: ((1250, 1340, 1440, 1650),) * 2,
    PLOT: ((650, 900, 1150, 1800),) * 2,  # replaced per garden plot and epoch
}
#: Garden plots (vegetable beds behind houses): side in metres.
PLOT_M = (15.0, 25.0)
#: Field states: bare soil, green crop (scaled by emergence), stubble, meadow.
FIELD_BARE = np.array([650, 900, 1150, 1800], dtype=np.float32)
FIELD_CROP = np.array([300, 620, 330, 4200], dtype=np.float32)
FIELD_STUBBLE = np.array([900, 1100, 1300, 2200], dtype=np.float32)
#: Light left in a cast shadow (diffuse sky light is blue).
SHADE = np.array([0.5, 0.42, 0.36, 0.3], dtype=np.float32)[:, None, None]
#: Overpass time of Sentinel-2 as a solar hour angle (about 10:30 local solar time).
HOUR_ANGLE_DEG = -22.5


@dataclass
class RealisticTown:
    """What the realistic renderer hands back to the orchestration (10 m grids)."""

    before: np.ndarray  # (4, H, W) float32 DN, before noise
    after: np.ndarray  # (4, H, W) float32 DN
    cover: np.ndarray  # (H, W) uint8 dominant truth class
    damage_class: np.ndarray  # (H, W) uint8 UNOSAT class of visible damage, 0 none
    plan: DamagePlan
    footprints: np.ndarray  # shapely polygons in the local metre frame, building id i + 1
    eligible: np.ndarray  # building ids inside the AOI
    change: np.ndarray  # (n + 1,) str: non-war change of each building
    prewar: np.ndarray | None = None  # (4, H, W) float32 DN of another pre-war date


def greenness(date: dt.date) -> float:
    """0 in midwinter, 1 in midsummer: how green vegetation is on ``date`` (Ukraine)."""
    doy = date.timetuple().tm_yday
    return float(0.5 + 0.5 * np.cos(2 * np.pi * (doy - 195) / 365.25))


def sun_position(lat_deg: float, date: dt.date) -> tuple[float, float]:
    """Solar elevation and azimuth (degrees) at Sentinel-2's morning overpass."""
    doy = date.timetuple().tm_yday
    decl = np.radians(23.44) * np.sin(2 * np.pi * (284 + doy) / 365)
    lat, ha = np.radians(lat_deg), np.radians(HOUR_ANGLE_DEG)
    sin_el = np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(ha)
    el = np.arcsin(sin_el)
    cos_az = (np.sin(decl) - sin_el * np.sin(lat)) / (np.cos(el) * np.cos(lat))
    az = np.degrees(np.arccos(np.clip(cos_az, -1, 1)))  # morning: east of south
    return float(np.degrees(el)), float(az)


def _smooth(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    field = ndimage.gaussian_filter(
        rng.standard_normal(shape, dtype=np.float32), sigma, mode="reflect"
    )
    return (field - field.mean()) / (field.std() + 1e-6)


def _shift(a: np.ndarray, dr: int, dc: int, fill: float = 0) -> np.ndarray:
    """``a`` moved by (dr, dc) cells, edges filled with ``fill`` (no wrap-around)."""
    out = np.full_like(a, fill)
    h, w = a.shape[-2:]
    rs, rd = (slice(0, h - dr), slice(dr, h)) if dr >= 0 else (slice(-dr, h), slice(0, h + dr))
    cs, cd = (slice(0, w - dc), slice(dc, w)) if dc >= 0 else (slice(-dc, w), slice(0, w + dc))
    out[..., rd, cd] = a[..., rs, cs]
    return out


def _block_mean(a: np.ndarray) -> np.ndarray:
    *lead, h, w = a.shape
    return a.reshape(*lead, h // FACTOR, FACTOR, w // FACTOR, FACTOR).mean(axis=(-3, -1))


def cast_shadow(height: np.ndarray, elevation: float, azimuth: float) -> np.ndarray:
    """Sub-pixels in the shadow of taller buildings and trees, for a sun at (el, az)."""
    tan_el = np.tan(np.radians(elevation))
    reach = float(height.max()) / max(tan_el, 0.05)
    az = np.radians(azimuth)
    d_row, d_col = np.cos(az), -np.sin(az)  # shadows point away from the sun
    dm = np.round(height * 4).astype(np.int16)  # quarter metres: integer compares are cheap
    shadow = np.zeros(height.shape, dtype=bool)
    for step in range(1, int(reach / SUB_M) + 1):
        dr, dc = int(round(step * d_row)), int(round(step * d_col))
        drop = int(round(step * SUB_M * tan_el * 4))
        shadow |= _shift(dm, dr, dc) > dm + drop
    return shadow


def _fields(
    rng: np.random.Generator, x: np.ndarray, y: np.ndarray, g_before: float, g_after: float
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Farmland parcels (id per sub-pixel) and their spectra in both epochs: each parcel
    ploughed, sown or harvested, so fields change with the season."""
    theta = rng.uniform(-0.8, 0.8)
    u = x * np.cos(theta) + y * np.sin(theta)
    v = -x * np.sin(theta) + y * np.cos(theta)
    extent = float(max(np.abs(u).max(), np.abs(v).max())) + 1
    ul = -extent + np.cumsum(rng.uniform(120, 450, int(2 * extent / 120) + 2))
    vl = -extent + np.cumsum(rng.uniform(200, 700, int(2 * extent / 200) + 2))
    pid = np.searchsorted(ul, u) * (vl.size + 1) + np.searchsorted(vl, v)
    n = (ul.size + 1) * (vl.size + 1)
    state_b = rng.choice(4, size=n, p=[0.4, 0.3, 0.2, 0.1])
    state_a = np.where(state_b == 3, 3, rng.choice(3, size=n, p=[0.3, 0.55, 0.15]))
    vigour = rng.uniform(0.3, 1.0, size=(2, n))
    gain = rng.uniform(0.9, 1.1, size=(2, n)).astype(np.float32)
    out = []
    for e, (state, g) in enumerate(((state_b, g_before), (state_a, g_after))):
        spectra = _parcel_spectra(state, vigour[e], g)
        out.append((spectra * gain[e][:, None]).astype(np.float32))
    return pid, out


def _parcel_spectra(state: np.ndarray, vigour: np.ndarray, g: float) -> np.ndarray:
    """(n, 4) spectra of parcels ploughed (0), sown (1), harvested (2) or meadow (3)."""
    green = np.clip(vigour * (0.4 + g), 0, 1)[:, None]
    meadow = FIELD_BARE * 0.2 + FIELD_CROP * 0.8
    return np.select(
        [state[:, None] == 0, state[:, None] == 1, state[:, None] == 2],
        [FIELD_BARE, FIELD_BARE * (1 - green) + FIELD_CROP * green, FIELD_STUBBLE],
        meadow * (0.6 + 0.4 * g),
    )


def render_town(
    rng: np.random.Generator,
    shape: tuple[int, int],
    centre_rc: tuple[float, float],
    inside: np.ndarray,
    dates: tuple[dt.date, dt.date],
    lat: float,
    prewar: tuple[np.random.Generator, dt.date] | None = None,
) -> RealisticTown:
    """Paint both epochs of a town on a grid of ``shape`` 10 m pixels.

    With ``prewar`` (its own generator and a date before the war) a third date of the town as
    it stood before the war is painted too (:func:`paint_prewar`).
    """
    h, w = shape
    town, urban10 = _place_town(rng, shape, centre_rc)
    lay = _layers(rng, town, urban10, shape, inside)
    epochs, still, cover = _paint_epochs(rng, lay, shape, dates, lat)
    dmg10 = lay.dmg_cls.reshape(h, FACTOR, w, FACTOR).max(axis=(1, 3)).astype(np.uint8)
    before, after = atmosphere(rng, epochs[0], epochs[1])
    return RealisticTown(
        before=before,
        after=after,
        cover=cover,
        damage_class=dmg10,
        plan=lay.plan,
        footprints=lay.polys,
        eligible=lay.eligible,
        change=lay.change,
        prewar=None if prewar is None else paint_prewar(prewar[0], still, prewar[1], lat),
    )


@dataclass
class _Layers:
    """The town at 2.5 m on both dates: buildings, surfaces, heights, roofs and the damage."""

    bid: np.ndarray
    polys: np.ndarray
    eligible: np.ndarray
    plan: DamagePlan
    change: np.ndarray
    surface: tuple[np.ndarray, np.ndarray]
    height: tuple[np.ndarray, np.ndarray]
    roofs: tuple[np.ndarray, np.ndarray]
    rubble: np.ndarray
    dmg_cls: np.ndarray


def _layers(
    rng: np.random.Generator,
    town: TownPlan,
    urban10: np.ndarray,
    shape: tuple[int, int],
    inside: np.ndarray,
) -> _Layers:
    """Buildings rasterised, damage planned, ground and non-war change of both dates."""
    h, w = shape
    fh, fw = h * FACTOR, w * FACTOR
    n = town.n
    fine_t = Affine(SUB_M, 0, 0, 0, SUB_M, 0)  # local metre frame, y downwards
    polys = town.polygons()
    bid = np.zeros((fh, fw), dtype=np.int32)
    if n:
        bid = rasterize(
            zip(polys, range(1, n + 1), strict=True),
            out_shape=(fh, fw),
            transform=fine_t,
            fill=0,
            dtype="int32",
        )
    # building ids and anchors: the 10 m pixel of each footprint's centre
    prow = np.clip((town.cy // 10).astype(int), 0, h - 1)
    pcol = np.clip((town.cx // 10).astype(int), 0, w - 1)
    eligible = np.nonzero(np.concatenate([[False], inside[prow, pcol] & ~town.vacant]))[0]
    fighting = np.exp(1.5 * _smooth(rng, (h, w), 30))  # damage clusters
    plan = plan_damage(rng, eligible, n, weight=np.concatenate([[1.0], fighting[prow, pcol]]))

    surface = _ground(rng, town, urban10, (fh, fw))
    existing = np.concatenate([[False], ~town.vacant])
    built = existing[bid]
    surface[built] = ROOF
    lot = bid * (~built)  # vacant lots: bare ground before
    surface[lot > 0] = BARE
    change = _non_war_change(rng, town, plan, existing)

    tree_h = np.where(np.isin(surface, (TREE, WOOD)), 11.0, 0.0).astype(np.float32)
    height_b = np.where(built, town.height.astype(np.float32)[np.maximum(bid - 1, 0)], tree_h)
    roof_b, roof_a = _roofs(rng, town, change)
    surface_a, height_a = _changed_ground(surface, height_b, change, bid)

    rubble, dmg_cls = _damage(rng, bid, plan, built)
    height_a = np.where(rubble > 0.5, height_a * (1 - rubble), height_a)
    return _Layers(
        bid,
        polys,
        eligible,
        plan,
        change,
        (surface, surface_a),
        (height_b, height_a),
        (roof_b, roof_a),
        rubble,
        dmg_cls,
    )


def _roofs(
    rng: np.random.Generator, town: TownPlan, change: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(n + 1, 4) roof spectra before and after: re-roofed and new buildings differ."""
    roof_gain = rng.uniform(0.85, 1.15, size=(town.n + 1, 1)).astype(np.float32)
    roof_b = ROOF_SPECTRA[np.concatenate([[0], town.roof])] * roof_gain
    roof_a = roof_b.copy()
    new_roof = change == "new_roof"
    roof_a[new_roof] = ROOF_SPECTRA[rng.integers(0, len(ROOF_SPECTRA), int(new_roof.sum()))]
    roof_a[change == "new_building"] = ROOF_SPECTRA[3] * 0.9
    return roof_b, roof_a


def _paint_epochs(
    rng: np.random.Generator,
    lay: _Layers,
    shape: tuple[int, int],
    dates: tuple[dt.date, dt.date],
    lat: float,
) -> tuple[list[np.ndarray], _Still, np.ndarray]:
    """Both dates' 10 m reflectance before the atmosphere, the pre-war town and the cover."""
    h, w = shape
    fh, fw = h * FACTOR, w * FACTOR
    # plot-scale texture shared by the epochs
    tex = (1 + 0.09 * _smooth(rng, (fh, fw), 0.8)) * _upsample(1 + 0.06 * _smooth(rng, (h, w), 1.5))
    g_b, g_a = greenness(dates[0]), greenness(dates[1])
    x_f = (np.arange(fw, dtype=np.float32) + 0.5) * SUB_M
    y_f = (np.arange(fh, dtype=np.float32) + 0.5) * SUB_M
    parcel, spectra = _fields(rng, x_f[None, :], y_f[:, None], g_b, g_a)
    plot = (y_f[:, None] // PLOT_M[0]).astype(np.int64) * 7919 + (x_f[None, :] // PLOT_M[1]).astype(
        np.int64
    )
    plots = _plots(rng, 4099, g_b, g_a)
    epochs = []
    for e, g in enumerate((g_b, g_a)):
        surf, height = lay.surface[e], lay.height[e]
        refl = _paint(surf, lay.bid, lay.roofs[e], g, parcel, spectra[e], plot, plots[e], tex)
        refl *= _upsample(1 + 0.08 * _smooth(rng, (h, w), 0.5))
        if e == 1:
            _rubble(rng, refl, lay.rubble)
            _scorch(rng, refl, surf, lay.dmg_cls)
        el, az = sun_position(lat, dates[e])
        shade = cast_shadow(height, el, az)
        refl[:, shade] *= SHADE[:, 0]
        if e == 1:  # sub-pixel misregistration of the after date
            dr, dc = rng.integers(-2, 3, size=2)
            refl = _shift(refl, int(dr), int(dc), fill=np.nan)
            gaps = np.isnan(refl[0])
            refl[:, gaps] = _table(g)[GRASS][:, None]
        epochs.append(_sensor(_block_mean(refl)))
    surface = lay.surface[0]
    cover = _dominant(_truth_cover(surface, parcel, spectra[0], plot, plots[0]), (h, w))
    still = _Still(
        surface, lay.bid, lay.roofs[0], lay.height[0], parcel, len(spectra[0]), plot, tex
    )
    return epochs, still, cover


def _place_town(
    rng: np.random.Generator, shape: tuple[int, int], centre_rc: tuple[float, float]
) -> tuple[TownPlan, np.ndarray]:
    """The town's plan inside an irregular urban area (a noisy disc, as a 10 m mask)."""
    h, w = shape
    centre = ((centre_rc[1] + 0.5) * 10.0, (centre_rc[0] + 0.5) * 10.0)
    radius = 0.42 * min(h, w) * 10.0 * rng.uniform(0.8, 1.05)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) * 10.0 + 5.0
    urban10 = np.hypot(xx - centre[0], yy - centre[1]) + 150 * _smooth(rng, (h, w), 25) < radius

    def urban(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        r = np.clip((np.asarray(y) // 10).astype(int), 0, h - 1)
        c = np.clip((np.asarray(x) // 10).astype(int), 0, w - 1)
        return urban10[r, c]

    return plan_town(rng, centre, radius, urban), urban10


def _changed_ground(
    surface: np.ndarray, height: np.ndarray, change: np.ndarray, bid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Surfaces and heights in the after epoch once the town has changed by itself."""
    surface_a, height_a = surface.copy(), height.copy()
    demolished = (change == "demolished")[bid]
    surface_a[demolished] = BARE
    height_a[demolished] = 0
    new = (change == "new_building")[bid]
    surface_a[new] = ROOF
    height_a[new] = 6.0
    return surface_a, height_a


def _truth_cover(
    surface: np.ndarray, parcel: np.ndarray, fields: np.ndarray, plot: np.ndarray, plots: np.ndarray
) -> np.ndarray:
    """Truth land cover per sub-pixel; fields and plots bare in the before scene are soil."""
    cover = COVER_OF[surface]

    def bare(spectra: np.ndarray) -> np.ndarray:
        return (spectra[:, 3] - spectra[:, 2]) / (spectra[:, 3] + spectra[:, 2]) < 0.45

    cover[(surface == FIELD) & bare(fields)[parcel]] = SOIL
    cover[(surface == PLOT) & bare(plots)[plot % len(plots)]] = SOIL
    return cover


def _table(g: float) -> np.ndarray:
    """(surface, band) spectra for a date of greenness ``g``."""
    return np.array(
        [
            np.array(SURFACE[s][0]) * (1 - g) + np.array(SURFACE[s][1]) * g
            for s in range(len(SURFACE))
        ],
        dtype=np.float32,
    )


def _paint(
    surf: np.ndarray,
    bid: np.ndarray,
    roofs: np.ndarray,
    g: float,
    parcel: np.ndarray,
    spectra: np.ndarray,
    plot: np.ndarray,
    plots: np.ndarray,
    tex: np.ndarray,
) -> np.ndarray:
    """(4, h, w) reflectance of one epoch's surfaces, roofs, fields and garden plots."""
    refl = np.take(_table(g).T, surf, axis=1)
    here = surf == ROOF
    refl[:, here] = roofs[bid[here]].T
    here = surf == FIELD
    refl[:, here] = spectra[parcel[here]].T
    here = surf == PLOT
    refl[:, here] = plots[plot[here] % len(plots)].T
    refl *= tex
    return refl


def _rubble(rng: np.random.Generator, refl: np.ndarray, weight: np.ndarray) -> None:
    """Mix rough rubble into ``refl`` in place with the given weight per sub-pixel."""
    here = weight > 0
    wt = weight[here]
    # rubble is a jumble of bright concrete dust and dark charred material
    rough = 1 + 0.35 * rng.standard_normal(wt.size).astype(np.float32)
    charred = rng.random(wt.size) < 0.25
    target = _table(0.0)[RUBBLE][:, None] * rough * np.where(charred, 0.45, 1.15)
    refl[:, here] = refl[:, here] * (1 - wt) + target * wt


def _plots(rng: np.random.Generator, n: int, g_before: float, g_after: float) -> list[np.ndarray]:
    """Spectra of ``n`` garden plots per epoch: dug over, planted or grassed, independently."""
    out = []
    for g in (g_before, g_after):
        green = (rng.random(n) * (0.3 + 0.7 * g))[:, None]
        bare = rng.random(n) < 0.4
        mix = FIELD_BARE * (1 - green) + FIELD_CROP * green
        out.append(
            np.where(bare[:, None], FIELD_BARE, mix).astype(np.float32)
            * rng.uniform(0.85, 1.15, (n, 1)).astype(np.float32)
        )
    return out


def _scorch(rng: np.random.Generator, refl: np.ndarray, surf: np.ndarray, dmg: np.ndarray) -> None:
    """Burnt and cratered vegetation around destroyed and severely damaged buildings.

    Fires and shell craters scar gardens and trees near the buildings that were hit; UNOSAT
    points sit on the buildings, so this change is near damage but not on it.
    """
    hit = ndimage.binary_dilation(np.isin(dmg, (1, 2)), iterations=8)
    green = np.isin(surf, (GRASS, TREE, PLOT))
    burnt = hit & green & (_smooth(rng, surf.shape, 1.5) > 0.3)
    refl[:, burnt] *= np.array([1.1, 0.95, 1.2, 0.55], dtype=np.float32)[:, None]


def _upsample(a: np.ndarray) -> np.ndarray:
    """A 10 m field repeated over its sub-pixels (smooth fields need no finer noise)."""
    return np.repeat(np.repeat(a, FACTOR, axis=0), FACTOR, axis=1)


def _dominant(classes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The most frequent class among each 10 m pixel's sub-pixels."""
    h, w = shape
    rows = np.arange(classes.shape[0]) // FACTOR
    cols = np.arange(classes.shape[1]) // FACTOR
    cell = (rows[:, None] * w + cols[None, :]).ravel()
    k = int(classes.max()) + 1
    counts = np.bincount(cell * k + classes.ravel(), minlength=h * w * k).reshape(h * w, k)
    return np.argmax(counts, axis=1).reshape(h, w).astype(np.uint8)


def _ground(
    rng: np.random.Generator, town: TownPlan, urban10: np.ndarray, shape: tuple[int, int]
) -> np.ndarray:
    """Surface class of every sub-pixel before buildings: fields, woods, river, town ground."""
    fh, fw = shape
    surface = np.full(shape, FIELD, dtype=np.int8)
    surface[_upsample(_smooth(rng, (fh // FACTOR, fw // FACTOR), 18) > 1.2)] = WOOD
    urban = _upsample(urban10)
    y, x = np.mgrid[0:fh, 0:fw].astype(np.float32) * SUB_M + SUB_M / 2
    cx = float(np.mean(town.cx)) if town.n else fw * SUB_M / 2
    cy = float(np.mean(town.cy)) if town.n else fh * SUB_M / 2
    c, s = np.cos(town.street_angle), np.sin(town.street_angle)
    u = (x - cx) * c + (y - cy) * s
    v = -(x - cx) * s + (y - cy) * c
    iu, iv = np.searchsorted(town.u_lines, u), np.searchsorted(town.v_lines, v)
    du = np.minimum(
        np.abs(u - town.u_lines[np.clip(iu - 1, 0, None)]),
        np.abs(u - town.u_lines[np.clip(iu, None, town.u_lines.size - 1)]),
    )
    dv = np.minimum(
        np.abs(v - town.v_lines[np.clip(iv - 1, 0, None)]),
        np.abs(v - town.v_lines[np.clip(iv, None, town.v_lines.size - 1)]),
    )
    half = town.street_width / 2
    street = (np.minimum(du, dv) < half) & urban
    kinds = np.zeros((town.u_lines.size + 1, town.v_lines.size + 1), dtype=np.int8)
    codes = {"house": 1, "apartment": 2, "hall": 3, "park": 4, "empty": 5}
    for (i, j), k in town.block_kind.items():
        kinds[i + 1, j + 1] = codes[k]
    kind = np.where(urban, kinds[iu, iv], 0)
    trees = _smooth(rng, shape, 2.0)
    patchy = _upsample(_smooth(rng, (fh // FACTOR, fw // FACTOR), 1.0))
    surface[urban] = GRASS
    surface[(kind == 1) & (_upsample(_smooth(rng, (fh // FACTOR, fw // FACTOR), 1.5)) > 0.3)] = PLOT
    surface[(kind == 1) & (trees > 0.55)] = TREE
    surface[(kind == 1) & (patchy > 1.3)] = PAVED
    surface[(kind == 2) & (patchy > 0.4)] = PAVED
    surface[(kind == 2) & (trees > 0.8)] = TREE
    surface[(kind == 3) & (patchy > -0.8)] = PAVED
    surface[(kind == 3) & (patchy > 1.0)] = BARE
    surface[(kind == 4) & (trees > -0.6)] = TREE
    surface[(kind == 5) & (patchy > -0.2)] = BARE
    surface[street] = ASPHALT
    verge = urban & (np.minimum(du, dv) >= half - 2.5) & (np.minimum(du, dv) < half + 1.5)
    surface[verge & (trees > 0.2)] = TREE
    # a river crossing the scene
    angle = rng.uniform(0, np.pi)
    y0, x0 = rng.uniform(0.2, 0.8, size=2) * np.array([fh, fw]) * SUB_M  # it passes here
    offset = y0 * np.cos(angle) - x0 * np.sin(angle)
    along = y * np.cos(angle) - x * np.sin(angle)
    meander = 120 * np.sin(2 * np.pi * (y * np.sin(angle) + x * np.cos(angle)) / 4000)
    surface[np.abs(along - offset + meander) < rng.uniform(30, 70)] = RIVER
    return surface


def _non_war_change(
    rng: np.random.Generator, town: TownPlan, plan: DamagePlan, existing: np.ndarray
) -> np.ndarray:
    """Per building id: 'none', 'demolished', 'new_roof', 'new_building' (not war damage)."""
    n = town.n
    change = np.full(n + 1, "none", dtype=object)
    change[0] = ""
    intact = existing & (plan.now == 0) & (plan.later == 0)
    intact[0] = False
    r = rng.random(n + 1)
    change[intact & (r < 0.025)] = "demolished"
    change[intact & (r >= 0.025) & (r < 0.07)] = "new_roof"
    vacant = np.concatenate([[False], town.vacant])
    change[vacant] = np.where(rng.random(int(vacant.sum())) < 0.4, "new_building", "vacant")
    return change.astype(str)


def _damage(
    rng: np.random.Generator, bid: np.ndarray, plan: DamagePlan, built: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rubble weight per sub-pixel (0-1) and the UNOSAT class where it changed."""
    share, power = damage_strength(plan)
    cls = np.where(built, plan.now[bid], 0)
    pattern = 0.5 + 0.5 * np.tanh(_smooth(rng, bid.shape, 1.2))
    changed = (cls > 0) & (pattern < share[bid])
    weight = np.where(changed, power[bid], 0.0).astype(np.float32)
    debris = ndimage.binary_dilation(np.isin(cls, (1, 2)), iterations=3) & (cls == 0)
    weight = np.maximum(weight, np.where(debris & (rng.random(bid.shape) < 0.7), 0.6, 0.0))
    dmg = np.where(weight > 0, np.where(cls > 0, cls, 1), 0).astype(np.uint8)
    return weight.astype(np.float32), dmg


def _sensor(refl: np.ndarray) -> np.ndarray:
    """The 10 m sensor's point-spread function: a little blur of the averaged sub-pixels."""
    return np.stack([ndimage.gaussian_filter(b, 0.45, mode="nearest") for b in refl]).astype(
        np.float32
    )


def footprints_to_crs(polys: np.ndarray, transform: Affine) -> np.ndarray:
    """Local-metre footprints into the grid's CRS (``transform`` of the 10 m grid)."""
    return shapely.transform(
        polys,
        lambda xy: np.column_stack(
            [
                transform.c + xy[:, 0] * transform.a / 10.0,
                transform.f + xy[:, 1] * transform.e / 10.0,
            ]
        ),
    )


def atmosphere(
    rng: np.random.Generator, before: np.ndarray, after: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Residual illumination and atmosphere after L2A correction, and haze in one date.

    The haze is thin and smooth: brighter and flatter in the visible, barely in the NIR, and
    the scene classification does not flag it (as Sen2Cor often does not).
    """
    hazy = int(rng.integers(0, 2))
    return _air(rng, before, hazy == 0), _air(rng, after, hazy == 1)


def _air(rng: np.random.Generator, refl: np.ndarray, hazy: bool) -> np.ndarray:
    """One date's residual gains and illumination, and its haze if ``hazy``."""
    _, h, w = refl.shape
    gains = rng.uniform(0.97, 1.03, size=4).astype(np.float32)[:, None, None]
    spatial = 1 + 0.03 * _smooth(rng, (h, w), 30)
    refl = refl * gains * spatial
    if hazy:
        field = np.clip(_smooth(rng, (h, w), 40) + 0.3, 0, None)
        field /= field.max() + 1e-6
        amp = rng.uniform(80, 200)
        add = amp * np.array([1.0, 0.8, 0.6, 0.35], dtype=np.float32)[:, None, None]
        refl = refl * (1 - 0.15 * field) + add * field
    return refl.astype(np.float32)


@dataclass
class _Still:
    """The town as it stood before the war, at 2.5 m: what a pre-war date is painted from."""

    surface: np.ndarray
    bid: np.ndarray
    roofs: np.ndarray
    height: np.ndarray
    parcel: np.ndarray
    n_parcels: int
    plot: np.ndarray
    tex: np.ndarray


def paint_prewar(rng: np.random.Generator, still: _Still, date: dt.date, lat: float) -> np.ndarray:
    """(4, H, W) reflectance of another date before the war: same buildings, no damage.

    Season (fields, gardens, greenness), sun and shadows, misregistration and atmosphere are
    those of ``date``, drawn from ``rng`` (not the town's generator, so the war pair stays the
    same with or without it): a temporal negative pair differs by everything but war damage.
    """
    g = greenness(date)
    state = rng.choice(4, size=still.n_parcels, p=[0.4, 0.3, 0.2, 0.1])
    vigour = rng.uniform(0.3, 1.0, size=still.n_parcels)
    gain = rng.uniform(0.9, 1.1, size=still.n_parcels).astype(np.float32)
    spectra = (_parcel_spectra(state, vigour, g) * gain[:, None]).astype(np.float32)
    plots = _plots(rng, 4099, g, g)[0]
    refl = _paint(
        still.surface,
        still.bid,
        still.roofs,
        g,
        still.parcel,
        spectra,
        still.plot,
        plots,
        still.tex,
    )
    h, w = still.surface.shape[0] // FACTOR, still.surface.shape[1] // FACTOR
    refl *= _upsample(1 + 0.08 * _smooth(rng, (h, w), 0.5))
    el, az = sun_position(lat, date)
    refl[:, cast_shadow(still.height, el, az)] *= SHADE[:, 0]
    dr, dc = rng.integers(-2, 3, size=2)
    refl = _shift(refl, int(dr), int(dc), fill=np.nan)
    gaps = np.isnan(refl[0])
    refl[:, gaps] = _table(g)[GRASS][:, None]
    return _air(rng, _sensor(_block_mean(refl)), bool(rng.random() < 0.5))
