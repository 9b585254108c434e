"""UNOSAT damage assessments in each published layout, read right or refused (issue 14)."""

from __future__ import annotations

import datetime as dt
import json
import zipfile

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import rasterio
from pyproj import Transformer
from shapely.geometry import Point, box

from pipeline.aoi import load_aoi
from pipeline.cli import main
from pipeline.errors import InputFileError, PipelineUsageError
from pipeline.grid import grid_of
from pipeline.labels.rasterise import make_labels, nvd_path
from pipeline.labels.unosat import read_sites
from pipeline.labels.unosat_values import parse_class_map
from pipeline.synthetic import Nuisances, generate_synthetic

AFTER = "2022-05-05"  # the clean scene's acquisition date


@pytest.fixture(scope="module")
def aoi(bucha_aoi_path):
    return load_aoi(bucha_aoi_path)


@pytest.fixture(scope="module")
def scene(tmp_path_factory, aoi):
    return generate_synthetic(
        aoi,
        tmp_path_factory.mktemp("scene"),
        seed=3,
        max_size_km=2.0,
        nuisances=Nuisances(cloud=False, swath_edge=False),
    ).after


@pytest.fixture(scope="module")
def points(scene):
    """Lon/lat of ten pixel centres along row 60 of the scene grid, 10 pixels apart."""
    grid = grid_of(scene)
    t = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    return [
        t.transform(grid.transform.c + (60 + 10 * i + 0.5) * 10, grid.transform.f - (60 + 0.5) * 10)
        for i in range(10)
    ]


def _labels(aoi, scene, path, tmp_path, **kw):
    out = tmp_path / "labels.tif"
    summary = make_labels(aoi, scene, path, out, radius_m=0, **kw)
    with rasterio.open(out) as src:
        row = src.read(1)[60]
    return [int(row[60 + 10 * i]) for i in range(10)], summary


def _frame(points, columns, crs="EPSG:4326"):
    n = len(next(iter(columns.values())))
    return gpd.GeoDataFrame(columns, geometry=[Point(*points[i]) for i in range(n)], crs=crs)


def test_geodatabase_with_eight_date_groups(tmp_path, aoi, scene, points):
    """A GDB layer named like UNOSAT's, eight groups, damage first seen in group 7 or 8."""
    dates = pd.to_datetime(
        [
            "2022-03-01",
            "2022-03-10",
            "2022-03-20",
            "2022-03-28",
            "2022-04-05",
            "2022-04-15",
            "2022-04-25",
            "2022-06-01",
        ]
    )
    classes = {1: [6, 6, 6], 7: [6, 2, 6], 8: [6, 6, 1]}  # site 1 damaged in 7, site 2 in 8
    cols = {
        "SiteID": ["A", "B", "C"],
        "EventCode": ["CE20220224UKR"] * 3,
        "Municipality": ["Bucha"] * 3,
    }
    for g in range(1, 9):
        suffix = "" if g == 1 else f"_{g}"
        cols[f"SensorDate{suffix}"] = [dates[g - 1]] * 3
        cols[f"Main_Damage_Site_Class{suffix}"] = classes.get(g, [6, 6, 6])
        if g > 1:
            cols[f"Damage_Status{suffix}"] = ["No Change"] * 3
    path = tmp_path / "UKR_CDA.gdb"
    pyogrio.write_dataframe(
        _frame(points, cols), path, layer="Damage_Sites_Bucha_20220601", driver="OpenFileGDB"
    )
    got, summary = _labels(aoi, scene, path, tmp_path)
    assert got[:3] == [0, 1, 0]
    assert len(summary["date_columns"]) == 8 and summary["excluded_by_date"] == 1
    assert summary["layer"] == "Damage_Sites_Bucha_20220601"


def test_shapefile_truncated_names_three_groups(tmp_path, aoi, scene, points):
    """Shapefiles truncate to SensorDa_1, Main_Dam_1, Damage_S_1...: groups still paired."""
    cols = {
        "SiteID": ["A", "B"],
        "SensorDate": ["2022-03-01"] * 2,
        "Main_Damage_Site_Class": [6, 6],
        "SensorDate_2": ["2022-04-01"] * 2,
        "Main_Damage_Site_Class_2": [6, 3],
        "Damage_Status_2": ["", "New"],
        "SensorDate_3": ["2022-04-20"] * 2,
        "Main_Damage_Site_Class_3": [2, 3],
        "Damage_Status_3": ["New", "No Change"],
    }
    frame = _frame(points, cols)
    for c in ("SensorDate", "SensorDate_2", "SensorDate_3"):
        frame[c] = pd.to_datetime(frame[c]).dt.date
    folder = tmp_path / "shp"
    folder.mkdir()
    pyogrio.write_dataframe(frame, folder / "Damage_Sites.shp")
    names = pyogrio.read_info(folder / "Damage_Sites.shp")["fields"].tolist()
    assert "Main_Dam_1" in names and "SensorDa_2" in names  # GDAL's truncation
    archive = tmp_path / "cda.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in folder.iterdir():
            zf.write(f, f.name)
    got, summary = _labels(aoi, scene, archive, tmp_path)
    assert got[:2] == [1, 1]
    assert summary["class_columns"] == ["Main_Damag", "Main_Dam_1", "Main_Dam_2"]


def test_feature_service_epoch_milliseconds(tmp_path, aoi, scene, points):
    """ArcGIS REST exports: dates in epoch ms, class renamed MainDamage."""
    ms = [
        int(pd.Timestamp(d, tz="UTC").timestamp() * 1000)
        for d in ("2022-04-20", "2022-06-30", "2022-04-20")
    ]
    path = tmp_path / "query.geojson"
    _frame(points, {"SiteID": ["A", "B", "C"], "SensorDate": ms, "MainDamage": [1, 2, 6]}).to_file(
        path, engine="pyogrio"
    )
    assert pyogrio.read_dataframe(path)["SensorDate"].dtype.kind == "i"
    got, summary = _labels(aoi, scene, path, tmp_path)
    assert got[:3] == [1, 0, 0]
    assert summary["excluded_by_date"] == 1
    sites = read_sites(path)
    assert str(sites.frame["first_date"].iloc[0])[:10] == "2022-04-20"
    assert read_sites(path).frame["first_date"].isna().tolist() == [False, False, True]


@pytest.mark.parametrize(
    "spelling, code",
    [
        ("Destroyed", 1),
        ("Severe Damage", 2),
        ("Severely Damaged", 2),
        ("Moderate Damage", 3),
        ("moderately damaged", 3),
        ("Possible Damage", 4),
        ("Possibly Damaged", 4),
        ("No Visible Damage", 6),
        ("1 - Destroyed", 1),
        ("Severe_Damage", 2),
        ("Possible Damage from adjacent impact / debris", 11),
        ("Destroyed (1)", 1),
    ],
)
def test_class_spellings(tmp_path, spelling, code, points):
    path = tmp_path / "t.gpkg"
    _frame(points, {"SensorDate": ["05/05/2022"], "Main_Damage_Site_Class": [spelling]}).to_file(
        path, engine="pyogrio"
    )
    frame = read_sites(path, damage_classes=[1, 2, 3, 4, 11]).frame
    assert frame["last_class"].iloc[0] == code
    assert str(frame["first_date"].iloc[0])[:10] == (AFTER if code != 6 else "NaT")


def test_unknown_codes_refused_unless_mapped(tmp_path, aoi_copy, scene, points):
    """Code 7 was silently 'undamaged'; now an error listing the codes, or mapped."""
    path = tmp_path / "codes.gpkg"
    _frame(points, {"SensorDate": ["2022-04-20"] * 3, "Main_Damage_Site_Class": [1, 7, 7]}).to_file(
        path, engine="pyogrio"
    )
    plain = load_aoi(aoi_copy("bucha"))
    out = tmp_path / "x.tif"
    with pytest.raises(InputFileError, match=r"does not know: \{'7': 2\}.*class_map") as err:
        make_labels(plain, scene, path, out)
    assert str(path) in str(err.value)
    assert not out.exists() and not nvd_path(out).exists()

    def with_map(doc):
        doc["features"][0]["properties"]["labels"]["class_map"] = {"7": 2}

    mapped = load_aoi(aoi_copy("bucha", with_map))  # rewrites the copy; plain is loaded
    got, summary = _labels(mapped, scene, path, tmp_path)
    assert got[:3] == [1, 1, 1] and summary["class_map"] == {"7": 2}
    got, _ = _labels(plain, scene, path, tmp_path, class_map=parse_class_map("7=none"))
    assert got[:3] == [1, 0, 0]


def test_class_map_validation(tmp_path, bucha_aoi_path, scene, capsys):
    with pytest.raises(PipelineUsageError, match="targets must be UNOSAT codes"):
        parse_class_map("7=9")
    with pytest.raises(PipelineUsageError, match="FOUND=CODE"):
        parse_class_map("7")
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "labels",
                str(bucha_aoi_path),
                "--grid",
                str(scene),
                "--out",
                str(tmp_path / "l.tif"),
                "--class-map",
                "7:1",
            ]
        )
    assert exc.value.code == 2 and "--class-map" in capsys.readouterr().err


def test_long_layout(tmp_path, aoi, scene, points):
    """One row per site and assessment: pivoted per site, first instance and NVD per site."""
    rows = [
        ("A", 0, "2022-04-01", 6),
        ("A", 0, "2022-04-20", 2),  # damaged before after
        ("B", 1, "2022-04-01", 6),
        ("B", 1, "2022-06-01", 1),  # damaged later: NVD
        ("C", 2, "2022-03-01", 6),
        ("C", 2, "2022-04-10", 6),
    ]  # never damaged: NVD
    path = tmp_path / "long.gpkg"
    gpd.GeoDataFrame(
        {
            "site_id": [r[0] for r in rows],
            "date": [r[2] for r in rows],
            "damage_class": [r[3] for r in rows],
        },
        geometry=[Point(*points[r[1]]) for r in rows],
        crs="EPSG:4326",
    ).to_file(path, engine="pyogrio")
    got, summary = _labels(aoi, scene, path, tmp_path)
    assert got[:3] == [1, 0, 0]
    assert summary["sites_read"] == 3 and summary["nvd_sites"] == 2
    nvd = gpd.read_file(nvd_path(tmp_path / "labels.tif"), layer="nvd_sites")
    assert sorted(nvd["site_id"]) == ["B", "C"]
    assert dict(zip(nvd["site_id"], nvd["damaged_later"], strict=True)) == {"B": 1, "C": 0}
    assert dict(zip(nvd["site_id"], nvd["last_nvd_date"], strict=True)) == {
        "B": "2022-04-01",
        "C": "2022-04-10",
    }


def test_nvd_companion_output(tmp_path, aoi, scene, points):
    """NVD sites on the grid with the pixel they fall in, in the grid CRS; always written."""
    path = tmp_path / "w.gpkg"
    _frame(
        points,
        {
            "SiteID": ["A", "B", "C"],
            "SensorDate": ["2022-04-01"] * 3,
            "Main_Damage_Site_Class": [6, 1, 6],
        },
    ).to_file(path, engine="pyogrio")
    _, summary = _labels(aoi, scene, path, tmp_path)
    out = nvd_path(tmp_path / "labels.tif")
    assert out.name == "labels_nvd.gpkg" and summary["nvd_file"] == out.name
    nvd = gpd.read_file(out, layer="nvd_sites")
    grid = grid_of(scene)
    assert nvd.crs == grid.crs and list(nvd["site_id"]) == ["A", "C"]
    assert list(nvd["row"]) == [60, 60] and list(nvd["col"]) == [60, 80]
    assert list(nvd["label"]) == [0, 0]
    json_summary = json.loads((tmp_path / "labels.json").read_text())
    assert json_summary["nvd_sites"] == 2
    # no NVD sites at all: the file is still there, empty
    _frame(points, {"SensorDate": ["2022-04-01"], "Main_Damage_Site_Class": [1]}).to_file(
        tmp_path / "d.gpkg", engine="pyogrio"
    )
    _labels(aoi, scene, tmp_path / "d.gpkg", tmp_path)
    assert len(gpd.read_file(out, layer="nvd_sites")) == 0


def test_polygon_and_grid_assessments_refused(tmp_path, aoi, scene, points):
    lon, lat = points[0]
    path = tmp_path / "grid.gpkg"
    gpd.GeoDataFrame(
        {"SensorDate": ["2022-04-01"], "Main_Damage_Site_Class": [1], "Density": [0.4]},
        geometry=[box(lon, lat, lon + 0.01, lat + 0.01)],
        crs="EPSG:4326",
    ).to_file(path, engine="pyogrio")
    with pytest.raises(InputFileError, match="polygon or grid .* not supported; supported"):
        make_labels(aoi, scene, path, tmp_path / "l.tif")
    assert not (tmp_path / "l.tif").exists()


def test_dates_in_every_form(tmp_path, points):
    """ISO, day-first slashes, yyyymmdd and epoch milliseconds as strings, one column."""
    path = tmp_path / "d.gpkg"
    values = ["2022-05-04", "04/05/2022", "20220504", "1651622400000", "2022-05-04T00:00:00Z"]
    _frame(points, {"SensorDate": values, "Main_Damage_Site_Class": [1] * 5}).to_file(
        path, engine="pyogrio"
    )
    dates = read_sites(path).frame["first_date"].to_numpy(dtype="datetime64[D]")
    assert (dates == np.datetime64(dt.date(2022, 5, 4))).all()
