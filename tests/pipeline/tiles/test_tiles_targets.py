"""Per-pixel targets from UNOSAT points and change maps (issue 28)."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import CRS
from support.cli import leftovers, refuse_move_into

from contract.labels import DAMAGE, NO_DAMAGE, UNKNOWN
from pipeline.aoi import load_aoi
from pipeline.errors import InputFileError, PipelineUsageError
from pipeline.grid import Grid
from pipeline.labels.unosat import read_sites
from pipeline.rasters import write_cog
from pipeline.synthetic import Nuisances, generate_synthetic
from pipeline.tiles.targets import (
    TargetOptions,
    check_target_raster,
    make_point_targets,
    point_targets,
)

GRID = Grid(CRS.from_epsg(32636), Affine(10, 0, 300000, 0, -10, 5600000), 30, 30)


def _centre(row: int, col: int) -> tuple[float, float]:
    return 300000 + (col + 0.5) * 10, 5600000 - (row + 0.5) * 10


def test_disc_ring_and_unknown_on_a_small_grid():
    known = np.ones(GRID.shape, dtype=bool)
    known[:, 25:] = False  # unassessed strip
    sites = np.array([_centre(10, 10), _centre(20, 20), _centre(5, 27)])
    positive = np.array([True, False, True])  # a destroyed site, a moderate one, one unassessed
    t = point_targets(known, GRID, sites, positive, TargetOptions())
    assert t.dtype == np.uint8 and set(np.unique(t)) == {DAMAGE, NO_DAMAGE, UNKNOWN}
    disc = {(10, 10), (9, 10), (11, 10), (10, 9), (10, 11)}  # centres within 10 m
    assert {tuple(map(int, rc)) for rc in np.argwhere(t == DAMAGE)} == disc
    assert t[10, 13] == UNKNOWN and t[12, 12] == UNKNOWN  # 30 m and 28 m away: the ring
    assert t[10, 14] == NO_DAMAGE and t[13, 13] == NO_DAMAGE  # 40 m and 42 m: negative
    assert t[20, 20] == UNKNOWN and t[20, 23] == UNKNOWN and t[20, 24] == NO_DAMAGE
    assert (t[:, 25:] == UNKNOWN).all()  # the unassessed site is no positive
    wide = point_targets(known, GRID, sites, positive, TargetOptions(disc_px=2, ring_px=5))
    assert wide[10, 12] == DAMAGE and wide[10, 15] == UNKNOWN and wide[10, 16] == NO_DAMAGE
    with pytest.raises(PipelineUsageError, match="--ring-px"):
        TargetOptions(disc_px=3, ring_px=2).check()


@pytest.fixture(scope="module")
def town(tmp_path_factory, bucha_aoi_path):
    aoi = load_aoi(bucha_aoi_path)
    out = tmp_path_factory.mktemp("targets")
    syn = generate_synthetic(aoi, out / "syn", seed=5, max_size_km=2.0)
    return aoi, syn, out


def test_targets_from_the_unosat_shapefile(town):
    aoi, syn, out = town
    summary = make_point_targets(aoi, syn.after, syn.unosat_zip, out / "t.tif")
    with rasterio.open(out / "t.tif") as src:
        t, transform = src.read(1), src.transform
        assert src.dtypes == ("uint8",) and src.nodata == UNKNOWN
        assert src.descriptions == ("damage_target",) and src.crs.to_epsg() == 32636
        assert src.tags()["DISC_PX"] == "1.0" and src.tags()["TARGET_CLASSES"] == "1,2"
    with rasterio.open(syn.after) as src:
        assert src.transform == transform
        observed = src.dataset_mask() > 0
    assert (t[~observed] == UNKNOWN).all()
    sites = read_sites(syn.unosat_zip, damage_classes=(1, 2)).frame.to_crs("EPSG:32636")
    first = sites["first_date"].to_numpy(dtype="datetime64[D]")
    pos = ~np.isnat(first) & (first <= np.datetime64("2022-05-05"))
    cols, rows = ~transform * (sites.geometry.x.to_numpy(), sites.geometry.y.to_numpy())
    r, c = np.floor(rows).astype(int), np.floor(cols).astype(int)
    inside = (r >= 0) & (r < t.shape[0]) & (c >= 0) & (c < t.shape[1])
    at = t[r[inside], c[inside]]
    # a positive site's pixel is damage where known; no site's pixel is ever negative
    assert (at[pos[inside]] != NO_DAMAGE).all() and (at[pos[inside]] == DAMAGE).any()
    assert (at[~pos[inside]] != DAMAGE).sum() > 0 and (at != NO_DAMAGE).all()
    damage = np.argwhere(t == DAMAGE)
    near = np.hypot(damage[:, :1] - r[pos][None, :], damage[:, 1:] - c[pos][None, :]).min(axis=1)
    assert (near <= 1.5).all()  # damage only on the disc of a positive site
    assert summary["damage_pixels"] == int((t == DAMAGE).sum()) > 0
    assert summary["negative_pixels"] > 10 * summary["damage_pixels"]
    saved = json.loads((out / "t.json").read_text())
    assert saved["positive_sites"] == int(pos.sum()) and saved["sites_read"] == len(sites)


def test_targets_and_their_summary_published_together(town, tmp_path, monkeypatch):
    """The COG and its JSON are one set: a failure at the last file leaves neither."""
    aoi, syn, _ = town
    out = tmp_path / "out" / "t.tif"
    refuse_move_into(monkeypatch, out.with_suffix(".json"))
    with pytest.raises(OSError, match="Input/output"):
        make_point_targets(aoi, syn.after, syn.unosat_zip, out)
    assert leftovers(tmp_path / "out") == []


def test_sites_dated_after_the_after_scene_are_not_positive(town):
    aoi, syn, out = town
    early = TargetOptions(after_date=dt.date(2022, 2, 25))
    summary = make_point_targets(aoi, syn.after, syn.unosat_zip, out / "early.tif", early)
    assert summary["positive_sites"] == 0 and summary["damage_pixels"] == 0
    assert summary["excluded_by_date"] > 0


def test_change_map_codes_checked(tmp_path):
    grid = Grid(GRID.crs, GRID.transform, 8, 8)
    good = np.zeros((8, 8), dtype=np.uint8)
    good[2:4, 2:4], good[6:, :] = 1, 255
    write_cog(tmp_path / "ok.tif", good, grid, nodata=255, descriptions=["change"])
    check_target_raster(tmp_path / "ok.tif")
    bad = np.where(good == 1, 2, good).astype(np.uint8)
    write_cog(tmp_path / "bad.tif", bad, grid, nodata=255, descriptions=["change"])
    with pytest.raises(InputFileError, match=r"bad\.tif: values \[2\]"):
        check_target_raster(tmp_path / "bad.tif")


def test_map_only_aoi_refused(tmp_path, aoi_copy, town):
    _, syn, _ = town

    def drop_labels(doc):
        doc["features"][0]["properties"].pop("labels", None)

    aoi = load_aoi(aoi_copy("bucha", drop_labels))
    with pytest.raises(InputFileError, match="map-only"):
        make_point_targets(aoi, syn.after, syn.unosat_zip, tmp_path / "t.tif")
    assert not (tmp_path / "t.tif").exists()


def test_clean_town_targets_are_only_known_codes(tmp_path, bucha_aoi_path):
    aoi = load_aoi(bucha_aoi_path)
    syn = generate_synthetic(
        aoi, tmp_path / "s", seed=2, max_size_km=1.0, nuisances=Nuisances(False, False, False)
    )
    make_point_targets(aoi, syn.after, syn.unosat_gpkg, tmp_path / "t.tif")
    check_target_raster(tmp_path / "t.tif")
