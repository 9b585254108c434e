"""Synthetic Sentinel-2 scene pairs and UNOSAT-style damage points for one AOI.

The offline test bed and demo engine: raw-looking L2A before/after scenes on the AOI's 10 m UTM
grid, with the nuisances of real data (clouds with shadows, a swath edge, the 2022 offset) and
damaged buildings recorded as UNOSAT damage sites. See ``docs/synthetic-data.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.features import geometry_mask

from contract.atomic import staged_folder
from contract.bands import BANDS, band_tags
from pipeline.aoi import AOI, DateWindow, load_aoi
from pipeline.grid import Grid, aoi_grid
from pipeline.rasters import write_cog
from pipeline.synthetic.damage import apply_damage, plan_damage
from pipeline.synthetic.landscape import FOREST, VEGETATION, make_landscape, smooth_noise
from pipeline.synthetic.nuisances import (
    BASELINE_OFFSET,
    add_cloud,
    add_swath_edge,
    scl_from_cover,
    to_scl_20m,
)
from pipeline.synthetic.unosat_points import (
    assessment_dates,
    build_sites,
    write_geopackage,
    write_zipped_shapefile,
)

log = logging.getLogger(__name__)
DEFAULT_MAX_SIZE_KM = 5.0


@dataclass(frozen=True)
class Nuisances:
    """Which real-world difficulties to simulate."""

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


def scene_date(window: DateWindow) -> dt.date:
    """The simulated acquisition: the given date, or the middle of a window."""
    return window.start + (window.end - window.start) // 2


def _rng(aoi: AOI, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(aoi.slug.encode())])


def generate_synthetic(aoi: AOI, out_dir: str | Path, seed: int = 0,
                       max_size_km: float | None = DEFAULT_MAX_SIZE_KM,
                       nuisances: Nuisances = Nuisances()) -> SyntheticScenes:
    """Write a synthetic scene pair, SCL rasters, UNOSAT files and a truth raster to ``out_dir``."""
    out = Path(out_dir)
    grid = aoi_grid(aoi, max_size_km)
    rng = _rng(aoi, seed)
    h, w = grid.shape
    aoi_utm = aoi.geometry_in(grid.crs)
    inv = ~grid.transform
    cx, cy = inv @ (aoi_utm.centroid.x, aoi_utm.centroid.y)
    centre = (float(np.clip(cy, 0, h - 1)), float(np.clip(cx, 0, w - 1)))
    log.info("%s: synthesising %d x %d px on %s (seed %d)", aoi.slug, w, h, grid.crs, seed)

    land = make_landscape(rng, h, w, centre)
    n = int(land.building_id.max())
    inside = geometry_mask([aoi_utm], out_shape=(h, w), transform=grid.transform, invert=True)
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

    before_date, after_date = scene_date(aoi.before), scene_date(aoi.after)
    before, after = _epochs(rng, land)
    strength = apply_damage(rng, after, land.building_id, plan, (prow, pcol))
    before_dn, after_dn = _to_dn(rng, before), _to_dn(rng, after)
    scl_b, scl_a = scl_from_cover(land.cover), scl_from_cover(land.cover)
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

    paths = SyntheticScenes(
        before=out / "before.tif", after=out / "after.tif", before_scl=out / "before_scl.tif",
        after_scl=out / "after_scl.tif", unosat_zip=out / "unosat.zip",
        unosat_gpkg=out / "unosat.gpkg", truth=out / "truth.tif")
    for path, dn, date, boa, baseline, scl in (
            (paths.before, before_dn, before_date, 0, "03.01", scl_b),
            (paths.after, after_dn, after_date, -offset, "04.00" if offset else "03.01", scl_a)):
        tags = {"ACQUISITION_DATE": date.isoformat(), "SOURCE": "synthetic", "SYNTHETIC": "yes",
                "AOI": aoi.slug, "SEED": str(seed), "PROCESSING_BASELINE": baseline,
                "BOA_QUANTIFICATION_VALUE": "10000"}
        tags_per_band = [dict(t, BOA_ADD_OFFSET=str(boa)) for t in band_tags()]
        write_cog(path, dn, grid, nodata=0, descriptions=BANDS, tags=tags,
                  band_tags=tags_per_band)
        scl_path = path.with_name(path.stem + "_scl.tif")
        scl_grid = Grid(grid.crs, grid.transform @ grid.transform.scale(2),
                        (w + 1) // 2, (h + 1) // 2)
        write_cog(scl_path, to_scl_20m(scl), scl_grid, nodata=0,
                  descriptions=["SCL"], tags={"ACQUISITION_DATE": date.isoformat(),
                                              "SOURCE": "synthetic", "SYNTHETIC": "yes"},
                  resampling="NEAREST")

    truth = np.stack([land.cover, np.where(strength > 0, plan.now[land.building_id], 0)])
    write_cog(paths.truth, truth.astype(np.uint8), grid, nodata=None,
              descriptions=["land_cover", "damage_class_visible_after"],
              tags={"LAND_COVER_CLASSES": "1 water, 2 vegetation, 3 soil, 4 road, "
                                          "5 building, 6 forest", "SYNTHETIC": "yes"},
              resampling="NEAREST")

    dates = assessment_dates(after_date, rng)
    xy = np.zeros((n + 1, 2))
    xs = grid.transform.c + (pcol + 0.5) * grid.transform.a
    ys = grid.transform.f + (prow + 0.5) * grid.transform.e
    xy[1:, 0], xy[1:, 1] = xs, ys
    sites = build_sites(rng, plan, xy, eligible, dates, aoi_utm, grid.crs.to_wkt(),
                        aoi.unosat_aoi)
    write_geopackage(sites, paths.unosat_gpkg, dates[-1])
    write_zipped_shapefile(sites, paths.unosat_zip, dates[-1])
    log.info("%s: %d buildings, %d damaged visibly, %d damage sites written to %s", aoi.slug, n,
             int(np.isin(plan.now, (1, 2, 3)).sum()), len(sites), out)
    return paths


def _epochs(rng: np.random.Generator, land) -> tuple[np.ndarray, np.ndarray]:
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


def _to_dn(rng: np.random.Generator, refl: np.ndarray) -> np.ndarray:
    """Add sensor noise and quantise to uint16 digital numbers (0 is reserved for nodata)."""
    noisy = refl * (1 + 0.012 * rng.standard_normal(refl.shape, dtype=np.float32)) \
        + 8 * rng.standard_normal(refl.shape, dtype=np.float32)
    return np.clip(np.round(noisy), 1, 65535 - BASELINE_OFFSET).astype(np.uint16)


def _run(args: argparse.Namespace) -> int:
    aoi = load_aoi(args.aoi_file)
    with staged_folder(args.out) as tmp:  # the whole set appears at once, or nothing
        paths = generate_synthetic(aoi, tmp, seed=args.seed, max_size_km=args.max_size_km,
                                   nuisances=Nuisances(cloud=not args.no_cloud,
                                                       swath_edge=not args.no_swath_edge,
                                                       offset=not args.no_offset))
    for p in vars(paths).values():
        print(Path(args.out) / Path(p).relative_to(tmp))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synthetic", help="write a synthetic scene pair and UNOSAT-style points for an AOI",
        description="Synthesise raw-looking Sentinel-2 L2A before/after scenes (B02, B03, B04, "
                    "B08, uint16, 10 m UTM) of a town with damaged buildings, their SCL rasters, "
                    "UNOSAT-style damage sites (unosat.zip with truncated names, unosat.gpkg "
                    "with full names) and a truth raster. For tests and the offline demo, not a "
                    "substitute for real imagery.")
    p.add_argument("aoi_file", help="AOI GeoJSON file (aois/<slug>.geojson)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--max-size-km", type=float, default=DEFAULT_MAX_SIZE_KM,
                   help="clip the AOI's bounds to a square of this side, centred in the AOI "
                        "(default: %(default)s km)")
    p.add_argument("--no-cloud", action="store_true", help="no cloud and shadow")
    p.add_argument("--no-swath-edge", action="store_true", help="no nodata wedge")
    p.add_argument("--no-offset", action="store_true",
                   help="no processing-baseline offset (+1000 DN) in the after scene")
    p.set_defaults(func=_run)
