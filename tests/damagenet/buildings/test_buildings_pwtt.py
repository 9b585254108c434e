"""PWTT's T maps per building (mean T, damaged above the threshold) and the grids of cells:
aligned on multiples of their size, and PWTT's own in Web Mercator."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from pyproj import Transformer
from rasterio.transform import from_origin
from support.building_servers import MAP_PX, UTM, map_origin, town, write_map

from damagenet.buildings.aggregate import AggregateOptions, aggregate
from damagenet.cli import main
from damagenet.errors import InputFileError


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    root = tmp_path_factory.mktemp("pwtt")
    frame = town(extent_m=2000).to_crs(UTM)
    frame.to_file(root / "buildings.gpkg")
    return root, frame, root / "buildings.gpkg"


def constant_map(path, value, description, tags, shift_px=0, size=160):
    """A map of one value, its top-left corner ``shift_px`` pixels south-east of the town map's."""
    x0, y0 = map_origin()
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=size,
        height=size,
        count=1,
        dtype="float32",
        crs=UTM,
        transform=from_origin(x0 + shift_px * MAP_PX, y0 - shift_px * MAP_PX, MAP_PX, MAP_PX),
        nodata=-9999.0,
    ) as dst:
        dst.write(np.full((1, size, size), value, dtype="float32"))
        dst.set_band_description(1, description)
        dst.update_tags(**tags)
    return path


def run(map_path, buildings, out, **kw):
    summary = aggregate(map_path, buildings, out, AggregateOptions(progress=False, **kw))
    return summary, gpd.read_file(out, layer="buildings"), gpd.read_file(out, layer="zones")


def test_t_map_mean_t_per_building_and_zone(place, tmp_path):
    root, frame, bld = place
    t_map = write_map(tmp_path / "town_pwtt.tif", "t")
    out = tmp_path / "o" / "agg.gpkg"
    summary, b, z = run(t_map, bld, out)
    assert summary["map_kind"] == "pwtt_t" and summary["threshold"] == 3.3
    assert summary["threshold_from"] == "town_pwtt.tif tag THRESHOLD"
    assert summary["damaged_rule"] == "area-weighted mean T > threshold"
    assert {"t_mean", "t_max"} <= set(b.columns) and "probability_mean" not in b.columns
    ok = b[b.status == "ok"]
    middle = map_origin()[0] + 80 * MAP_PX  # T is 6 east of it, 1 west of it
    bounds = shapely.bounds(ok.geometry.to_numpy())
    east, west = bounds[:, 0] >= middle, bounds[:, 2] <= middle
    assert east.any() and west.any()
    np.testing.assert_allclose(ok.t_mean[east], 6.0)
    np.testing.assert_allclose(ok.t_mean[west], 1.0)
    assert ok.damaged[east].eq(1).all() and ok.damaged[west].eq(0).all()
    assessed = b.t_mean.notna()
    assert (b.damaged[assessed] == (b.t_mean[assessed] > 3.3).astype(int)).all()
    assert "t_mean" in z.columns and "probability_mean" not in z.columns
    style = (tmp_path / "o" / "agg_buildings.qml").read_text()
    assert '"t_mean" IS NULL' in style and "mean T &gt; 3.3" in style
    assert "t_mean" in pd.read_csv(tmp_path / "o" / "agg_zones.csv").columns


def test_t_threshold_is_strict_and_can_be_given(place, tmp_path):
    root, frame, bld = place
    pwtt = {"PRODUCT": "PWTT pixel-wise t-test (Ballinger 2025), damagenet", "THRESHOLD": "3.3"}
    at = constant_map(tmp_path / "at_pwtt.tif", 3.3, "pwtt_T", pwtt)
    _, b, _ = run(at, bld, tmp_path / "a" / "agg.gpkg")
    assert b.damaged.dropna().eq(0).all()  # T equal to the threshold: not above it
    summary, b, _ = run(at, bld, tmp_path / "b" / "agg.gpkg", threshold=3.0)
    assert summary["threshold_from"] == "--threshold" and b.damaged.dropna().eq(1).all()
    prob = constant_map(
        tmp_path / "p_damage_prob.tif", 0.5, "damage_probability", {"THRESHOLD": "0.5"}
    )
    _, b, _ = run(prob, bld, tmp_path / "c" / "agg.gpkg")
    assert b.damaged.dropna().eq(1).all()  # a probability at the threshold: damaged (>=)


def test_unsmoothed_t_and_pwtt_default_threshold(place, tmp_path):
    root, frame, bld = place
    raw = constant_map(tmp_path / "raw_pwtt.tif", 4.0, "pwtt_max_t_unsmoothed", {})
    summary, b, _ = run(raw, bld, tmp_path / "o" / "agg.gpkg")
    assert summary["map_kind"] == "pwtt_t" and summary["threshold"] == 3.3
    assert summary["threshold_from"] == "the default for a pwtt_t map"
    assert b.damaged.dropna().eq(1).all()


def test_fused_map_mean_z_per_building(place, tmp_path):
    root, frame, bld = place
    tags = {"PRODUCT": "FUSED radar + optical, training-free z-sum (damagenet)"}
    fused = constant_map(tmp_path / "x_fused.tif", 3.5, "fused_z", tags)
    summary, b, z = run(fused, bld, tmp_path / "o" / "agg.gpkg")
    assert summary["map_kind"] == "fused_z" and summary["threshold"] == 3.0
    assert {"fused_z_mean", "fused_z_max"} <= set(b.columns) and "fused_z_mean" in z.columns
    np.testing.assert_allclose(b.fused_z_mean.dropna(), 3.5)
    assert b.damaged.dropna().eq(1).all()
    style = (tmp_path / "o" / "agg_buildings.qml").read_text()
    assert "mean fused z &gt; 3" in style
    fused = constant_map(tmp_path / "y_fused.tif", 3.5, "fused_z", tags | {"THRESHOLD": "4"})
    summary, b, _ = run(fused, bld, tmp_path / "p" / "agg.gpkg")
    assert summary["threshold"] == 4.0 and b.damaged.dropna().eq(0).all()


def test_maps_that_are_neither_are_refused(place, tmp_path, capsys):
    root, frame, bld = place
    cls = constant_map(tmp_path / "x_pwtt_class.tif", 1, "damage_class", {})
    with pytest.raises(InputFileError, match="band 1 is 'damage_class'"):
        run(cls, bld, tmp_path / "o" / "agg.gpkg")
    t_map = write_map(tmp_path / "town_pwtt.tif", "t")
    args = ["aggregate", "--map", str(t_map), "--buildings", str(bld)]
    assert main([*args, "--out", str(tmp_path / "t" / "agg.gpkg"), "--threshold", "4"]) == 0
    prob = write_map(tmp_path / "town_damage_prob.tif", "prob")
    args = ["aggregate", "--map", str(prob), "--buildings", str(bld), "--threshold", "4"]
    assert main([*args, "--out", str(tmp_path / "p" / "agg.gpkg")]) == 2
    assert "give a value in (0, 1)" in capsys.readouterr().err


def cells(zones: gpd.GeoDataFrame) -> dict[str, tuple[float, ...]]:
    return {
        zid: tuple(np.round(g.bounds, 3))
        for zid, g in zip(zones.zone_id, zones.geometry, strict=True)
    }


def test_grid_cells_do_not_depend_on_the_map_extent(place, tmp_path):
    root, frame, bld = place
    tags = {"THRESHOLD": "0.5"}
    whole = constant_map(tmp_path / "w_damage_prob.tif", 0.7, "damage_probability", tags)
    crop = constant_map(tmp_path / "c_damage_prob.tif", 0.7, "damage_probability", tags, 17, 90)
    sw, _, zw = run(whole, bld, tmp_path / "w" / "agg.gpkg")
    sc, _, zc = run(crop, bld, tmp_path / "c" / "agg.gpkg")
    a, c = cells(zw), cells(zc)
    assert set(c) < set(a) and all(a[k] == c[k] for k in c)  # same ids, same squares
    for left, bottom, right, top in a.values():
        assert left % 500 == 0 and bottom % 500 == 0 and right - left == 500 and top - bottom == 500
    x0, y0 = map_origin()
    assert x0 % 500 != 0 and y0 % 500 != 0  # the maps' corners are off the grid
    zid = zw.zone_id.iloc[0]
    left, bottom = a[zid][:2]
    assert zid == f"500mE{left:.0f}N{bottom:.0f}"
    assert sw["zones"]["grid_crs"] == UTM and sw["zones"]["kind"] == "grid"


def test_pwtt_grid_is_earth_engines_covering_grid_in_web_mercator(place, tmp_path):
    root, frame, bld = place
    tags = {"THRESHOLD": "0.5"}
    whole = constant_map(tmp_path / "w_damage_prob.tif", 0.7, "damage_probability", tags)
    crop = constant_map(tmp_path / "c_damage_prob.tif", 0.7, "damage_probability", tags, 23, 70)
    summary, b, zw = run(whole, bld, tmp_path / "w" / "agg.gpkg", zones="pwtt-grid")
    _, _, zc = run(crop, bld, tmp_path / "c" / "agg.gpkg", zones="pwtt-grid")
    assert summary["zones"]["kind"] == "pwtt grid" and summary["zones"]["grid_crs"] == "EPSG:3857"
    merc = zw.to_crs(3857)
    for zid, g in zip(merc.zone_id, merc.geometry, strict=True):
        left, bottom, right, top = g.bounds
        assert left / 500 == pytest.approx(round(left / 500), abs=1e-6)
        assert top - bottom == pytest.approx(500, abs=1e-3)
        assert zid == f"500mE{round(left):.0f}N{round(bottom):.0f}"
    side = np.sqrt(zw.geometry.area.to_numpy())  # UTM metres on the ground
    lat = Transformer.from_crs(UTM, 4326, always_xy=True).transform(*map_origin())[1]
    np.testing.assert_allclose(side, 500 * np.cos(np.radians(lat)), rtol=0.01)
    shared = set(zc.zone_id)
    assert shared < set(zw.zone_id)
    assert all(cells(zw)[k] == cells(zc)[k] for k in shared)
    # every building lies in the cell its representative point falls in
    inside = b[b.zone_id.notna()]
    z = zw.set_index("zone_id").geometry
    points = shapely.point_on_surface(inside.geometry.to_numpy())
    assert shapely.contains(z.loc[inside.zone_id].to_numpy(), points).all()
