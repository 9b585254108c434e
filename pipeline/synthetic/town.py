"""One synthetic town, end to end: ground, epochs, damage, nuisances, files.

Two modes. ``realistic`` (the default) paints the town at 2.5 m with mixed pixels, seasons,
shadows, misregistration, haze and non-war change (:mod:`pipeline.synthetic.render`), so a
change detector meets what real pairs throw at it. ``easy`` is the clean 10 m town of
:mod:`pipeline.synthetic.landscape`: fast, with damage that stands out, for unit tests that need
unmistakable damage. Both share the nuisances the scene step must handle (clouds, a swath edge,
the 2022 offset) and the output files.
"""

from __future__ import annotations

import datetime as dt
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import shapely
from rasterio.features import geometry_mask, shapes

from contract.atomic import atomic_path
from contract.bands import BANDS, band_tags
from contract.gpkg import pinned_ogr_time
from contract.processing_level import L2A
from contract.processing_level import TAG as LEVEL_TAG
from pipeline.aoi import AOI, DateWindow
from pipeline.aoi.fields import INVASION_DATE
from pipeline.errors import PipelineUsageError
from pipeline.grid import Grid, aoi_grid
from pipeline.rasters import write_cog
from pipeline.synthetic.damage import DamagePlan, apply_damage, plan_damage
from pipeline.synthetic.landscape import FOREST, VEGETATION, make_landscape, smooth_noise
from pipeline.synthetic.nuisances import (
    BASELINE_OFFSET,
    add_cloud,
    add_swath_edge,
    scl_from_cover,
    to_scl_20m,
)
from pipeline.synthetic.options import DEFAULT_MAX_SIZE_KM, DEFAULT_MODE, MODES
from pipeline.synthetic.render import footprints_to_crs, render_town
from pipeline.synthetic.unosat_points import (
    assessment_dates,
    build_sites,
    write_geopackage,
    write_zipped_shapefile,
)

log = logging.getLogger(__name__)
#: Days between the extra pre-war date and the before scene: half a year, another season.
PREWAR_GAP_DAYS = 182
#: Share of undamaged buildings that UNOSAT marks "No Visible Damage" (class 6), per mode.
NVD_SHARE = {"easy": 0.1, "realistic": 0.25}


@dataclass(frozen=True)
class Nuisances:
    """Which real-world difficulties of acquisition to simulate."""

    cloud: bool = True
    swath_edge: bool = True
    offset: bool = True


@dataclass(frozen=True)
class SyntheticScenes:
    """Paths of everything one call writes."""

    before: Path
    after: Path
    before_scl: Path
    after_scl: Path
    unosat_zip: Path
    unosat_gpkg: Path
    truth: Path
    buildings: Path
    #: another date before the war (``prewar=True``): with ``before``, a temporal negative pair
    prewar: Path | None = None
    prewar_scl: Path | None = None


@dataclass
class _Ground:
    """What either mode hands to the common part: reflectance, truth and buildings."""

    before: np.ndarray  # (4, H, W) float32 DN
    after: np.ndarray
    cover: np.ndarray  # (H, W) truth land cover
    damage_class: np.ndarray  # (H, W) UNOSAT class visible in the after scene
    plan: DamagePlan
    eligible: np.ndarray  # building ids inside the AOI
    site_xy: np.ndarray  # (n + 1, 2) damage-site point of each building, grid CRS
    footprints: gpd.GeoDataFrame
    prewar: np.ndarray | None = None  # (4, H, W) float32 DN of another pre-war date


def scene_date(window: DateWindow) -> dt.date:
    """The simulated acquisition: the given date, or the middle of a window."""
    return window.start + (window.end - window.start) // 2


def _rng(aoi: AOI, seed: int, stream: int = 0) -> np.random.Generator:
    """The town's generator (stream 0); stream 1 draws the pre-war date, so asking for it
    leaves every other output byte-identical."""
    key = [seed, zlib.crc32(aoi.slug.encode())]
    return np.random.default_rng(key + [stream] if stream else key)


def prewar_date(before: dt.date) -> dt.date:
    """The extra pre-war date: half a year before the before scene (another season).

    Refused when the before scene is not itself before the war: the pair would not be a
    temporal negative.
    """
    if before >= INVASION_DATE:
        raise PipelineUsageError(
            f"--prewar needs a before scene dated before {INVASION_DATE}; the AOI's before "
            f"date is {before}"
        )
    return before - dt.timedelta(days=PREWAR_GAP_DAYS)


def generate_synthetic(
    aoi: AOI,
    out_dir: str | Path,
    seed: int = 0,
    max_size_km: float | None = DEFAULT_MAX_SIZE_KM,
    nuisances: Nuisances = Nuisances(),
    mode: str = DEFAULT_MODE,
    prewar: bool = False,
) -> SyntheticScenes:
    """Write a synthetic scene pair, SCL rasters, UNOSAT files, footprints and a truth raster.

    With ``prewar``, also ``prewar.tif`` (and its SCL): the same town on another date before
    the war, clear and without damage, so that (prewar, before) is a temporal negative pair.
    """
    if mode not in MODES:
        raise PipelineUsageError(f"synthetic mode must be one of {MODES}, got {mode!r}")
    out = Path(out_dir)
    grid = aoi_grid(aoi, max_size_km)
    rng = _rng(aoi, seed)
    dates = (scene_date(aoi.before), scene_date(aoi.after))
    extra = (_rng(aoi, seed, 1), prewar_date(dates[0])) if prewar else None
    log.info(
        "%s: synthesising a %s town of %d x %d px on %s (seed %d)",
        aoi.slug,
        mode,
        grid.width,
        grid.height,
        grid.crs,
        seed,
    )
    ground = _ground_of(rng, aoi, grid, mode, dates, extra)
    dns, scls, offset = _acquire(rng, ground, nuisances)
    paths = _paths(out, prewar)
    _write_scenes(paths, grid, aoi, seed, mode, dates, dns, scls, offset)
    if extra is not None and ground.prewar is not None:  # clear: no cloud, edge or offset
        prewar_path, prewar_dn = out / "prewar.tif", _to_dn(extra[0], ground.prewar)
        _write_scene(prewar_path, grid, prewar_dn, _scene_tags(aoi, seed, mode, extra[1]))
        _write_scl(prewar_path, grid, scl_from_cover(ground.cover), extra[1])
    _write_truth(paths.truth, ground, grid, mode)
    sites = _write_sites(rng, ground, paths, aoi, grid, dates[1], mode)
    log.info(
        "%s: %d buildings, %d damaged visibly, %d sites (%d no visible damage) -> %s",
        aoi.slug,
        len(ground.footprints),
        int(np.isin(ground.plan.now, (1, 2, 3)).sum()),
        len(sites),
        int((sites["Main_Damage_Site_Class"] == 6).sum()),
        out,
    )
    return paths


def _write_sites(
    rng: np.random.Generator,
    ground: _Ground,
    paths: SyntheticScenes,
    aoi: AOI,
    grid: Grid,
    after: dt.date,
    mode: str,
) -> gpd.GeoDataFrame:
    """UNOSAT-style damage sites (GeoPackage, zipped shapefile) and the footprints."""
    site_dates = assessment_dates(after, rng)
    sites = build_sites(
        rng,
        ground.plan,
        ground.site_xy,
        ground.eligible,
        site_dates,
        aoi.geometry_in(grid.crs),
        grid.crs.to_wkt(),
        aoi.unosat_aoi,
        nvd_share=NVD_SHARE[mode],
    )
    write_geopackage(sites, paths.unosat_gpkg, site_dates[-1])
    write_zipped_shapefile(sites, paths.unosat_zip, site_dates[-1])
    write_buildings(ground.footprints, paths.buildings, site_dates[-1])
    return sites


def _ground_of(
    rng: np.random.Generator,
    aoi: AOI,
    grid: Grid,
    mode: str,
    dates: tuple[dt.date, dt.date],
    extra: tuple[np.random.Generator, dt.date] | None,
) -> _Ground:
    """The town of either mode, centred on the AOI, its buildings eligible inside it."""
    h, w = grid.shape
    aoi_utm = aoi.geometry_in(grid.crs)
    cx, cy = ~grid.transform @ (aoi_utm.centroid.x, aoi_utm.centroid.y)
    centre = (float(np.clip(cy, 0, h - 1)), float(np.clip(cx, 0, w - 1)))
    inside = geometry_mask([aoi_utm], out_shape=(h, w), transform=grid.transform, invert=True)
    if mode == "easy":
        return _easy_ground(rng, grid, centre, inside, extra)
    lat = aoi.geometry.centroid.y
    return _realistic_ground(rng, grid, centre, inside, dates, lat, extra)


def _acquire(
    rng: np.random.Generator, ground: _Ground, nuisances: Nuisances
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], int]:
    """Digital numbers and SCL of both dates with the acquisition's nuisances, and the offset.

    A cloud falls on one date and the swath edge on the other, so every pixel is observed
    clear at least once unless both coincide.
    """
    before_dn, after_dn = _to_dn(rng, ground.before), _to_dn(rng, ground.after)
    scl_b, scl_a = scl_from_cover(ground.cover), scl_from_cover(ground.cover)
    cloud_epoch = "after" if rng.random() < 0.5 else "before"
    if nuisances.cloud:
        target = (after_dn, scl_a) if cloud_epoch == "after" else (before_dn, scl_b)
        dn = target[0].astype(np.float32)
        add_cloud(rng, dn, target[1])
        target[0][:] = np.clip(np.round(dn), 1, 65535 - BASELINE_OFFSET).astype(np.uint16)
    if nuisances.swath_edge:
        target = (before_dn, scl_b) if cloud_epoch == "after" else (after_dn, scl_a)
        add_swath_edge(rng, target[0], target[1])
    offset = BASELINE_OFFSET if nuisances.offset else 0
    after_dn = np.where(after_dn > 0, after_dn + offset, 0).astype(np.uint16)
    return (before_dn, after_dn), (scl_b, scl_a), offset


def _paths(out: Path, prewar: bool) -> SyntheticScenes:
    return SyntheticScenes(
        before=out / "before.tif",
        after=out / "after.tif",
        before_scl=out / "before_scl.tif",
        after_scl=out / "after_scl.tif",
        unosat_zip=out / "unosat.zip",
        unosat_gpkg=out / "unosat.gpkg",
        truth=out / "truth.tif",
        buildings=out / "buildings.gpkg",
        prewar=out / "prewar.tif" if prewar else None,
        prewar_scl=out / "prewar_scl.tif" if prewar else None,
    )


def _write_truth(path: Path, ground: _Ground, grid: Grid, mode: str) -> None:
    """Land cover and the damage class visible after, for checks and benchmarks."""
    truth = np.stack([ground.cover, ground.damage_class])
    write_cog(
        path,
        truth.astype(np.uint8),
        grid,
        nodata=None,
        descriptions=["land_cover", "damage_class_visible_after"],
        tags={
            "LAND_COVER_CLASSES": "1 water, 2 vegetation, 3 soil, 4 road, 5 building, 6 forest",
            "SYNTHETIC": "yes",
            "MODE": mode,
        },
        resampling="NEAREST",
    )


def _write_scenes(
    paths: SyntheticScenes,
    grid: Grid,
    aoi: AOI,
    seed: int,
    mode: str,
    dates: tuple[dt.date, dt.date],
    dns: tuple[np.ndarray, np.ndarray],
    scls: tuple[np.ndarray, np.ndarray],
    offset: int,
) -> None:
    """The two scenes with ESA-like tags, and their 20 m SCL rasters."""
    for path, dn, date, boa, baseline, scl in (
        (paths.before, dns[0], dates[0], 0, "03.01", scls[0]),
        (paths.after, dns[1], dates[1], -offset, "04.00" if offset else "03.01", scls[1]),
    ):
        tags = _scene_tags(aoi, seed, mode, date, baseline)
        _write_scene(path, grid, dn, tags, boa)
        _write_scl(path, grid, scl, date)


def _scene_tags(
    aoi: AOI, seed: int, mode: str, date: dt.date, baseline: str = "03.01"
) -> dict[str, str]:
    """ESA-like tags of one synthetic scene (every date, the pre-war one too): its processing
    level is L2A, as the towns model surface reflectance, so a pair of any two of them, or of
    one and a harmonised scene, records its level."""
    return {
        "ACQUISITION_DATE": date.isoformat(),
        "SOURCE": "synthetic",
        "SYNTHETIC": "yes",
        "AOI": aoi.slug,
        "SEED": str(seed),
        "SYNTHETIC_MODE": mode,
        "PROCESSING_BASELINE": baseline,
        LEVEL_TAG: L2A,
        "BOA_QUANTIFICATION_VALUE": "10000",
    }


def _write_scene(
    path: Path, grid: Grid, dn: np.ndarray, tags: dict[str, str], boa: int = 0
) -> None:
    tags_per_band = [dict(t, BOA_ADD_OFFSET=str(boa)) for t in band_tags()]
    write_cog(path, dn, grid, nodata=0, descriptions=BANDS, tags=tags, band_tags=tags_per_band)


def _write_scl(path: Path, grid: Grid, scl: np.ndarray, date: dt.date) -> None:
    """The scene's 20 m SCL raster beside it, ``<stem>_scl.tif``."""
    h, w = grid.shape
    scl_grid = Grid(grid.crs, grid.transform @ grid.transform.scale(2), (w + 1) // 2, (h + 1) // 2)
    write_cog(
        path.with_name(path.stem + "_scl.tif"),
        to_scl_20m(scl),
        scl_grid,
        nodata=0,
        descriptions=["SCL"],
        tags={"ACQUISITION_DATE": date.isoformat(), "SOURCE": "synthetic", "SYNTHETIC": "yes"},
        resampling="NEAREST",
    )


def _realistic_ground(
    rng: np.random.Generator,
    grid: Grid,
    centre: tuple[float, float],
    inside: np.ndarray,
    dates: tuple[dt.date, dt.date],
    lat: float,
    extra: tuple[np.random.Generator, dt.date] | None = None,
) -> _Ground:
    town = render_town(rng, grid.shape, centre, inside, dates, lat, prewar=extra)
    n = len(town.footprints)
    polys = footprints_to_crs(town.footprints, grid.transform)
    xy = np.zeros((n + 1, 2))
    if n:
        xy[1:] = shapely.get_coordinates(shapely.point_on_surface(polys))
    existing = np.nonzero(~np.isin(town.change[1:], ("vacant", "new_building")))[0]
    ids = existing + 1
    frame = gpd.GeoDataFrame(
        {
            "building_id": ids.astype(np.int64),
            "damaged": np.isin(town.plan.now[ids], (1, 2, 3)).astype(np.int64),
            "damage_class": town.plan.now[ids].astype(np.int64),
            "change": town.change[ids],
        },
        geometry=polys[existing],
        crs=grid.crs,
    )
    return _Ground(
        before=town.before,
        after=town.after,
        cover=town.cover,
        damage_class=town.damage_class,
        plan=town.plan,
        eligible=town.eligible,
        site_xy=xy,
        footprints=frame,
        prewar=town.prewar,
    )


def _easy_ground(
    rng: np.random.Generator,
    grid: Grid,
    centre: tuple[float, float],
    inside: np.ndarray,
    extra: tuple[np.random.Generator, dt.date] | None = None,
) -> _Ground:
    """The clean 10 m town: a street grid of whole-pixel roofs, strong damage."""
    h, w = grid.shape
    land = make_landscape(rng, h, w, centre)
    n = int(land.building_id.max())
    rows, cols = np.nonzero(land.building_id)
    ids = land.building_id[rows, cols]
    count = np.bincount(ids, minlength=n + 1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        crow = np.bincount(ids, weights=rows, minlength=n + 1) / count
        ccol = np.bincount(ids, weights=cols, minlength=n + 1) / count
    # The pixel of each building nearest its centroid that belongs to it (odd shapes, rivers).
    near = np.full(n + 1, -1, dtype=np.int64)
    dist = (rows - crow[ids]) ** 2 + (cols - ccol[ids]) ** 2
    order = np.lexsort((dist, ids))
    first = np.unique(ids[order], return_index=True)[1]
    near[ids[order][first]] = order[first]
    prow, pcol = rows[near[1:]], cols[near[1:]]
    site_inside = np.concatenate([[False], inside[prow, pcol]])
    eligible = np.nonzero(site_inside)[0]
    plan = plan_damage(rng, eligible, n)
    before, after = _easy_epochs(rng, land)
    strength = apply_damage(rng, after, land.building_id, plan, (prow, pcol))
    xy = np.zeros((n + 1, 2))
    xy[1:, 0] = grid.transform.c + (pcol + 0.5) * grid.transform.a
    xy[1:, 1] = grid.transform.f + (prow + 0.5) * grid.transform.e
    return _Ground(
        before=before,
        after=after,
        cover=land.cover,
        damage_class=np.where(strength > 0, plan.now[land.building_id], 0),
        plan=plan,
        eligible=eligible,
        site_xy=xy,
        footprints=_vectorise(land.building_id, plan, grid),
        prewar=None if extra is None else _easy_prewar(extra[0], land),
    )


def _vectorise(building_id: np.ndarray, plan: DamagePlan, grid: Grid) -> gpd.GeoDataFrame:
    """Footprints of the easy town's raster buildings, one (multi)polygon per id."""
    geoms = [
        (shapely.geometry.shape(g), int(v))
        for g, v in shapes(building_id, mask=building_id > 0, transform=grid.transform)
    ]
    frame = gpd.GeoDataFrame(
        {"building_id": [v for _, v in geoms]}, geometry=[g for g, _ in geoms], crs=grid.crs
    )
    frame = frame.dissolve(by="building_id", as_index=False, sort=True)
    ids = frame["building_id"].to_numpy()
    frame["building_id"] = ids.astype(np.int64)
    frame["damaged"] = np.isin(plan.now[ids], (1, 2, 3)).astype(np.int64)
    frame["damage_class"] = plan.now[ids].astype(np.int64)
    frame["change"] = "none"
    return frame[["building_id", "damaged", "damage_class", "change", "geometry"]]


def write_buildings(frame: gpd.GeoDataFrame, path: Path, stamp: dt.date) -> None:
    """Footprints with their truth (layer ``buildings``), byte-reproducible."""
    with atomic_path(path) as tmp, pinned_ogr_time(f"{stamp.isoformat()}T00:00:00Z"):
        pyogrio.write_dataframe(frame, tmp, layer="buildings", driver="GPKG")


def _easy_epochs(rng: np.random.Generator, land) -> tuple[np.ndarray, np.ndarray]:
    """Before and after reflectance: illumination and season differ a little between them."""
    h, w = land.cover.shape
    gains_b = rng.uniform(0.97, 1.03, size=4).astype(np.float32)[:, None, None]
    gains_a = rng.uniform(0.95, 1.05, size=4).astype(np.float32)[:, None, None]
    before = land.reflectance * gains_b
    after = land.reflectance * gains_a
    green = np.isin(land.cover, (VEGETATION, FOREST))
    season = (1.0 + 0.08 * smooth_noise(rng, (h, w), 20.0)).astype(np.float32)
    after[3] = np.where(green, after[3] * season * rng.uniform(0.88, 1.0), after[3])
    after[2] = np.where(green, after[2] * (2.0 - season), after[2])
    return before, after


def _easy_prewar(rng: np.random.Generator, land) -> np.ndarray:
    """Another date before the war of the easy town: its own illumination and season."""
    h, w = land.cover.shape
    prewar = land.reflectance * rng.uniform(0.95, 1.05, size=4).astype(np.float32)[:, None, None]
    green = np.isin(land.cover, (VEGETATION, FOREST))
    season = (1.0 + 0.08 * smooth_noise(rng, (h, w), 20.0)).astype(np.float32)
    prewar[3] = np.where(green, prewar[3] * season * rng.uniform(0.88, 1.0), prewar[3])
    return prewar


def _to_dn(rng: np.random.Generator, refl: np.ndarray) -> np.ndarray:
    """Add sensor noise and quantise to uint16 digital numbers (0 is reserved for nodata)."""
    noisy = refl * (
        1 + 0.012 * rng.standard_normal(refl.shape, dtype=np.float32)
    ) + 8 * rng.standard_normal(refl.shape, dtype=np.float32)
    return np.clip(np.round(noisy), 1, 65535 - BASELINE_OFFSET).astype(np.uint16)
