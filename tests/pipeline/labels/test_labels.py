"""Label rasters from UNOSAT damage sites (issue 5)."""

from __future__ import annotations

import datetime as dt
import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import rasterio
from pyproj import Transformer
from shapely.geometry import LineString, Point

from pipeline.aoi import load_aoi
from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.grid import grid_of
from pipeline.labels.rasterise import DAMAGE, NO_DAMAGE, UNKNOWN, make_labels
from pipeline.synthetic import Nuisances, generate_synthetic

AFTER = dt.date(2022, 5, 5)


@pytest.fixture(scope="module")
def aoi(bucha_aoi_path):
    return load_aoi(bucha_aoi_path)


@pytest.fixture(scope="module")
def synth(tmp_path_factory, aoi):
    return generate_synthetic(aoi, tmp_path_factory.mktemp("lab"), seed=11, max_size_km=4.0)


@pytest.fixture(scope="module")
def clean(tmp_path_factory, aoi):
    """A scene without nodata, for exact pixel checks."""
    return generate_synthetic(
        aoi,
        tmp_path_factory.mktemp("clean"),
        seed=11,
        max_size_km=2.0,
        nuisances=Nuisances(cloud=False, swath_edge=False),
    )


def _read(path):
    with rasterio.open(path) as src:
        return src.read(1), src.profile, src.descriptions


def test_shapefile_and_geopackage_give_identical_labels(tmp_path, aoi, synth):
    a = make_labels(aoi, synth.after, synth.unosat_zip, tmp_path / "a.tif")
    b = make_labels(aoi, synth.after, synth.unosat_gpkg, tmp_path / "b.tif")
    la, prof, desc = _read(tmp_path / "a.tif")
    lb, _, _ = _read(tmp_path / "b.tif")
    assert (la == lb).all()
    assert a["positives_used"] == b["positives_used"] > 0
    assert a["excluded_by_date"] > 0 and a["outside_aoi"] >= 3
    assert prof["dtype"] == "uint8" and prof["nodata"] == UNKNOWN
    assert prof["compress"] == "deflate" and desc == ("damage_label",)
    grid = grid_of(synth.after)
    assert prof["crs"] == grid.crs and prof["transform"] == grid.transform
    summary = json.loads((tmp_path / "a.json").read_text())
    for key in (
        "sites_read",
        "sites_per_class",
        "positives_used",
        "excluded_by_date",
        "outside_aoi",
        "damage_pixels",
    ):
        assert key in summary
    assert summary["damage_pixels"] == int((la == DAMAGE).sum())


def test_unknown_outside_aoi_and_on_scene_nodata(tmp_path, aoi, synth):
    make_labels(aoi, synth.after, synth.unosat_gpkg, tmp_path / "l.tif")
    labels, _, _ = _read(tmp_path / "l.tif")
    with rasterio.open(synth.after) as src:
        nodata = src.read(1) == 0
        grid = grid_of(synth.after)
    assert (labels[nodata] == UNKNOWN).all()
    inside = rasterio.features.geometry_mask(
        [aoi.geometry_in(grid.crs)], grid.shape, grid.transform, invert=True
    )
    assert (labels[~inside] == UNKNOWN).all()
    assert (labels[inside & ~nodata] != UNKNOWN).all()
    assert (~inside).any() and (labels == NO_DAMAGE).any()


def _sites_file(tmp_path, rows, crs="EPSG:4326", name="sites.gpkg", **columns):
    """A CDA-like file: rows of (lon, lat, class1, date1, class2, date2)."""
    frame = pd.DataFrame(
        {
            "SiteID": [f"S{i}" for i in range(len(rows))],
            "SensorDate": [r[3] for r in rows],
            "Main_Damage_Site_Class": [r[2] for r in rows],
            "SensorDate_2": [r[5] for r in rows],
            "Main_Damage_Site_Class_2": [r[4] for r in rows],
            **columns,
        }
    )
    gdf = gpd.GeoDataFrame(frame, geometry=[Point(r[0], r[1]) for r in rows], crs="EPSG:4326")
    path = tmp_path / name
    gdf.to_crs(crs).to_file(path, engine="pyogrio")
    return path


def _pixel_centre_lonlat(grid, row, col):
    x = grid.transform.c + (col + 0.5) * 10
    y = grid.transform.f - (row + 0.5) * 10
    t = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    return t.transform(x, y)


def test_first_instance_rule_and_classes(tmp_path, aoi, clean):
    grid = grid_of(clean.after)
    early, late = "2022-04-20", "2022-06-30"
    p = [_pixel_centre_lonlat(grid, 60 + 10 * i, 60) for i in range(5)]
    rows = [
        (*p[0], 1, early, 1, late),  # damaged before the after date: positive
        (*p[1], 6, early, 2, late),  # first damaged after it: not positive
        (*p[2], 6, early, 6, late),  # never damaged
        (*p[3], 4, early, 4, late),  # possible damage: positive only if class 4 chosen
        (*p[4], None, None, 3, early),  # only in the second group, dated early: positive
    ]
    path = _sites_file(tmp_path, rows)
    summary = make_labels(aoi, clean.after, path, tmp_path / "l.tif", radius_m=0)
    labels, _, _ = _read(tmp_path / "l.tif")
    assert [labels[60 + 10 * i, 60] for i in range(5)] == [1, 0, 0, 0, 1]
    assert summary["positives_used"] == 2 and summary["excluded_by_date"] == 1
    make_labels(aoi, clean.after, path, tmp_path / "l4.tif", classes=[1, 2, 3, 4], radius_m=0)
    labels4, _, _ = _read(tmp_path / "l4.tif")
    assert labels4[90, 60] == 1
    # the after date comes from the scene's tag; an override moves the cut-off
    make_labels(
        aoi, clean.after, path, tmp_path / "lat.tif", radius_m=0, after_date=dt.date(2022, 7, 1)
    )
    assert _read(tmp_path / "lat.tif")[0][70, 60] == 1


def test_radius_burns_expected_pixels(tmp_path, aoi, clean):
    grid = grid_of(clean.after)
    t = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    x = grid.transform.c + 100 * 10 + 3.0  # 3 m right of a pixel's left edge
    y = grid.transform.f - 80 * 10 - 6.0
    lon, lat = t.transform(x, y)
    path = _sites_file(tmp_path, [(lon, lat, 1, "2022-04-01", 1, "2022-06-01")])
    for radius in (0, 10, 25):
        make_labels(aoi, clean.after, path, tmp_path / f"r{radius}.tif", radius_m=radius)
        labels, _, _ = _read(tmp_path / f"r{radius}.tif")
        rows, cols = np.mgrid[0 : grid.height, 0 : grid.width]
        cx = grid.transform.c + (cols + 0.5) * 10
        cy = grid.transform.f - (rows + 0.5) * 10
        expected = np.hypot(cx - x, cy - y) <= radius
        expected[80, 100] = True  # the pixel holding the site
        assert ((labels == DAMAGE) == expected).all(), radius
    assert expected.sum() > 9


@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:3857"])
def test_points_land_in_pyproj_pixel(tmp_path, aoi, clean, crs):
    grid = grid_of(clean.after)
    back = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    centre_x, centre_y = grid.transform.c + 1000, grid.transform.f - 1000
    lonlats = [
        back.transform(centre_x + dx, centre_y + dy)
        for dx, dy in ((3.3, -7.1), (-233.7, 412.2), (518.9, -95.5))
    ]
    rows = [(lon, lat, 1, "2022-04-01", 1, "2022-06-01") for lon, lat in lonlats]
    path = _sites_file(tmp_path, rows, crs=crs, name=f"p{crs[-4:]}.gpkg")
    make_labels(aoi, clean.after, path, tmp_path / "l.tif", radius_m=0)
    labels, _, _ = _read(tmp_path / "l.tif")
    t = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True)
    expected = np.zeros(grid.shape, dtype=bool)
    for lon, lat in lonlats:
        x, y = t.transform(lon, lat)
        expected[int((grid.transform.f - y) // 10), int((x - grid.transform.c) // 10)] = True
    assert ((labels == DAMAGE) == expected).all()


def test_text_classes_string_dates_and_overrides(tmp_path, aoi, clean):
    grid = grid_of(clean.after)
    p = [_pixel_centre_lonlat(grid, 50, 50 + 10 * i) for i in range(3)]
    frame = pd.DataFrame(
        {
            "Date_A": ["20/04/2022", "2022-04-21", "01/07/2022"],
            "Klass_A": ["Destroyed", "Severe Damage", "Moderate Damage"],
        }
    )
    gdf = gpd.GeoDataFrame(frame, geometry=[Point(*q) for q in p], crs="EPSG:4326")
    path = tmp_path / "custom.geojson"
    gdf.to_file(path, engine="pyogrio")
    with pytest.raises(PipelineError, match="columns present:.*Date_A"):
        make_labels(aoi, clean.after, path, tmp_path / "x.tif")
    assert not (tmp_path / "x.tif").exists()
    object.__setattr__(aoi.labels, "fields", {"date": "Date_A", "class": "Klass_A"})
    try:
        make_labels(aoi, clean.after, path, tmp_path / "l.tif", radius_m=0)
    finally:
        object.__setattr__(aoi.labels, "fields", {})
    labels, _, _ = _read(tmp_path / "l.tif")
    assert [labels[50, 50 + 10 * i] for i in range(3)] == [1, 1, 0]  # 1 July is after


def test_layer_picked_among_several(tmp_path, aoi, synth):
    path = tmp_path / "multi.gpkg"
    sites = gpd.read_file(synth.unosat_gpkg)
    extent = gpd.GeoDataFrame({"name": ["area"]}, geometry=[aoi.geometry], crs="EPSG:4326")
    extent.to_file(path, layer="Assessment_Area", engine="pyogrio")
    sites.to_file(path, layer="Damage_Sites_Bucha", engine="pyogrio", append=True)
    summary = make_labels(aoi, synth.after, path, tmp_path / "l.tif")
    assert summary["layer"] == "Damage_Sites_Bucha"


def test_file_geodatabase(tmp_path, aoi, synth):
    path = tmp_path / "CDA.gdb"
    sites = gpd.read_file(synth.unosat_gpkg)
    try:
        pyogrio.write_dataframe(sites, path, layer="Damage_Sites", driver="OpenFileGDB")
    except Exception as exc:  # GDAL builds without FileGDB write support
        pytest.skip(f"cannot write a file geodatabase here: {exc}")
    summary = make_labels(aoi, synth.after, path, tmp_path / "l.tif")
    ref = make_labels(aoi, synth.after, synth.unosat_gpkg, tmp_path / "ref.tif")
    assert summary["positives_used"] == ref["positives_used"]


@pytest.mark.parametrize(
    "case, message",
    [
        ("empty", "is empty"),
        ("lines", "no point geometries"),
        ("nocolumns", "no recognisable damage"),
        ("nocrs", "has no CRS"),
        ("elsewhere", "falls on the grid"),
    ],
)
def test_bad_unosat_files(tmp_path, aoi, synth, case, message):
    sites = gpd.read_file(synth.unosat_gpkg)
    path = tmp_path / f"{case}.gpkg"
    if case == "empty":
        sites.iloc[:0].to_file(path, engine="pyogrio")
    elif case == "lines":
        gpd.GeoDataFrame(
            sites.drop(columns="geometry").iloc[:2],
            geometry=[LineString([(30, 50), (30.1, 50.1)])] * 2,
            crs="EPSG:4326",
        ).to_file(path, engine="pyogrio")
    elif case == "nocolumns":
        sites[["SiteID", "geometry"]].to_file(path, engine="pyogrio")
    elif case == "nocrs":
        path = tmp_path / "nocrs.shp"
        sites.set_crs(None, allow_override=True).to_file(path, engine="pyogrio")
    else:
        moved = sites.copy()
        moved["geometry"] = moved.geometry.translate(5, 0)
        moved.to_file(path, engine="pyogrio")
    out = tmp_path / "out.tif"
    with pytest.raises(PipelineError, match=message) as err:
        make_labels(aoi, synth.after, path, out)
    assert str(path) in str(err.value)
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_cli(tmp_path, bucha_aoi_path, synth, capsys):
    out = tmp_path / "labels.tif"
    assert (
        main(
            [
                "labels",
                str(bucha_aoi_path),
                "--grid",
                str(synth.after),
                "--unosat",
                str(synth.unosat_zip),
                "--out",
                str(out),
                "--classes",
                "1,2",
                "--radius-m",
                "15",
            ]
        )
        == 0
    )
    assert json.loads(out.with_suffix(".json").read_text())["damage_classes"] == [1, 2]
    assert (
        main(
            [
                "labels",
                str(bucha_aoi_path),
                "--grid",
                str(synth.after),
                "--unosat",
                str(synth.unosat_zip),
                "--out",
                str(tmp_path / "x.tif"),
                "--classes",
                "1,9",
            ]
        )
        == 2
    )
    assert "unknown codes [9]" in capsys.readouterr().err


def test_unosat_fetch(tmp_path, aoi_copy):
    import responses

    from pipeline.labels.fetch import fetch_unosat

    def with_url(doc):
        doc["features"][0]["properties"]["labels"]["url"] = "https://example.org/cda.zip"

    aoi = load_aoi(aoi_copy("bucha", with_url))
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, "https://example.org/cda.zip", status=503)
        rsps.add(responses.GET, "https://example.org/cda.zip", body=b"PK\x03\x04zip-bytes")
        dest = fetch_unosat(aoi, tmp_path / "u" / "bucha.zip")
    assert dest.read_bytes() == b"PK\x03\x04zip-bytes"
    plain = load_aoi(aoi_copy("irpin"))
    with pytest.raises(PipelineError, match="no UNOSAT file at .* and no labels.url"):
        fetch_unosat(plain, tmp_path / "irpin.zip")
    assert not (tmp_path / "irpin.zip").exists()


def test_aoi_outside_its_assessment_area_refused(aoi_copy, tmp_path, capsys):
    """Labels for ground UNOSAT never assessed would all be unknown: refused, nothing written."""
    far = {
        "type": "Polygon",
        "coordinates": [[[36.0, 49.9], [36.1, 49.9], [36.1, 50.0], [36.0, 50.0], [36.0, 49.9]]],
    }

    def elsewhere(doc):
        doc["features"][0]["properties"]["assessment_area"] = far

    path = aoi_copy("bucha", elsewhere)
    out = tmp_path / "l.tif"
    for name in ("none.tif", "none.zip"):  # named inputs exist; refused before they are read
        (tmp_path / name).write_bytes(b"")
    assert (
        main(
            [
                "labels",
                str(path),
                "--grid",
                str(tmp_path / "none.tif"),
                "--unosat",
                str(tmp_path / "none.zip"),
                "--out",
                str(out),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "entirely outside its assessment area" in err and str(path) in err
    assert not out.exists()


def test_same_inputs_same_bytes_nvd_file_included(tmp_path, aoi, clean):
    for run in ("a", "b"):
        make_labels(aoi, clean.after, clean.unosat_zip, tmp_path / run / "labels.tif")
    for name in ("labels.tif", "labels.json", "labels_nvd.gpkg"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
