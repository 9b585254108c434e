"""The AOI catalogue and its validation (issue 2)."""

from __future__ import annotations

import csv
import itertools
import json

import pytest
from shapely.geometry import Point

from pipeline.aoi import discover_aoi_files, load_aoi, parse_window, validate_aoi_file
from pipeline.aoi_tools import new_aoi
from pipeline.cli import main
from pipeline.errors import PipelineError
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


BOWTIE = {"type": "Polygon", "coordinates": [[[30.2, 50.5], [30.3, 50.6], [30.3, 50.5],
                                              [30.2, 50.6], [30.2, 50.5]]]}
HUGE = {"type": "Polygon", "coordinates": [[[25, 45], [40, 45], [40, 52], [25, 52], [25, 45]]]}


@pytest.mark.parametrize("edit, field, message", [
    (_geometry(None), "geometry", "no geometry"),
    (_geometry(BOWTIE), "geometry", "Self-intersection"),
    (_geometry(HUGE), "geometry", "outside the allowed"),
    (_set("before", "22/10/2021"), "before", "unknown date format"),
    (_set("after", "2021-01-01"), "after", "must come after before"),
    (_set("slug", "kyiv"), "slug", "does not match the file name"),
    (_drop("unosat_aoi"), "unosat_aoi", "missing property"),
])
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
    code = main(["aoi", "new", "Borodianka", "--bbox", "29.90", "50.62", "29.98", "50.67",
                 "--before", "2021-10-02", "--after", "2022-04-10", "--aoi-dir", str(tmp_path)])
    assert code == 0
    path = tmp_path / "borodianka.geojson"
    assert main(["aoi", "check", str(path)]) == 0
    aoi = load_aoi(path)
    assert aoi.unosat_aoi == "UKR8"
    assert json.loads(path.read_text())["features"][0]["properties"]["slug"] == "borodianka"
    with pytest.raises(PipelineError, match="already exists"):
        new_aoi("Borodianka", (29.9, 50.62, 29.98, 50.67), "2021-10-02", "2022-04-10", tmp_path)


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
    pyogrio.raw.write(out, geom, fields, fields=meta["fields"], crs=meta["crs"],
                      geometry_type=meta["geometry_type"], driver="GeoJSON", encoding="UTF-8")
    original, saved = load_aoi(root / "aois" / "bucha.geojson"), load_aoi(out)
    assert (original.before, original.after, original.labels.path) == \
        (saved.before, saved.after, saved.labels.path)
    assert original.geometry.equals_exact(saved.geometry, 1e-9)
    assert parse_window("2021/10/22") == parse_window("2021-10-22T00:00:00") == original.before
