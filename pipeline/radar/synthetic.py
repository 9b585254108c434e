"""Sentinel-1 radar of the synthetic towns: the optical bed's town and damage, seen by radar.

The town, its land cover, its buildings and which of them were damaged come from
:mod:`pipeline.synthetic` (``truth.tif`` and ``buildings.gpkg`` of ``pipeline synthetic``, made
here when no folder is given), so optical and radar models meet the same ground. What radar adds,
as hard as the real thing:

- **orbits**: three relative orbits (two descending, one ascending, or the reverse), each with
  its own incidence angle, its own view of every building (wall orientation against the look
  direction gives each building a per-orbit level) and its own acquisition days: a 6-day repeat
  with Sentinel-1A and 1B until 2021-12-23, 12 days with 1A alone after;
- **surfaces**: sigma0 levels per land cover, with the seasons (crops green up, VH rises),
  rain (wet soil and fields brighter by 1-3 dB), frost in winter and wind on water;
- **the sensor**: IW GRD's 20 x 22 m resolution at 10 m spacing (blur) and speckle with the
  equivalent number of looks of IW GRD (:data:`ENL`), spatially correlated as in real GRD;
- **damage**: each damaged building's backscatter changes after its own attack date (between the
  war's start and the post window), on the share of its footprint and with the strength the
  optical bed uses per UNOSAT class, mostly losing its double bounce, sometimes brighter rubble;
  intact buildings keep their level within small natural variation; some are demolished in
  peacetime at any date (non-war change).

Values are sigma0 in linear power, NaN-free (the synthetic swath covers the AOI).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from contract import radar
from contract.atomic import scratch_folder
from pipeline.aoi import AOI, DateWindow
from pipeline.errors import InputFileError
from pipeline.grid import Grid, grid_of
from pipeline.radar.series import Acquisition
from pipeline.synthetic.damage import STRENGTH
from pipeline.synthetic.landscape import BUILDING, FOREST, ROAD, SOIL, VEGETATION, WATER
from pipeline.synthetic.render import greenness

log = logging.getLogger(__name__)
#: Equivalent number of looks of IW GRD.
ENL = 4.4
#: Sentinel-1B's failure: a 12-day repeat per orbit from here on.
S1B_END = dt.date(2021, 12, 23)
#: (relative orbit, state, incidence angle, UTC hour) of passes over central Ukraine.
ORBITS = (
    (36, "descending", 38.0, 4.45),
    (109, "descending", 43.5, 4.3),
    (7, "ascending", 35.5, 15.75),
    (131, "ascending", 41.0, 15.6),
)
#: (VV, VH) sigma0 in dB per land cover at 39 degrees incidence, green season.
LEVELS_DB = {
    WATER: (-21.0, -28.0),
    VEGETATION: (-11.0, -17.0),
    SOIL: (-12.0, -20.0),
    ROAD: (-15.0, -23.0),
    BUILDING: (-5.0, -12.0),
    FOREST: (-8.0, -13.5),
}
#: dB per degree of incidence for natural surfaces (brighter at steep incidence).
INCIDENCE_SLOPE = -0.15
#: Spread (dB) of a building's level between orbits: orientation against the look direction.
ORBIT_VIEW_DB = 2.5
#: Mean and spread (dB) of a destroyed building's change, and the share that brightens.
DAMAGE_DB, DAMAGE_SPREAD_DB, BRIGHTER_SHARE = -5.5, 1.5, 0.25


@dataclass
class Town:
    """What the radar needs of a synthetic town, on the AOI grid."""

    cover: np.ndarray  # (H, W) uint8
    building: np.ndarray  # (H, W) int64 building id, 0 none
    classes: np.ndarray  # (n + 1,) UNOSAT class per id
    demolished: np.ndarray  # (n + 1,) bool


def _rng(aoi: AOI, seed: int, *salt: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(aoi.slug.encode()), *salt])


def load_town(folder: Path, grid: Grid) -> Town:
    """``truth.tif`` and ``buildings.gpkg`` of a ``pipeline synthetic`` folder, on ``grid``."""
    import pyogrio
    import rasterio
    from rasterio.features import rasterize

    truth, footprints = folder / "truth.tif", folder / "buildings.gpkg"
    for path in (truth, footprints):
        if not path.exists():
            raise InputFileError(f"{path}: missing; --input must be a 'pipeline synthetic' folder")
    if not grid_of(truth).same_as(grid):
        raise InputFileError(
            f"{truth}: not on the AOI grid {grid.describe()}; make the synthetic folder with "
            "the same --max-size-km"
        )
    with rasterio.open(truth) as src:
        cover = src.read(1)
    frame = pyogrio.read_dataframe(footprints, layer="buildings")
    ids = frame["building_id"].to_numpy(np.int64)
    n = int(ids.max()) if len(ids) else 0
    building = (
        rasterize(
            zip(frame.geometry, ids, strict=True),
            out_shape=grid.shape,
            transform=grid.transform,
            fill=0,
            dtype="int64",
        )
        if n
        else np.zeros(grid.shape, np.int64)
    )
    classes = np.zeros(n + 1, np.int16)
    classes[ids] = frame["damage_class"].to_numpy(np.int16)
    demolished = np.zeros(n + 1, bool)
    demolished[ids] = frame["change"].to_numpy(str) == "demolished"
    return Town(cover, building, classes, demolished)


def pass_days(phase: int, window: DateWindow) -> list[tuple[dt.date, str]]:
    """Acquisition days of one orbit in the window, and the satellite flying each."""
    ref = dt.date(2021, 1, 1) + dt.timedelta(days=phase)
    out = []
    day = window.start
    while day <= window.end:
        k = (day - ref).days % 12
        if k == 0:
            out.append((day, "sentinel-1a"))
        elif k == 6 and day < S1B_END:
            out.append((day, "sentinel-1b"))
        day += dt.timedelta(days=1)
    return out


def _correlated_speckle(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Gamma speckle of mean 1 and ENL looks, neighbours correlated as 20 m cells at 10 m.

    A smoothed Gaussian field renormalised to unit variance goes through the Wilson-Hilferty
    cube, which maps a standard normal onto a gamma(ENL) variate closely.
    """
    z = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), 0.6)
    z /= z.std() + 1e-9
    c = 1.0 / (9.0 * ENL)
    return np.maximum(1.0 - c + z * np.sqrt(c), 0.05) ** 3


class Renderer:
    """Static parts of the scene (per-building views, attack dates) and one pass's image."""

    def __init__(self, aoi: AOI, town: Town, seed: int, post: DateWindow):
        self.aoi, self.town, self.seed = aoi, town, seed
        n = town.classes.size
        rng = _rng(aoi, seed, 1)
        self.views = {o[0]: rng.normal(0.0, ORBIT_VIEW_DB, n) for o in ORBITS}
        war = dt.date.fromisoformat(radar.WAR_START).toordinal()
        span = max(1, post.start.toordinal() - war)
        self.attack = war + rng.integers(0, span, n)
        self.demolition = rng.integers(dt.date(2021, 1, 1).toordinal(), post.end.toordinal(), n)
        sign = np.where(rng.random(n) < BRIGHTER_SHARE, -0.6, 1.0)
        self.damage_db = sign * rng.normal(DAMAGE_DB, DAMAGE_SPREAD_DB, n)
        self.changed = self._changed_pixels(rng)

    def _changed_pixels(self, rng: np.random.Generator) -> np.ndarray:
        """Per pixel, the share of the class's strength it takes (0 where nothing changes)."""
        bid = self.town.building
        share = np.zeros(self.town.classes.size, np.float32)
        power = np.zeros_like(share)
        for code, (s, p) in STRENGTH.items():
            share[self.town.classes == code] = s
            power[self.town.classes == code] = p
        pattern = rng.random(bid.shape)
        return np.where((bid > 0) & (pattern < share[bid]), power[bid], 0.0).astype(np.float32)

    def levels(self, day: dt.date, orbit: tuple, rng: np.random.Generator) -> np.ndarray:
        """(2, H, W) sigma0 in dB before the sensor: cover, season, weather, view, damage."""
        cover, bid = self.town.cover, self.town.building
        h, w = cover.shape
        g = greenness(day)
        table = np.zeros((2, 256), np.float32)
        for cls, (vv, vh) in LEVELS_DB.items():
            table[:, cls] = (vv, vh)
        db = table[:, cover]
        natural = cover != BUILDING
        db += np.where(natural, INCIDENCE_SLOPE * (orbit[2] - 39.0), 0.0)
        crops = np.isin(cover, (VEGETATION, SOIL))
        db[0] += np.where(crops, 2.0 * (g - 0.5), 0.0)
        db[1] += np.where(crops | (cover == FOREST), 4.0 * (g - 0.5), 0.0)
        weather = ndimage.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), 40)
        weather /= weather.std() + 1e-9
        if rng.random() < 0.3:  # rain: wet soil and fields
            db += np.where(crops, rng.uniform(1.0, 3.0) * (1 + 0.3 * weather), 0.0)
        if day.month in (12, 1, 2) and rng.random() < 0.5:  # frozen ground
            db += np.where(crops, -2.0, 0.0)
        db += np.where(cover == WATER, rng.uniform(0.0, 8.0) * (1 + 0.2 * weather), 0.0)
        db += np.where(bid > 0, self.views[orbit[0]][bid] + rng.normal(0, 0.3), 0.0)
        return db + self._damage(day, bid)

    def _damage(self, day: dt.date, bid: np.ndarray) -> np.ndarray:
        t = day.toordinal()
        hit = (t >= self.attack) & (self.town.classes > 0) & (self.town.classes < 5)
        razed = self.town.demolished & (t >= self.demolition)
        step = np.where(hit, self.damage_db, 0.0) + np.where(razed, DAMAGE_DB, 0.0)
        per_px = np.where(razed[bid], 1.0, self.changed)
        return (step[bid] * per_px)[None].astype(np.float32)

    def image(self, index: int, day: dt.date, orbit: tuple) -> np.ndarray:
        rng = _rng(self.aoi, self.seed, 2, index)
        power = 10.0 ** (self.levels(day, orbit, rng) / 10.0)
        out = np.empty_like(power)
        for p in range(power.shape[0]):
            blurred = ndimage.gaussian_filter(power[p], 0.8, mode="nearest")
            out[p] = blurred * _correlated_speckle(rng, blurred.shape)
        return out.astype(np.float32)


def _town_folder(aoi: AOI, grid: Grid, folder: Path | None, seed: int, tmp: Path) -> Path:
    if folder is not None:
        return folder
    from pipeline.synthetic import generate_synthetic
    from pipeline.synthetic.town import DEFAULT_MAX_SIZE_KM

    km = max(grid.width, grid.height) * grid.resolution / 1000.0
    generate_synthetic(aoi, tmp, seed=seed, max_size_km=min(km, DEFAULT_MAX_SIZE_KM))
    return Path(tmp)


def synthetic_series(
    aoi: AOI, grid: Grid, windows: Sequence[DateWindow], folder: Path | None, seed: int
) -> tuple[list[Acquisition], str, dict[str, Any]]:
    """Acquisitions of three orbits over the synthetic town, rendered when read."""
    with scratch_folder() as tmp:
        town = load_town(_town_folder(aoi, grid, folder, seed, tmp), grid)
    rng = _rng(aoi, seed, 0)
    first = int(rng.integers(0, 2))
    chosen = [ORBITS[first], ORBITS[first + 2], ORBITS[1 - first + 2 * int(rng.integers(0, 2))]]
    renderer = Renderer(aoi, town, seed, windows[-1])
    phases = rng.permutation(12)[: len(chosen)]
    acquisitions = []
    for orbit, phase in zip(chosen, phases, strict=True):
        for window in windows:
            for day, platform in pass_days(int(phase), window):
                index = day.toordinal() * 1000 + orbit[0]
                start = dt.datetime.combine(
                    day, dt.time(int(orbit[3]), int(orbit[3] % 1 * 60)), tzinfo=dt.UTC
                )
                acquisitions.append(
                    Acquisition(
                        start=start,
                        orbit=orbit[0],
                        orbit_state=orbit[1],
                        platform=platform,
                        read=functools.partial(renderer.image, index, day, orbit),
                        items=(
                            {
                                "id": f"synthetic-{orbit[0]}-{day.isoformat()}",
                                "incidence_deg": orbit[2],
                            },
                        ),
                    )
                )
    unique = {a.key: a for a in acquisitions}
    record = {
        "synthetic": True,
        "seed": seed,
        "enl": ENL,
        "input": str(folder) if folder else "generated",
    }
    return list(unique.values()), radar.SIGMA0, record
