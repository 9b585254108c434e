"""``damagenet aggregate``: zonal values vs brute force; edges, nodata, CRS, formats, errors."""

from __future__ import annotations

import json
import sqlite3

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin
from support.cli import leftovers, refuse_move_into

from damagenet.buildings.aggregate import AggregateOptions, aggregate
from damagenet.buildings.zones import wilson
from damagenet.cli import main
from damagenet.errors import DamagenetUsageError, GridMismatchError, InputFileError

CRS_UTM = "EPSG:32636"
X0, Y0, PX = 500_000.0, 5_600_000.0, 10.0
H, W = 12, 16
NODATA = -9999.0


def write_map(path, values, threshold: str | None = "0.5000", nodata=NODATA):
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=values.shape[1],
        height=values.shape[0],
        count=1,
        dtype="float32",
        crs=CRS_UTM,
        transform=from_origin(X0, Y0, PX, PX),
        nodata=nodata,
        tiled=True,
        blockxsize=16,
        blockysize=16,
    ) as dst:
        dst.write(values.astype("float32"), 1)
        if threshold is not None:
            dst.update_tags(THRESHOLD=threshold)
    return path


@pytest.fixture
def prob_map(tmp_path):
    rng = np.random.default_rng(3)
    values = rng.random((H, W))
    values[8:, :4] = NODATA  # a cloud in the bottom-left corner
    return write_map(tmp_path / "town_damage_prob.tif", values, "0.4500"), values


def footprints() -> list:
    """Footprints crossing pixel edges at odd angles, one crossing the map's right edge."""
    rot = [
        shapely.affinity.rotate(shapely.box(X0 + 23, Y0 - 47, X0 + 41, Y0 - 31), 30),
        shapely.Polygon([(X0 + 61, Y0 - 12), (X0 + 88, Y0 - 19), (X0 + 70, Y0 - 44)]),
        shapely.box(X0 + 101, Y0 - 103, X0 + 104, Y0 - 101),  # inside one pixel
        shapely.box(X0 + 150, Y0 - 65, X0 + 171, Y0 - 52),  # half beyond the right edge
        shapely.box(X0 + 5, Y0 - 115, X0 + 25, Y0 - 95),  # entirely on the nodata cloud
        shapely.box(X0 - 80, Y0 + 40, X0 - 60, Y0 + 60),  # outside the map
        shapely.MultiPolygon(
            [
                shapely.box(X0 + 122, Y0 - 33, X0 + 131, Y0 - 21),
                shapely.box(X0 + 133, Y0 - 33, X0 + 139, Y0 - 28),
            ]
        ),
        shapely.box(X0 + 30, Y0 - 100, X0 + 75, Y0 - 60).difference(  # a courtyard
            shapely.box(X0 + 42, Y0 - 88, X0 + 63, Y0 - 71)
        ),
    ]
    return rot


def brute_force(geom, values) -> tuple[float, float, float]:
    """Mean, max and covered share by intersecting the footprint with every pixel of the map."""
    total = weight = 0.0
    best = -np.inf
    for r in range(H):
        for c in range(W):
            cell = shapely.box(X0 + c * PX, Y0 - (r + 1) * PX, X0 + (c + 1) * PX, Y0 - r * PX)
            a = geom.intersection(cell).area
            if a > 0 and values[r, c] != NODATA:
                total += a * values[r, c]
                weight += a
                best = max(best, values[r, c])
    if weight == 0:
        return np.nan, np.nan, 0.0
    return total / weight, best, weight / geom.area


def write_buildings(path, crs=CRS_UTM, **columns):
    geoms = footprints()
    gdf = gpd.GeoDataFrame(
        {"building_id": np.arange(1, len(geoms) + 1), **columns}, geometry=geoms, crs=CRS_UTM
    )
    gdf.to_crs(crs).to_file(path, layer="buildings")
    return path


def run(tmp_path, map_path, buildings, name="out", **opts):
    out = tmp_path / name / "agg.gpkg"
    summary = aggregate(map_path, buildings, out, AggregateOptions(progress=False, **opts))
    return summary, gpd.read_file(out, layer="buildings"), gpd.read_file(out, layer="zones")


def test_building_values_match_brute_force(tmp_path, prob_map):
    map_path, values = prob_map
    bld = write_buildings(tmp_path / "b.gpkg")
    summary, b, _ = run(tmp_path, map_path, bld, batch_size=3)
    for geom, row in zip(footprints(), b.itertuples(), strict=True):
        mean, best, share = brute_force(geom, values)
        if np.isnan(mean):
            assert pd.isna(row.probability_mean) and pd.isna(row.damaged)
        else:
            assert row.probability_mean == pytest.approx(mean, rel=1e-6)
            assert row.probability_max == pytest.approx(best, rel=1e-6)
            assert row.valid_share == pytest.approx(share, rel=1e-6)
            assert row.damaged == int(mean >= 0.45)
    assert summary["coverage"].startswith("exact")


def test_edge_nodata_and_outside_are_counted_apart(tmp_path, prob_map):
    map_path, _ = prob_map
    summary, b, zones = run(tmp_path, map_path, write_buildings(tmp_path / "b.gpkg"))
    status = dict(zip(b.building_id, b.status, strict=True))
    assert status[4] == "partial" and b.valid_share[3] == pytest.approx(10 / 21)
    assert status[5] == "nodata" and status[6] == "outside map"
    assert summary["buildings_on_nodata"] == 1 and summary["buildings_outside_map"] == 1
    assert summary["buildings_assessed"] == 6
    # the nodata building sits in a grid cell: counted there, but not as undamaged
    assert zones.buildings.sum() == 7 and zones.buildings_no_data.sum() == 1
    assert zones.buildings_assessed.sum() == 6
    assert zones.damaged.sum() == summary["buildings_damaged"]


def test_footprints_in_wgs84_match_utm(tmp_path, prob_map):
    map_path, _ = prob_map
    _, utm, _ = run(tmp_path, map_path, write_buildings(tmp_path / "u.gpkg"), "u")
    _, geo, _ = run(
        tmp_path, map_path, write_buildings(tmp_path / "g.geojson", crs="EPSG:4326"), "g"
    )
    assert geo.crs == utm.crs
    np.testing.assert_allclose(geo.probability_mean, utm.probability_mean, rtol=1e-5)
    np.testing.assert_allclose(geo.area_m2, utm.area_m2, rtol=1e-5)
    assert list(geo.status) == list(utm.status)


def _layouts(tmp_path):
    """One small file per supported format, each in a real provider's column layout."""
    geoms = footprints()[:4]
    utm = gpd.GeoSeries(geoms, crs=CRS_UTM)
    ll = utm.to_crs(4326)
    n = len(geoms)
    osm = gpd.GeoDataFrame(
        {"osm_id": [f"w{i}" for i in range(n)], "building": "yes", "name": None}, geometry=ll
    )
    overture = gpd.GeoDataFrame(
        {
            "id": [f"08b{i:013x}" for i in range(n)],
            "height": [6.5, 9.0, np.nan, 3.0],
            "sources": [[{"dataset": "OpenStreetMap"}]] * n,
        },
        geometry=ll,
    )
    microsoft = gpd.GeoDataFrame({"height": [-1.0] * n, "confidence": [0.9] * n}, geometry=ll)
    centre = utm.centroid.to_crs(4326)
    google = pd.DataFrame(
        {
            "latitude": centre.y,
            "longitude": centre.x,
            "area_in_meters": utm.area,
            "confidence": 0.8,
            "geometry": shapely.to_wkt(ll.values, rounding_precision=-1),
            "full_plus_code": [f"9G{i}X+XX" for i in range(n)],
        }
    )
    paths = {
        "osm.gpkg": ("osm_id", ["building", "name"]),
        "overture.parquet": ("id", ["height"]),
        "microsoft.fgb": (None, ["height", "confidence"]),
        "osm.shp": ("osm_id", ["building"]),
        "microsoft.geojson": (None, ["height", "confidence"]),
        "google.csv": ("full_plus_code", ["confidence", "area_in_meters"]),
    }
    osm.to_file(tmp_path / "osm.gpkg")
    overture.to_parquet(tmp_path / "overture.parquet")
    microsoft.to_file(tmp_path / "microsoft.fgb")
    osm.drop(columns="name").to_file(tmp_path / "osm.shp")
    microsoft.to_file(tmp_path / "microsoft.geojson")
    google.to_csv(tmp_path / "google.csv", index=False)
    return paths


def test_every_format_and_layout(tmp_path, prob_map):
    map_path, values = prob_map
    expected = [brute_force(g, values)[0] for g in footprints()[:4]]
    for name, (id_col, kept) in _layouts(tmp_path).items():
        summary, b, _ = run(tmp_path, map_path, tmp_path / name, name.replace(".", "_"))
        assert summary["id_column"] == id_col, name
        assert summary["buildings"] == 4, name
        for col in kept:
            assert col in b.columns, (name, col)
        if id_col is None:
            assert list(b.building_id) == [1, 2, 3, 4]
        # FlatGeobuf's spatial index reorders features: compare as sets
        np.testing.assert_allclose(
            np.sort(b.probability_mean), np.sort(expected), rtol=1e-5, err_msg=name
        )


def test_outputs_styles_and_truth_metrics(tmp_path, prob_map):
    map_path, values = prob_map
    truth = np.array([1, 0, 1, 1, 0, 1, 0, 1])
    bld = write_buildings(tmp_path / "b.gpkg", damaged=truth)
    summary, b, _ = run(tmp_path, map_path, bld)
    out = tmp_path / "out"
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "agg.gpkg",
        "agg_buildings.csv",
        "agg_buildings.qml",
        "agg_summary.json",
        "agg_zones.csv",
        "agg_zones.qml",
    ]
    with sqlite3.connect(out / "agg.gpkg") as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 10200  # GPKG 1.2
        styles = dict(
            con.execute("SELECT f_table_name, styleQML FROM layer_styles WHERE useAsDefault")
        )
    assert set(styles) == {"buildings", "zones"} and "RuleRenderer" in styles["buildings"]
    assert (out / "agg_buildings.qml").read_text() == styles["buildings"]
    assert len(pd.read_csv(out / "agg_buildings.csv")) == 8
    saved = json.loads((out / "agg_summary.json").read_text())
    pred = b.damaged.to_numpy(dtype=float)
    known = ~np.isnan(pred)
    tp = int(((pred == 1) & (truth == 1) & known).sum())
    fp = int(((pred == 1) & (truth == 0) & known).sum())
    m = saved["truth_metrics"]
    assert (m["tp"], m["fp"]) == (tp, fp)
    assert m["buildings_with_truth_but_no_data"] == 2
    assert m["precision"] == pytest.approx(tp / (tp + fp))
    assert m["recall"] == pytest.approx(tp / int(((truth == 1) & known).sum()))
    assert "truth_damaged" in b.columns


def test_same_inputs_same_bytes(tmp_path, prob_map):
    map_path, _ = prob_map
    bld = write_buildings(tmp_path / "b.gpkg")
    run(tmp_path, map_path, bld, "a")
    run(tmp_path, map_path, bld, "b")
    for name in ("agg.gpkg", "agg_buildings.csv", "agg_zones.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_outputs_published_as_one_set(tmp_path, prob_map, monkeypatch):
    """A failure at the set's last file leaves none of it, and a run that fails over an
    earlier one's outputs leaves those as they were."""
    map_path, _ = prob_map
    bld = write_buildings(tmp_path / "b.gpkg")
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        refuse_move_into(m, out / "agg_zones.qml")
        with pytest.raises(OSError, match="Input/output"):
            run(tmp_path, map_path, bld)
    assert leftovers(out) == []
    run(tmp_path, map_path, bld)
    before = {name: (out / name).read_bytes() for name in leftovers(out)}
    refuse_move_into(monkeypatch, out / "agg_zones.qml")
    with pytest.raises(OSError, match="Input/output"):
        run(tmp_path, map_path, bld, threshold=0.9)
    assert {name: (out / name).read_bytes() for name in leftovers(out)} == before


def test_districts_with_wilson_interval(tmp_path, prob_map):
    map_path, _ = prob_map
    west = shapely.box(X0, Y0 - 120, X0 + 80, Y0)
    east = shapely.box(X0 + 80, Y0 - 120, X0 + 200, Y0)
    gpd.GeoDataFrame({"name": ["West", "East"]}, geometry=[west, east], crs=CRS_UTM).to_crs(
        4326
    ).to_file(tmp_path / "districts.geojson")
    summary, b, z = run(
        tmp_path,
        map_path,
        write_buildings(tmp_path / "b.gpkg"),
        zones=tmp_path / "districts.geojson",
    )
    assert list(z.zone_name) == ["West", "East"] and list(z.zone_id) == ["1", "2"]
    assert z.buildings.sum() == 7  # the building outside the map is in no district
    lo, hi = wilson(z.damaged.to_numpy(), z.buildings_assessed.to_numpy())
    np.testing.assert_allclose(z.damaged_share_low, lo)
    np.testing.assert_allclose(z.damaged_share_high, hi)
    assert (z.damaged_share_low <= z.damaged_share).all()
    assert summary["zones"]["interval"] == "Wilson 95%"


def test_wilson_known_value():
    lo, hi = wilson(np.array([5]), np.array([10]))
    assert lo[0] == pytest.approx(0.2366, abs=1e-4) and hi[0] == pytest.approx(0.7634, abs=1e-4)


def test_uncertainty_spread_interval(tmp_path, prob_map):
    map_path, values = prob_map
    spread = np.full((H, W), 0.2, dtype="float32")
    unc = write_map(tmp_path / "unc.tif", spread, threshold=None)
    summary, b, z = run(tmp_path, map_path, write_buildings(tmp_path / "b.gpkg"), uncertainty=unc)
    assert b.uncertainty_mean.dropna().to_numpy() == pytest.approx(0.2)
    p = b.probability_mean.dropna().to_numpy()
    low = int((p - 1.959964 * 0.2 >= 0.45).sum())
    high = int((p + 1.959964 * 0.2 >= 0.45).sum())
    assessed = z.buildings_assessed.sum()
    assert (z.damaged_share_low * z.buildings_assessed).sum() == pytest.approx(low)
    assert (z.damaged_share_high * z.buildings_assessed).sum() == pytest.approx(high)
    assert assessed == 6 and summary["zones"]["interval"] == "ensemble spread 95%"


def test_threshold_from_summary_or_option(tmp_path):
    values = np.full((H, W), 0.4)
    map_path = write_map(tmp_path / "x_damage_prob.tif", values, threshold=None)
    bld = write_buildings(tmp_path / "b.gpkg")
    with pytest.raises(InputFileError, match="threshold is unknown"):
        aggregate(map_path, bld, tmp_path / "o" / "a.gpkg", AggregateOptions(progress=False))
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
    (tmp_path / "x_damage_summary.json").write_text(json.dumps({"threshold": 0.3}))
    summary, b, _ = run(tmp_path, map_path, bld)
    assert summary["threshold"] == 0.3 and b.damaged.dropna().eq(1).all()
    summary, b, _ = run(tmp_path, map_path, bld, "o2", threshold=0.45)
    assert summary["threshold"] == 0.45 and b.damaged.dropna().eq(0).all()


def test_bad_inputs_are_typed_errors(tmp_path, prob_map):
    map_path, _ = prob_map
    bld = write_buildings(tmp_path / "b.gpkg")
    opts = AggregateOptions(progress=False)
    with pytest.raises(DamagenetUsageError, match="not found"):  # a named file: exit 2
        aggregate(map_path, tmp_path / "missing.gpkg", tmp_path / "o.gpkg", opts)
    with pytest.raises(DamagenetUsageError, match="not found"):
        aggregate(tmp_path / "missing.tif", bld, tmp_path / "o.gpkg", opts)
    pd.DataFrame({"id": [1], "height": [3.0]}).to_csv(tmp_path / "nogeom.csv", index=False)
    with pytest.raises(InputFileError, match="no WKT geometry"):
        aggregate(map_path, tmp_path / "nogeom.csv", tmp_path / "o.gpkg", opts)
    pyogrio.write_dataframe(pd.DataFrame({"id": [1]}), tmp_path / "table.gpkg")
    with pytest.raises(InputFileError, match="no layer with a geometry"):
        aggregate(map_path, tmp_path / "table.gpkg", tmp_path / "o.gpkg", opts)
    other = tmp_path / "other.tif"
    with rasterio.open(
        other,
        "w",
        driver="GTiff",
        width=4,
        height=4,
        count=1,
        dtype="float32",
        crs=CRS_UTM,
        transform=from_origin(X0, Y0, PX, PX),
    ) as dst:
        dst.write(np.zeros((1, 4, 4), dtype="float32"))
    with pytest.raises(GridMismatchError):
        aggregate(
            map_path, bld, tmp_path / "o.gpkg", AggregateOptions(progress=False, uncertainty=other)
        )
    with pytest.raises(DamagenetUsageError):
        aggregate(map_path, bld, tmp_path / "o.csv", opts)
    with pytest.warns(UserWarning, match="crs"):
        pyogrio.write_dataframe(gpd.GeoDataFrame(geometry=footprints()[:1]), tmp_path / "nocrs.shp")
    with pytest.raises(InputFileError, match="does not declare its CRS"):
        aggregate(map_path, tmp_path / "nocrs.shp", tmp_path / "o.gpkg", opts)
    assert not list(tmp_path.glob("o.*")) and not list(tmp_path.glob(".aggregate-*"))


def test_cli_exit_codes(tmp_path, prob_map, capsys):
    map_path, _ = prob_map
    bld = write_buildings(tmp_path / "b.gpkg")
    out = tmp_path / "cli" / "agg.gpkg"
    assert (
        main(
            [
                "-q",
                "aggregate",
                "--map",
                str(map_path),
                "--buildings",
                str(bld),
                "--out",
                str(out),
                "--grid-m",
                "50",
            ]
        )
        == 0
    )
    assert len(gpd.read_file(out, layer="zones")) >= 4
    assert (
        main(
            [
                "aggregate",
                "--map",
                str(map_path),
                "--buildings",
                str(tmp_path / "nope.fgb"),
                "--out",
                str(tmp_path / "x.gpkg"),
            ]
        )
        == 2
    )
    assert "nope.fgb" in capsys.readouterr().err
    args = ["aggregate", "--map", str(map_path), "--buildings", str(bld), "--out", str(out)]
    assert main([*args, "--threshold", "1.5"]) == 2  # a probability map: (0, 1) only
    assert "probability map" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([*args, "--threshold", "high"])
    assert exc.value.code == 2


def test_cell_overlap_matches_geos_on_random_concave_shapes():
    from damagenet.buildings.zonal import MapGrid, pixel_pairs

    rng = np.random.default_rng(7)
    grid = MapGrid(X0, Y0, PX, PX, W, H, 16, 16)
    shapes = []
    for _ in range(60):  # random stars: concave, many vertices, crossing several cells
        k = int(rng.integers(5, 12))
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        rad = rng.uniform(4, 30, k)
        cx, cy = X0 + rng.uniform(0, W * PX), Y0 - rng.uniform(0, H * PX)
        shapes.append(shapely.Polygon(np.c_[cx + rad * np.cos(ang), cy + rad * np.sin(ang)]))
    geoms = np.array([shapely.make_valid(s) for s in shapes], dtype=object)
    idx, rows, cols, w = pixel_pairs(grid, geoms)
    cells = shapely.box(X0 + cols * PX, Y0 - (rows + 1) * PX, X0 + (cols + 1) * PX, Y0 - rows * PX)
    np.testing.assert_allclose(
        w, shapely.area(shapely.intersection(geoms[idx], cells)), rtol=1e-7, atol=1e-6
    )
    total = np.bincount(idx, w, minlength=len(geoms))
    inside = shapely.area(shapely.clip_by_rect(geoms, X0, Y0 - H * PX, X0 + W * PX, Y0))
    np.testing.assert_allclose(total, inside, rtol=1e-7, atol=1e-6)


def test_missing_point_and_invalid_geometries(tmp_path, prob_map):
    map_path, values = prob_map
    bowtie = shapely.Polygon(
        [(X0 + 20, Y0 - 20), (X0 + 60, Y0 - 60), (X0 + 60, Y0 - 20), (X0 + 20, Y0 - 60)]
    )  # self-intersecting: made valid
    gdf = gpd.GeoDataFrame(
        {"osm_id": ["a", "b", "c"]},
        geometry=[None, shapely.Point(X0 + 50, Y0 - 50), bowtie],
        crs=CRS_UTM,
    )
    gdf.to_file(tmp_path / "odd.gpkg")
    summary, b, _ = run(tmp_path, map_path, tmp_path / "odd.gpkg")
    assert list(b.status[:2]) == ["no polygon", "no polygon"]
    assert summary["buildings_without_polygon"] == 2 and summary["buildings"] == 3
    mean, _, _ = brute_force(shapely.make_valid(bowtie), values)
    assert b.probability_mean[2] == pytest.approx(mean, rel=1e-6)
    assert b.area_m2[2] == pytest.approx(800.0)


def test_layer_named_for_buildings_is_chosen(tmp_path):
    from damagenet.buildings.footprints import open_vector

    path = tmp_path / "extract.gpkg"
    line = gpd.GeoDataFrame(
        {"osm_id": ["1"]}, geometry=[shapely.LineString([(0, 0), (1, 1)])], crs=4326
    )
    line.to_file(path, layer="gis_osm_roads_free_1")
    gpd.GeoDataFrame({"osm_id": ["2"]}, geometry=[shapely.box(0, 0, 1, 1)], crs=4326).to_file(
        path, layer="gis_osm_buildings_a_free_1"
    )
    assert open_vector(path).layer == "gis_osm_buildings_a_free_1"
    line.to_file(path, layer="rivers")
    line.to_file(tmp_path / "two.gpkg", layer="roads")
    line.to_file(tmp_path / "two.gpkg", layer="rivers")
    with pytest.raises(InputFileError, match="2 geometry layers"):
        open_vector(tmp_path / "two.gpkg")


def test_huge_footprints_are_clipped_in_chunks(tmp_path, prob_map, monkeypatch):
    import damagenet.buildings.zonal

    map_path, _ = prob_map
    bld = write_buildings(tmp_path / "b.gpkg")
    _, whole, _ = run(tmp_path, map_path, bld, "whole")
    monkeypatch.setattr(damagenet.buildings.zonal, "MAX_VERTICES", 7)
    _, chunked, _ = run(tmp_path, map_path, bld, "chunked")
    np.testing.assert_allclose(chunked.probability_mean, whole.probability_mean)
    np.testing.assert_allclose(chunked.valid_share, whole.valid_share)
