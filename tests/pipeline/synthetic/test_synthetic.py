"""The synthetic scene pair, UNOSAT-style points and footprints (issues 3, 16, 18)."""

from __future__ import annotations

import datetime as dt

import geopandas as gpd
import numpy as np
import pytest
import rasterio

from pipeline.aoi import load_aoi
from pipeline.cli import main
from pipeline.grid import aoi_grid
from pipeline.synthetic import Nuisances, generate_synthetic
from pipeline.synthetic.landscape import BUILDING, FOREST, SOIL, VEGETATION, WATER

SIZE_KM = 2.0


@pytest.fixture(scope="module", params=["realistic", "easy"])
def synth(request, tmp_path_factory, bucha_aoi_path):
    out = tmp_path_factory.mktemp(f"synthetic_{request.param}")
    aoi = load_aoi(bucha_aoi_path)
    return aoi, generate_synthetic(aoi, out, seed=3, max_size_km=SIZE_KM, mode=request.param)


def _mode(paths) -> str:
    return _tag(paths.before, "SYNTHETIC_MODE")


def _tag(path, name: str) -> str:
    with rasterio.open(path) as src:
        return src.tags()[name]


def test_scene_georeferencing(synth):
    aoi, paths = synth
    grid = aoi_grid(aoi, SIZE_KM)
    for path in (paths.before, paths.after):
        with rasterio.open(path) as src:
            assert src.crs.to_epsg() == 32636
            assert src.transform == grid.transform
            assert src.transform.a == 10 and src.transform.e == -10
            assert src.transform.c % 10 == 0 and src.transform.f % 10 == 0
            assert (src.width, src.height) == (grid.width, grid.height) == (200, 200)
            assert src.count == 4 and src.dtypes == ("uint16",) * 4
            assert src.descriptions == ("B02", "B03", "B04", "B08")
            assert src.nodata == 0
            assert src.tags()["SYNTHETIC"] == "yes"
    with rasterio.open(paths.before) as b, rasterio.open(paths.after) as a:
        assert b.tags()["ACQUISITION_DATE"] == "2021-10-22"
        assert a.tags()["ACQUISITION_DATE"] == "2022-05-05"
        assert a.tags(1)["BOA_ADD_OFFSET"] == "-1000"
        assert b.tags(1)["BOA_ADD_OFFSET"] == "0"
    with rasterio.open(paths.after_scl) as scl:
        assert scl.transform.a == 20 and scl.crs.to_epsg() == 32636
        assert scl.transform.c == grid.transform.c and scl.transform.f == grid.transform.f


def _read(path):
    with rasterio.open(path) as src:
        return src.read().astype(np.float64)


def test_land_cover_values_realistic(synth):
    _, paths = synth
    realistic = _mode(paths) == "realistic"
    before = _read(paths.before)
    cover = _read(paths.truth)[0]
    valid = before[0] > 0
    with rasterio.open(paths.before_scl) as s:
        clear = np.kron(s.read(1), np.ones((2, 2)))[: cover.shape[0], : cover.shape[1]]
    ok = valid & np.isin(clear, (4, 5, 6))

    def median(cls, band):
        return np.median(before[band][(cover == cls) & ok])

    # realistic: an October before scene of mixed 10 m pixels, so vegetation is less green and
    # roofs are mixed with gardens; easy: pure pixels
    nir_min = 1800 if realistic else 2500
    assert nir_min <= median(VEGETATION, 3) <= 4500 and 200 <= median(VEGETATION, 2) <= 900
    assert nir_min <= median(FOREST, 3) <= 4500
    for band in range(3):
        assert (600 if realistic else 900) <= median(BUILDING, band) <= 2000
    assert median(BUILDING, 3) < median(VEGETATION, 3)
    assert median(SOIL, 2) > median(VEGETATION, 2)
    assert ((cover == WATER) & ok).sum() > 20
    assert median(WATER, 3) < 500
    # unchanged roofs differ between the epochs: a little in the easy town, more in the
    # realistic one (misregistration, shadows, haze, mixed pixels)
    after = _read(paths.after) - 1000
    truth_damage = _read(paths.truth)[1]
    both = ok & (after[0] > 0) & (truth_damage == 0) & (cover == BUILDING)
    rel = np.median(np.abs(after[:, both] - before[:, both]) / before[:, both])
    assert (0.05 < rel < 0.3) if realistic else (0.005 < rel < 0.1)


def test_nuisances_present_and_switchable(synth, tmp_path):
    aoi, paths = synth
    scl = [rasterio.open(p).read(1) for p in (paths.before_scl, paths.after_scl)]
    classes = set(np.unique(scl[0])) | set(np.unique(scl[1]))
    assert {0, 3, 9}.issubset(classes)  # swath nodata, cloud shadow, cloud
    assert (_read(paths.before)[0] == 0).any() or (_read(paths.after)[0] == 0).any()
    clean = generate_synthetic(
        aoi,
        tmp_path,
        seed=3,
        max_size_km=SIZE_KM,
        mode=_mode(paths),
        nuisances=Nuisances(cloud=False, swath_edge=False, offset=False),
    )
    with rasterio.open(clean.after_scl) as src:
        s = src.read(1)
    assert not np.isin(s, (0, 3, 8, 9)).any()
    assert (_read(clean.after) > 0).all()
    assert rasterio.open(clean.after).tags(1)["BOA_ADD_OFFSET"] == "0"
    # the offset is the only difference in level: +1000 DN in the offset version
    a_off, a_clean = _read(paths.after), _read(clean.after)
    both = (a_off[0] > 0) & np.isin(
        rasterio.open(paths.after_scl).read(1).repeat(2, 0).repeat(2, 1)[:200, :200], (4, 5, 6)
    )
    assert abs(np.median(a_off[:, both] - a_clean[:, both]) - 1000) < 5


def _pixels(gdf, path):
    with rasterio.open(path) as src:
        pts = gdf.to_crs(src.crs)
        rows, cols = rasterio.transform.rowcol(src.transform, pts.geometry.x, pts.geometry.y)
        rows, cols = np.asarray(rows), np.asarray(cols)
        inside = (rows >= 0) & (rows < src.height) & (cols >= 0) & (cols < src.width)
    return rows, cols, inside


def test_damage_points_on_changed_buildings(synth):
    aoi, paths = synth
    realistic = _mode(paths) == "realistic"
    sites = gpd.read_file(paths.unosat_gpkg)
    truth = _read(paths.truth)
    rows, cols, inside = _pixels(sites, paths.truth)
    cls1 = sites["Main_Damage_Site_Class"].to_numpy()
    cover = truth[0][rows[inside], cols[inside]]
    visible = truth[1][rows[inside], cols[inside]]
    c = cls1[inside]
    if not realistic:  # realistic houses are smaller than a pixel: see the footprint test
        assert (cover[np.isin(c, (1, 2, 3, 6))] == BUILDING).all()
    assert (visible[np.isin(c, (1, 2, 3))] > 0).mean() > (0.75 if realistic else 0.9)
    assert (visible[c == 6] == 0).mean() > (0.9 if realistic else 0.999)
    before, after = _read(paths.before), _read(paths.after) - 1000
    b = before[:, rows[inside], cols[inside]]
    a = after[:, rows[inside], cols[inside]]
    valid = (b[0] > 0) & (a[0] > -1000)
    change = np.abs(a - b).sum(0) / np.maximum(b.sum(0), 1)
    destroyed = valid & (c == 1)
    intact = valid & (c == 6)
    assert np.median(change[destroyed]) > (1.5 if realistic else 4) * np.median(change[intact])
    # some sites lie outside the AOI, some are first damaged after the after-scene date
    assert (~sites.within(aoi.geometry)).sum() >= 3
    late = sites["Main_Damage_Site_Class"].isna() | (sites["Main_Damage_Site_Class"] == 6)
    late &= sites["Main_Damage_Site_Class_2"].isin([1, 2, 3])
    assert late.sum() > 0
    assert set(sites["Main_Damage_Site_Class"].dropna().astype(int)) >= {1, 2, 3, 4, 6, 11}
    assert sites["SensorDate_2"].iloc[0].date() > dt.date(2022, 5, 5)
    assert sites["SensorDate"].iloc[0].date() <= dt.date(2022, 5, 5)


def test_footprints_carry_truth_and_sites(synth):
    aoi, paths = synth
    buildings = gpd.read_file(paths.buildings, layer="buildings")
    with rasterio.open(paths.before) as src:
        assert buildings.crs == src.crs
    assert set(buildings.geom_type) <= {"Polygon", "MultiPolygon"} and len(buildings) > 50
    assert buildings["building_id"].dtype.kind == "i" and buildings["building_id"].is_unique
    assert set(buildings["damaged"]) == {0, 1}
    sites = gpd.read_file(paths.unosat_gpkg)
    sites = sites[sites.within(aoi.geometry)].to_crs(buildings.crs)  # a few lie outside
    hits = gpd.sjoin(sites, buildings, predicate="within", how="left")
    cls = hits["Main_Damage_Site_Class"]
    # every site sits on its building: damaged ones on damaged footprints
    assert (hits.loc[cls.isin([1, 2, 3]), "damaged"] == 1).all()
    intact = hits[cls == 6]
    assert len(intact) >= 10 and (intact["damaged"] == 0).all()  # "No Visible Damage" sites
    truth_damaged = buildings["damaged"] == 1
    assert 0.05 < truth_damaged.mean() < 0.3


def test_realistic_town_is_irregular_and_changes_by_itself(synth):
    _, paths = synth
    buildings = gpd.read_file(paths.buildings)
    area = buildings.area
    if _mode(paths) == "easy":
        assert set(buildings["change"]) == {"none"}
        return
    assert area.max() > 5 * area.median()  # houses, apartment slabs, halls
    assert area.quantile(0.9) > 1.5 * area.quantile(0.1)  # houses of many sizes
    assert area.median() < 200  # most roofs are smaller than two 10 m pixels
    rect = buildings.minimum_rotated_rectangle()
    ring = np.array([np.asarray(g.exterior.coords)[:2] for g in rect])
    angle = np.degrees(np.arctan2(*(ring[:, 1] - ring[:, 0]).T[::-1])) % 90
    assert np.std(angle) > 1  # not one perfect grid
    assert {"demolished", "new_roof"} <= set(buildings["change"])  # non-war change
    assert (buildings.loc[buildings["change"] != "none", "damaged"] == 0).all()


def test_shapefile_truncated_and_gpkg_full_names(synth):
    _, paths = synth
    shp = gpd.read_file(f"zip://{paths.unosat_zip}")
    gpkg = gpd.read_file(paths.unosat_gpkg)
    assert {"Main_Damag", "SensorDa_1", "Main_Dam_1", "Damage_Sta"} <= set(shp.columns)
    assert {"Main_Damage_Site_Class", "SensorDate_2", "Damage_Status_2"} <= set(gpkg.columns)
    assert all(len(c) <= 10 for c in shp.columns)
    assert shp.crs.to_epsg() == gpkg.crs.to_epsg() == 4326
    assert len(shp) == len(gpkg)


@pytest.mark.parametrize("mode", ["realistic", "easy"])
def test_deterministic_bytes(tmp_path, bucha_aoi_path, mode):
    aoi = load_aoi(bucha_aoi_path)
    runs = [
        generate_synthetic(aoi, tmp_path / str(i), seed=7, max_size_km=1.0, mode=mode)
        for i in range(2)
    ]
    other = generate_synthetic(aoi, tmp_path / "other", seed=8, max_size_km=1.0, mode=mode)
    for name in (
        "before",
        "after",
        "before_scl",
        "unosat_zip",
        "unosat_gpkg",
        "truth",
        "buildings",
    ):
        a, b = getattr(runs[0], name).read_bytes(), getattr(runs[1], name).read_bytes()
        assert a == b, name
    assert runs[0].before.read_bytes() != other.before.read_bytes()


def test_cli(tmp_path, bucha_aoi_path, capsys):
    assert (
        main(
            [
                "synthetic",
                str(bucha_aoi_path),
                "--out",
                str(tmp_path),
                "--seed",
                "1",
                "--max-size-km",
                "0.5",
                "--no-cloud",
            ]
        )
        == 0
    )
    assert (tmp_path / "before.tif").exists() and (tmp_path / "unosat.zip").exists()
    assert (tmp_path / "buildings.gpkg").exists()
    assert _tag(tmp_path / "before.tif", "SYNTHETIC_MODE") == "realistic"
    assert (
        main(
            [
                "synthetic",
                str(bucha_aoi_path),
                "--out",
                str(tmp_path / "e"),
                "--mode",
                "easy",
                "--max-size-km",
                "0.5",
            ]
        )
        == 0
    )
    assert _tag(tmp_path / "e" / "before.tif", "SYNTHETIC_MODE") == "easy"
    with pytest.raises(SystemExit) as exc:
        main(["synthetic", str(bucha_aoi_path), "--out", str(tmp_path), "--mode", "hard"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["realistic", "easy"])
def test_prewar_date_is_a_temporal_negative(tmp_path, bucha_aoi_path, mode):
    """Issue 28: another pre-war date of the same town, undamaged, the rest untouched."""
    aoi = load_aoi(bucha_aoi_path)
    plain = generate_synthetic(aoi, tmp_path / "p", seed=4, max_size_km=1.0, mode=mode)
    both = generate_synthetic(aoi, tmp_path / "w", seed=4, max_size_km=1.0, mode=mode, prewar=True)
    assert plain.prewar is None and both.prewar is not None and both.prewar_scl is not None
    for name in ("before", "after", "after_scl", "unosat_zip", "truth", "buildings"):
        assert getattr(plain, name).read_bytes() == getattr(both, name).read_bytes(), name
    with rasterio.open(both.prewar) as p, rasterio.open(both.before) as b:
        assert p.profile["transform"] == b.profile["transform"] and p.crs == b.crs
        assert p.descriptions == b.descriptions and p.nodata == 0
        assert p.tags()["ACQUISITION_DATE"] == "2021-04-23"  # half a year before 2021-10-22
        assert p.tags(1)["BOA_ADD_OFFSET"] == "0"
        prewar, before = p.read().astype(float), b.read().astype(float)
    with rasterio.open(both.after) as a, rasterio.open(both.truth) as t:
        after = a.read().astype(float) - 1000
        damaged = t.read(2) > 0
    assert (prewar > 0).all()  # clear: no cloud, no swath edge
    ok = (before > 0).all(0) & (after > 0).all(0)
    war = np.abs(after - before)[2][damaged & ok]
    quiet = np.abs(prewar - before)[2][damaged & ok]
    assert np.median(quiet) < np.median(war)  # nothing happened to the damaged buildings yet
    again = generate_synthetic(aoi, tmp_path / "x", seed=4, max_size_km=1.0, mode=mode, prewar=True)
    assert again.prewar is not None and again.prewar.read_bytes() == both.prewar.read_bytes()


def test_prewar_needs_a_prewar_before_scene():
    from pipeline.errors import PipelineUsageError
    from pipeline.synthetic.town import prewar_date

    assert prewar_date(dt.date(2021, 10, 22)) == dt.date(2021, 4, 23)
    with pytest.raises(PipelineUsageError, match="before 2022-02-24"):
        prewar_date(dt.date(2022, 3, 1))


def test_cli_prewar_logs_its_files_and_is_silent_with_q(tmp_path, bucha_aoi_path, capsys):
    """The written files are logged (INFO, on stderr), never printed; ``-q`` silences them."""
    args = ["synthetic", str(bucha_aoi_path), "--max-size-km", "0.5", "--mode", "easy"]
    assert main([*args, "--out", str(tmp_path / "a"), "--prewar"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and f"{tmp_path / 'a'}: wrote before.tif, after.tif" in err
    assert "prewar.tif, prewar_scl.tif" in err and (tmp_path / "a" / "prewar_scl.tif").exists()
    assert main(["-q", *args, "--out", str(tmp_path / "b")]) == 0
    assert capsys.readouterr() == ("", "") and (tmp_path / "b" / "before.tif").exists()


def test_tiles_of_a_prewar_pair_record_the_level(tmp_path, bucha_aoi_path, caplog):
    """The pre-war scene is tagged L2A as the harmonised scenes are: its tiles with the scene
    step's before scene record the level, without a warning that one of them lacks it."""
    from contract.npz_keys import PROCESSING_LEVEL
    from pipeline.scenes.acquire import acquire_scene
    from pipeline.tiles.cut import cut_tiles

    aoi = load_aoi(bucha_aoi_path)
    syn = generate_synthetic(
        aoi, tmp_path / "syn", seed=2, max_size_km=1.0, mode="easy", prewar=True
    )
    assert syn.prewar is not None
    assert {_tag(p, "PROCESSING_LEVEL") for p in (syn.prewar, syn.before, syn.after)} == {"L2A"}
    before = tmp_path / "before.tif"
    acquire_scene(aoi, "before", before, "synthetic", syn.before.parent, max_size_km=1.0)
    cut_tiles(aoi.slug, syn.prewar, before, None, tmp_path / "prewar.npz", size=32)
    assert str(np.load(tmp_path / "prewar.npz")[PROCESSING_LEVEL]) == "L2A"
    assert "processing level" not in caplog.text
