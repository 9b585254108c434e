"""The AOI catalogue and its validation (issue 2)."""

from __future__ import annotations

import csv
import itertools
import json

import pytest
from shapely.geometry import Point

from pipeline.aoi import discover_aoi_files, load_aoi, validate_aoi_file
from pipeline.aoi.create import bbox_geometry, default_after, new_aoi
from pipeline.aoi.fields import parse_window
from pipeline.cli import main
from pipeline.errors import InputFileError, PipelineError
from pipeline.reference import unosat_area


def test_all_22_aois_validate(root, capsys):
    files = discover_aoi_files(root / "aois")
    assert len(files) == 22
    assert main(["aoi", "check", "--aoi-dir", str(root / "aois")]) == 0
    out = capsys.readouterr().out
    assert "22 of 22 AOI files valid" in out
    assert "EPSG:32636" in out and "kharkiv" in out


def test_no_two_aois_overlap(root):
    aois = [load_aoi(p) for p in discover_aoi_files(root / "aois")]
    for a, b in itertools.combinations(aois, 2):
        # shared boundaries are allowed; overlapping ground is not (area in degrees², ~1 m²)
        assert a.geometry.intersection(b.geometry).area < 1e-10, (a.slug, b.slug)


def test_csv_centres_inside_aoi_and_unosat_area(root, reference):
    rows = list(csv.DictReader((reference / "seed_aois.csv").open()))
    assert len(rows) == 22
    for row in rows:
        aoi = load_aoi(root / "aois" / f"{row['slug']}.geojson")
        centre = Point(float(row["center_lon"]), float(row["center_lat"]))
        assert aoi.geometry.contains(centre), row["slug"]
        assert unosat_area(row["unosat_aoi"]).contains(centre), row["slug"]
        assert aoi.unosat_aoi == row["unosat_aoi"]
        assert aoi.name == row["name"]
        if len(row["before_scene"]) == 7:  # month only: a whole-month window
            assert aoi.before == parse_window(row["before_scene"])
            assert not aoi.before.is_single_day
        else:
            assert str(aoi.before) == row["before_scene"]


def test_aoi_properties_and_utm(root):
    aoi = load_aoi(root / "aois" / "makariv.geojson")
    assert aoi.utm_epsg == 32635  # 29.8 E is UTM zone 35
    assert aoi.labels.path == "data/unosat/makariv.zip"
    assert 0.1 < aoi.area_km2() < 2500


def _set(key, value):
    def edit(doc):
        doc["features"][0]["properties"][key] = value

    return edit


def _drop(key):
    def edit(doc):
        del doc["features"][0]["properties"][key]

    return edit


def _geometry(geom):
    def edit(doc):
        doc["features"][0]["geometry"] = geom

    return edit


BOWTIE = {
    "type": "Polygon",
    "coordinates": [[[30.2, 50.5], [30.3, 50.6], [30.3, 50.5], [30.2, 50.6], [30.2, 50.5]]],
}
HUGE = {"type": "Polygon", "coordinates": [[[25, 45], [40, 45], [40, 52], [25, 52], [25, 45]]]}


@pytest.mark.parametrize(
    "edit, field, message",
    [
        (_geometry(None), "geometry", "no geometry"),
        (_geometry(BOWTIE), "geometry", "Self-intersection"),
        (_geometry(HUGE), "geometry", "outside the allowed"),
        (_set("before", "22/10/2021"), "before", "unknown date format"),
        (_set("after", "2021-01-01"), "after", "must come after before"),
        (_set("slug", "kyiv"), "slug", "does not match the file name"),
        (_drop("unosat_aoi"), "unosat_aoi", "missing property"),
    ],
)
def test_bad_aoi_refused(aoi_copy, capsys, edit, field, message):
    path = aoi_copy("bucha", edit)
    aoi, errors, _ = validate_aoi_file(path)
    assert aoi is None
    assert any(f"{path}: {field}: " in e and message in e for e in errors), errors
    assert main(["aoi", "check", str(path)]) == 1
    out = capsys.readouterr().out
    assert message in out and str(path) in out
    with pytest.raises(PipelineError, match=message):
        load_aoi(path)


def test_broken_json_refused(tmp_path, capsys):
    path = tmp_path / "broken.geojson"
    path.write_text('{"type": "FeatureCollection", "features": [')
    assert main(["aoi", "check", str(path)]) == 1
    assert "not valid JSON" in capsys.readouterr().out


def test_date_rule_is_a_warning(aoi_copy):
    path = aoi_copy("bucha", _set("before", "2022-02-25"))
    aoi, errors, warnings = validate_aoi_file(path)
    assert aoi is not None and not errors
    assert any("before" in w and "pre-invasion" in w for w in warnings)


def test_window_forms():
    assert str(parse_window(["2021-06-01", "2021-06-30"])) == "2021-06-01/2021-06-30"
    assert parse_window("2021-06") == parse_window("2021-06-01/2021-06-30")
    assert parse_window('["2021-06-01", "2021-06-30"]') == parse_window("2021-06")
    with pytest.raises(ValueError, match="before it starts"):
        parse_window(["2021-06-30", "2021-06-01"])


def test_aoi_new_passes_check(tmp_path, capsys):
    code = main(
        [
            "aoi",
            "new",
            "Borodianka",
            "--bbox",
            "29.90",
            "50.62",
            "29.98",
            "50.67",
            "--before",
            "2021-10-02",
            "--after",
            "2022-04-10",
            "--aoi-dir",
            str(tmp_path),
        ]
    )
    assert code == 0
    path = tmp_path / "borodianka.geojson"
    assert main(["aoi", "check", str(path)]) == 0
    aoi = load_aoi(path)
    assert aoi.unosat_aoi == "UKR8"
    assert json.loads(path.read_text())["features"][0]["properties"]["slug"] == "borodianka"
    with pytest.raises(PipelineError, match="already exists"):
        new_aoi(
            "Borodianka",
            bbox_geometry((29.9, 50.62, 29.98, 50.67)),
            "2021-10-02",
            "2022-04-10",
            tmp_path,
        )


def test_gdal_reads_and_rewrites_aoi_files(root, tmp_path):
    """GDAL (QGIS's reader) sees typed fields; a file rewritten through it still validates."""
    import pyogrio.raw

    meta, _, geom, fields = pyogrio.raw.read(root / "aois" / "kharkiv.geojson")
    types = dict(zip(meta["fields"], meta["ogr_types"], strict=True))
    assert types["before"] == "OFTStringList"  # a window: a list QGIS shows and edits
    assert list(fields[list(meta["fields"]).index("before")][0]) == ["2021-11-01", "2021-11-30"]
    meta, _, geom, fields = pyogrio.raw.read(root / "aois" / "bucha.geojson")
    assert meta["crs"] == "EPSG:4326"
    assert dict(zip(meta["fields"], meta["ogr_types"], strict=True))["before"] == "OFTDate"
    out = tmp_path / "bucha.geojson"
    pyogrio.raw.write(
        out,
        geom,
        fields,
        fields=meta["fields"],
        crs=meta["crs"],
        geometry_type=meta["geometry_type"],
        driver="GeoJSON",
        encoding="UTF-8",
    )
    original, saved = load_aoi(root / "aois" / "bucha.geojson"), load_aoi(out)
    assert (original.before, original.after, original.labels.path) == (
        saved.before,
        saved.after,
        saved.labels.path,
    )
    assert original.geometry.equals_exact(saved.geometry, 1e-9)
    assert parse_window("2021/10/22") == parse_window("2021-10-22T00:00:00") == original.before


def test_labels_as_plain_path_string(aoi_copy):
    """A bare path is accepted and means the same as {"path": ...}, for the check and loaders."""
    path = aoi_copy("bucha", _set("labels", "data/unosat/bucha.zip"))
    aoi = load_aoi(path)
    assert aoi.labels is not None and aoi.labels.path == "data/unosat/bucha.zip"
    assert aoi.labels.url is None and aoi.labels.fields == {}


@pytest.mark.parametrize(
    "labels, message",
    [
        ({"path": "data/unosat/c$(touch PWNED).zip"}, "characters a shell interprets"),
        ({"path": "data/`id`.zip"}, "characters a shell interprets"),
        ({"path": "../outside/bucha.zip"}, "leaves the project folder"),
        ({"path": "data/unosat/bucha.zip", "url": "http://example.org/x.zip"}, "https://"),
    ],
)
def test_unsafe_label_paths_refused(aoi_copy, labels, message):
    path = aoi_copy("bucha", _set("labels", labels))
    aoi, errors, _ = validate_aoi_file(path)
    assert aoi is None
    assert any(f"{path}: labels: " in e and message in e for e in errors), errors
    with pytest.raises(InputFileError, match="labels"):
        load_aoi(path)


def _swap_lon_lat(doc):
    geom = doc["features"][0]["geometry"]
    geom["coordinates"] = [[[y, x] for x, y in ring] for ring in geom["coordinates"]]


@pytest.mark.parametrize(
    "edit, message",
    [
        (_set("unosat_aoi", "UKR99"), "unknown UNOSAT area 'UKR99'"),
        (_swap_lon_lat, "does not intersect UNOSAT area UKR2"),
        (
            _geometry(
                {
                    "type": "Polygon",
                    "coordinates": [
                        [
                            [-47.9, -15.8],
                            [-47.8, -15.8],
                            [-47.8, -15.7],
                            [-47.9, -15.7],
                            [-47.9, -15.8],
                        ]
                    ],
                }
            ),
            "does not intersect UNOSAT area UKR2",
        ),
    ],
)
def test_unosat_area_checked(aoi_copy, capsys, edit, message):
    path = aoi_copy("bucha", edit)
    aoi, errors, _ = validate_aoi_file(path)
    assert aoi is None and any(f"{path}: unosat_aoi: " in e and message in e for e in errors)
    assert main(["aoi", "check", str(path)]) == 1
    assert message in capsys.readouterr().out


def test_map_only_aoi_from_polygon_file(tmp_path, capsys):
    """A polygon in a projected CRS outside every UNOSAT area becomes a map-only AOI."""
    import geopandas as gpd
    from shapely.geometry import box

    # Chasiv Yar-like box in UTM 37N, outside the 18 UNOSAT extents
    poly = gpd.GeoDataFrame(
        {"name": ["town"]}, geometry=[box(390000, 5380000, 394000, 5384000)], crs="EPSG:32637"
    )
    src = tmp_path / "town.gpkg"
    poly.to_file(src, driver="GPKG")
    code = main(["aoi", "new", "Nova Town", "--polygon", str(src), "--aoi-dir", str(tmp_path)])
    assert code == 0
    aoi = load_aoi(tmp_path / "nova-town.geojson")
    assert aoi.labels is None and not aoi.has_labels and aoi.unosat_aoi == "none"
    assert aoi.utm_epsg == 32637 and 15.5 < aoi.area_km2() < 16.5
    assert str(aoi.after) == default_after() and aoi.before.end.year == 2021
    assert "map-only" in capsys.readouterr().out
    doc = json.loads((tmp_path / "nova-town.geojson").read_text())
    assert "labels" not in doc["features"][0]["properties"]


def test_no_labels_flag_and_bbox_forms(tmp_path):
    assert (
        main(
            [
                "aoi",
                "new",
                "Borodianka",
                "--bbox",
                "29.90,50.62,29.98,50.67",
                "--no-labels",
                "--after",
                "2022-04-10",
                "--aoi-dir",
                str(tmp_path),
            ]
        )
        == 0
    )
    aoi = load_aoi(tmp_path / "borodianka.geojson")
    assert aoi.unosat_aoi == "UKR8" and aoi.labels is None and str(aoi.after) == "2022-04-10"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--bbox", "30", "50", "29", "51"], "W < E"),
        (["--bbox", "30,50,31"], "4 numbers"),
        (["--bbox", "a", "b", "c", "d"], "not numbers"),
        (["--bbox", "30", "50", "30.1", "50.1", "--before", "2021-13-45"], "invalid date"),
    ],
)
def test_aoi_new_bad_options(tmp_path, capsys, argv, message):
    assert main(["aoi", "new", "X", *argv, "--aoi-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_utm_zone_from_pyproj_matches_zone_arithmetic():
    from pipeline.geo import utm_epsg_for

    for lon, lat in [
        (30.21, 50.54),
        (36.23, 49.99),
        (23.9, 49.8),
        (39.9, 48.5),
        (-47.9, -15.8),
        (11.99, 45.0),
        (12.01, 45.0),
    ]:
        zone = int((lon + 180) // 6) + 1
        assert utm_epsg_for(Point(lon, lat)) == (32600 if lat >= 0 else 32700) + zone


def test_map_only_aoi_has_no_labels_step(tmp_path, capsys):
    assert (
        main(
            [
                "aoi",
                "new",
                "Nowhere",
                "--bbox",
                "30.0",
                "50.0",
                "30.05",
                "50.03",
                "--no-labels",
                "--after",
                "2022-04-10",
                "--aoi-dir",
                str(tmp_path),
            ]
        )
        == 0
    )
    (tmp_path / "x.tif").write_bytes(b"never read: the AOI is refused first")
    code = main(
        [
            "labels",
            str(tmp_path / "nowhere.geojson"),
            "--grid",
            str(tmp_path / "x.tif"),
            "--out",
            str(tmp_path / "l.tif"),
        ]
    )
    assert code == 1 and "map-only" in capsys.readouterr().err
    assert not (tmp_path / "l.tif").exists()
