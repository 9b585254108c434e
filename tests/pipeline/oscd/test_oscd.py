"""``pipeline oscd``: one OSCD city as the project's scene pair and labels (issue 27, part 1)."""

from __future__ import annotations

import json
import logging
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.errors import NotGeoreferencedWarning
from support.oscd_files import (
    BASE_DN,
    REAL_CITIES,
    REAL_ROOT,
    CitySpec,
    change_values,
    city_paths,
    crop_real_city,
    write_band,
    write_change_map,
    write_city,
    write_extent,
)

from contract.bands import BANDS
from contract.labels import DAMAGE, NO_DAMAGE, UNKNOWN
from contract.npz_keys import PROCESSING_LEVEL
from contract.processing_level import TAG as LEVEL_TAG
from pipeline import cli
from pipeline.aoi import load_aoi
from pipeline.errors import InputFileError, PipelineUsageError
from pipeline.geo import utm_epsg_for
from pipeline.grid import Grid, aoi_grid, grid_of, require_same_grid
from pipeline.oscd import output_paths
from pipeline.oscd.convert import convert_city
from pipeline.oscd.layout import labelled_cities


def _read(path: Path) -> tuple[np.ndarray, dict, tuple, dict]:
    with rasterio.open(path) as src:
        return src.read(), src.profile, src.descriptions, src.tags()


def _source_of(grid: Grid, transform, shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each output pixel centre falls on a source grid: (row, col, inside)."""
    rows, cols = np.mgrid[0 : grid.height, 0 : grid.width] + 0.5
    x, y = grid.transform * (cols, rows)
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(x, y)
    c, r = ~transform * (lon, lat)
    inside = (r >= 0) & (r < shape[0]) & (c >= 0) & (c < shape[1])
    return r, c, inside


def _expected_labels(grid: Grid, transform, change_map: np.ndarray) -> tuple[np.ndarray, ...]:
    """Nearest-neighbour labels from a 1/2 change map, and where a pixel is unambiguous."""
    r, c, inside = _source_of(grid, transform, change_map.shape)
    ri = np.clip(np.floor(r).astype(int), 0, change_map.shape[0] - 1)
    ci = np.clip(np.floor(c).astype(int), 0, change_map.shape[1] - 1)
    want = np.where(change_map[ri, ci] == 2, DAMAGE, NO_DAMAGE).astype(np.uint8)
    want[~inside] = UNKNOWN
    clear = (np.abs(r - np.round(r)) > 0.2) & (np.abs(c - np.round(c)) > 0.2)
    return want, clear


def _feature_position(scene: np.ndarray, grid: Grid, lonlat: tuple[float, float]) -> tuple:
    """(expected col, row) of the bright disc on the grid and the measured centroid."""
    x, y = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True).transform(*lonlat)
    col, row = ~grid.transform * (x, y)
    r0, c0 = int(row) - 8, int(col) - 8
    patch = scene[3, r0 : r0 + 17, c0 : c0 + 17].astype(float)
    weight = np.clip(patch - BASE_DN[3] - 500, 0, None)
    rr, cc = np.mgrid[0:17, 0:17] + 0.5
    found = ((weight * cc).sum() / weight.sum() + c0, (weight * rr).sum() / weight.sum() + r0)
    return (col, row), found


# ---------------------------------------------------------------- files in OSCD's layout


@pytest.fixture
def oscd(tmp_path: Path) -> Path:
    """An OSCD root holding the default synthetic city (paris)."""
    root = tmp_path / "oscd"
    write_city(root)
    return root


def test_written_files_have_the_quirks_of_the_real_ones(oscd):
    paths = city_paths(oscd, "paris")
    with rasterio.open(next(paths["imgs_1"].glob("*_B02.tif"))) as src:
        wkt = src.crs.to_wkt()
        assert src.dtypes[0] == "uint16" and src.nodata is None
        assert wkt.index('AXIS["Latitude"') < wkt.index('AXIS["Longitude"')
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(paths["labels"]) as src:
            assert src.crs is None and src.transform.is_identity
            assert set(np.unique(src.read(1))) == {1, 2}


def test_city_on_its_utm_grid_with_labels_dates_and_level(oscd, tmp_path):
    spec = CitySpec()
    out = tmp_path / "out"
    record = convert_city(oscd, "paris", out)
    paths = output_paths(out, "paris")
    grid = require_same_grid({k: paths[k] for k in ("before", "after", "labels")})
    aoi = load_aoi(paths["aoi"])
    assert grid.same_as(aoi_grid(aoi)) and grid.resolution == 10.0
    assert grid.crs.to_epsg() == utm_epsg_for(aoi.geometry) == 32631
    for epoch, date in (("before", "2016-11-30"), ("after", "2017-08-29")):
        dn, prof, desc, tags = _read(paths[epoch])
        assert desc == BANDS and prof["dtype"] == "uint16" and prof["nodata"] == 0
        assert tags["ACQUISITION_DATE"] == date and tags[LEVEL_TAG] == "L1C"
        assert tags["AOI"] == "paris" and tags["EPOCH"] == epoch
        record_json = json.loads(paths[epoch].with_suffix(".json").read_text())
        assert record_json["processing_level"] == "L1C" and record_json["dates"] == [date]
        expected, found = _feature_position(dn, grid, spec.feature)
        assert np.hypot(expected[0] - found[0], expected[1] - found[1]) < 0.25
    labels, prof, desc, tags = _read(paths["labels"])
    assert prof["dtype"] == "uint8" and prof["nodata"] == UNKNOWN and desc == ("change",)
    want, clear = _expected_labels(grid, spec.transform(1), change_values(spec))
    before, after = _read(paths["before"])[0], _read(paths["after"])[0]
    unobserved = (before == 0).any(0) | (after == 0).any(0)
    want[unobserved] = UNKNOWN
    assert (labels[0] == want)[clear].all()
    assert record["change_pixels"] == int((labels == DAMAGE).sum()) > 0
    assert aoi.before.start.isoformat() == "2016-11-30" and not aoi.has_labels


def test_second_date_on_another_pixel_grid_lands_on_the_same_pixels(tmp_path):
    spec = CitySpec(shape2=(117, 97))
    write_city(tmp_path / "oscd", spec)
    out = tmp_path / "out"
    convert_city(tmp_path / "oscd", "paris", out)
    paths = output_paths(out, "paris")
    grid = grid_of(paths["before"])
    found = {}
    for epoch in ("before", "after"):
        expected, found[epoch] = _feature_position(_read(paths[epoch])[0], grid, spec.feature)
        assert np.hypot(expected[0] - found[epoch][0], expected[1] - found[epoch][1]) < 0.25
    gap = np.subtract(found["before"], found["after"])
    assert np.hypot(*gap) < 0.2
    labels = _read(paths["labels"])[0][0]
    want, clear = _expected_labels(grid, spec.transform(1), change_values(spec))
    assert (labels == want)[clear & (labels != UNKNOWN)].all()


def test_change_map_of_zeros_and_ones_is_read_and_said(oscd, tmp_path, caplog):
    paths = city_paths(oscd, "paris")
    write_change_map(paths["labels"], change_values(CitySpec()) - 1)
    with caplog.at_level(logging.INFO):
        record = convert_city(oscd, "paris", tmp_path / "a")
    assert "holds exactly 0 and 1" in caplog.text and str(paths["labels"]) in caplog.text
    assert record["coding_found"].startswith("0 no change")
    write_change_map(paths["labels"], change_values(CitySpec()))
    ones_twos = convert_city(oscd, "paris", tmp_path / "b")
    a = _read(tmp_path / "a" / "labels.tif")[0]
    b = _read(tmp_path / "b" / "labels.tif")[0]
    assert (a == b).all() and ones_twos["change_pixels"] == record["change_pixels"]


def test_change_map_on_the_second_dates_grid(tmp_path, caplog):
    spec = CitySpec(shape2=(117, 97))
    paths = write_city(tmp_path / "oscd", spec)
    second = np.ones(spec.shape(2), dtype=np.uint8)
    second[20:40, 30:50] = 2
    write_change_map(paths["labels"], second)
    with caplog.at_level(logging.INFO):
        convert_city(tmp_path / "oscd", "paris", tmp_path / "out")
    assert "on the pixel grid of imgs_2" in caplog.text
    grid = grid_of(tmp_path / "out" / "labels.tif")
    labels = _read(tmp_path / "out" / "labels.tif")[0][0]
    want, clear = _expected_labels(grid, spec.transform(2), second)
    assert (labels == want)[clear & (labels != UNKNOWN)].all()


def test_rerun_is_byte_identical(oscd, tmp_path):
    convert_city(oscd, "paris", tmp_path / "a")
    convert_city(oscd, "paris", tmp_path / "b")
    convert_city(oscd, "paris", tmp_path / "a")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert names == [
        "after.json",
        "after.tif",
        "before.json",
        "before.tif",
        "labels.json",
        "labels.tif",
        "paris.geojson",
    ]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


# ---------------------------------------------------------------- refusals, nothing written


def _labels(values: np.ndarray):
    return lambda p: write_change_map(p["labels"], values)


def _band(date: int, band: str, transform=None, **kw):
    spec = CitySpec()

    def edit(p: dict[str, Path]) -> None:
        path = p[f"imgs_{date}"] / (spec.names[date - 1].format(band=band))
        write_band(path, np.full(spec.shape1, 1000), transform or spec.transform(1), **kw)

    return edit


def _unlink(key: str, pattern: str | None = None):
    def edit(p: dict[str, Path]) -> None:
        (next(p[key].glob(pattern)) if pattern else p[key]).unlink()

    return edit


def _text(key: str, text: str):
    return lambda p: p[key].write_text(text)


REFUSALS = {
    "labels 0/1/2": (
        _labels(np.array([[0, 1], [2, 1]], dtype=np.uint8).repeat(60, 0).repeat(50, 1)),
        "values [0, 1, 2]",
    ),
    "labels one value": (_labels(np.ones((120, 100), dtype=np.uint8)), "values [1]"),
    "labels 0/255": (
        _labels(np.where(change_values(CitySpec()) == 2, 255, 0).astype(np.uint8)),
        "values [0, 255]",
    ),
    "labels float": (_labels(change_values(CitySpec()).astype(np.float32)), "float32 values"),
    "labels of neither size": (
        _labels(np.ones((100, 100), dtype=np.uint8) * 2 - np.eye(100, dtype=np.uint8)),
        "matches neither date",
    ),
    "labels georeferenced elsewhere": (
        lambda p: write_band(
            p["labels"],
            change_values(CitySpec()),
            CitySpec().transform(1) * rasterio.Affine.translation(5, 5),
            dtype="uint8",
        ),
        "georeferenced (EPSG:4326",
    ),
    "labels absent": (_unlink("labels"), "change map of paris not found"),
    "band missing": (_unlink("imgs_2", "*_B08.tif"), "no file for band(s) B08"),
    "band twice": (
        lambda p: write_band(
            p["imgs_1"] / "extra_B02.tif", np.ones((120, 100)), CitySpec().transform(1)
        ),
        "two files for band B02",
    ),
    "dates absent": (_unlink("dates"), "dates file not found"),
    "dates unreadable": (
        _text("dates", "date_1: 2016-11-30\ndate_2: 2017-08-29\n"),
        "unreadable line",
    ),
    "date missing": (_text("dates", "date_1: 20161130\n"), "no date_2 line"),
    "dates reversed": (
        _text("dates", "date_1: 20170829\ndate_2: 20161130\n"),
        "is not after date_1",
    ),
    "date after the offset": (
        _text("dates", "date_1: 20161130\ndate_2: 20220601\n"),
        "processing baseline",
    ),
    "not EPSG:4326": (_band(2, "B04", crs="EPSG:32631"), "CRS EPSG:32631"),
    "not uint16": (_band(1, "B03", dtype="uint8"), "uint8 values"),
    "float band": (_band(1, "B08", dtype="float32"), "float32 values"),
    "bands on two grids": (
        _band(1, "B04", transform=CitySpec().transform(1) * rasterio.Affine.translation(3, 0)),
        "must share one grid",
    ),
    "extent swapped": (
        lambda p: write_extent(p["extent"], (48.8311, 2.3101, 48.8451, 2.3217)),
        "latitude and longitude",
    ),
    "two levels": (
        lambda p: [
            f.rename(f.with_name(f.name.replace("T31UDQ_", "S2A_MSIL2A_T31UDQ_")))
            for f in p["imgs_2"].glob("*.tif")
        ],
        "two processing levels",
    ),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_refused_naming_the_file_and_nothing_written(oscd, tmp_path, case):
    edit, match = REFUSALS[case]
    edit(city_paths(oscd, "paris"))
    out = tmp_path / "out"
    with pytest.raises(InputFileError, match=re.escape(match)) as err:
        convert_city(oscd, "paris", out)
    assert str(oscd) in str(err.value)
    assert not out.exists()


def test_absent_city_and_root_are_usage_errors(oscd, tmp_path):
    with pytest.raises(
        PipelineUsageError, match="no such city folder; labelled cities under .*: paris"
    ):
        convert_city(oscd, "lyon", tmp_path / "out")
    with pytest.raises(PipelineUsageError, match="not an OSCD folder"):
        labelled_cities(tmp_path / "nowhere")
    write_city(oscd, CitySpec(city="lyon"))["labels"].unlink()
    assert labelled_cities(oscd) == ["paris"]  # a city without its change map is not listed
    assert not (tmp_path / "out").exists()


def test_level_from_names_option_or_oscd(tmp_path):
    tiles_only = CitySpec(
        names=("T31UDQ_20161130T105019_{band}.tif", "T31UDQ_20170829T105019_{band}.tif")
    )
    write_city(tmp_path / "oscd", tiles_only)
    convert_city(tmp_path / "oscd", "paris", tmp_path / "default")
    assert _read(tmp_path / "default" / "after.tif")[3][LEVEL_TAG] == "L1C"
    convert_city(tmp_path / "oscd", "paris", tmp_path / "l2a", level="L2A")
    assert _read(tmp_path / "l2a" / "before.tif")[3][LEVEL_TAG] == "L2A"
    write_city(tmp_path / "named", CitySpec())
    with pytest.raises(PipelineUsageError, match="--level L2A, but the band file names state"):
        convert_city(tmp_path / "named", "paris", tmp_path / "x", level="L2A")
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------- command line


def test_cli_lists_converts_and_refuses(oscd, tmp_path, capsys):
    assert cli.main(["oscd", "--root", str(oscd), "--list"]) == 0
    assert capsys.readouterr().out.split() == ["paris"]
    out = tmp_path / "out"
    assert cli.main(["-q", "oscd", "--root", str(oscd), "--city", "paris", "--out", str(out)]) == 0
    assert (out / "labels.tif").exists() and (out / "paris.geojson").exists()
    assert cli.main(["oscd", "--root", str(oscd), "--city", "lyon", "--out", str(out)]) == 2
    assert cli.main(["oscd", "--root", str(oscd)]) == 2
    assert cli.main(["oscd", "--root", str(oscd), "--city", "paris"]) == 2  # no --out
    write_change_map(city_paths(oscd, "paris")["labels"], np.zeros((120, 100), dtype=np.uint8))
    assert (
        cli.main(["oscd", "--root", str(oscd), "--city", "paris", "--out", str(tmp_path / "b")])
        == 1
    )
    err = capsys.readouterr().err
    assert "paris-cm.tif: change map values [0]" in err and "Traceback" not in err
    assert not (tmp_path / "b").exists()
    with pytest.raises(SystemExit) as ex:
        cli.main(["oscd", "--help"])
    assert ex.value.code == 0 and "--level" in capsys.readouterr().out


# ---------------------------------------------------------------- the chain downstream


CHAIN_CITIES = {
    "alpha": (2.3101, 48.8311),
    "beta": (2.4001, 48.8311),
    "gamma": (2.3101, 48.9011),
}


def test_tiles_patches_dataset_and_predict_take_the_output(tmp_path, capsys):
    from support.map_data import tiny_checkpoint

    from damagenet.data.scene_pair import open_scene_pair
    from damagenet.maps.predict import PredictOptions, predict_map, processing_levels

    root, made = tmp_path / "oscd", tmp_path / "made"
    for i, (city, (west, south)) in enumerate(CHAIN_CITIES.items()):
        bounds = (west, south, west + 0.0116, south + 0.014)
        spec = CitySpec(city=city, bounds=bounds, feature=(west + 0.006, south + 0.007))
        write_city(root, spec, seed=10 * i)
        convert_city(root, city, made / city)
    for city in CHAIN_CITIES:
        p = output_paths(made / city, city)
        common = [str(p["aoi"]), "--before", str(p["before"]), "--after", str(p["after"])]
        tiles = ["-q", "tiles", *common, "--targets", str(p["labels"]), "--size", "16"]
        assert cli.main([*tiles, "--out", str(made / f"{city}_tiles.npz")]) == 0
        patches = ["-q", "patches", *common, "--labels", str(p["labels"])]
        assert cli.main([*patches, "--out", str(made / f"{city}_patches.npz")]) == 0
    tiles = [str(made / f"{c}_tiles.npz") for c in CHAIN_CITIES]
    split = ["--split", "aoi", "--test-aois", "gamma", "--val-aois", "beta"]
    ds = made / "tiles_ds.npz"
    assert cli.main(["-q", "dataset", *tiles, "--tile-size", "16", *split, "--out", str(ds)]) == 0
    d = np.load(ds)
    assert str(d[PROCESSING_LEVEL]) == "L1C" and set(d["aoi_test"]) == {"gamma"}
    assert (d["y_train"] == DAMAGE).any() and (d["y_val"] == DAMAGE).any()
    patches = [str(made / f"{c}_patches.npz") for c in CHAIN_CITIES]
    assert cli.main(["-q", "dataset", *patches, *split, "--out", str(made / "p_ds.npz")]) == 0
    p = output_paths(made / "alpha", "alpha")
    pair = open_scene_pair(p["before"], p["after"], p["labels"], 16)
    assert pair.levels == ("L1C", "L1C") and pair.aoi == "alpha"
    capsys.readouterr()
    assert processing_levels([{"processing_level": "L2A"}], pair)["mismatch"] is True
    assert "trained on L2A scenes but scores L1C scenes" in capsys.readouterr().err  # cli's log
    summary = predict_map(
        p["before"],
        p["after"],
        tiny_checkpoint(tmp_path / "ckpt.pt"),
        tmp_path / "map" / "alpha_damage_prob.tif",
        PredictOptions(progress=False, device="cpu", stride=16),
        labels=p["labels"],
    )
    assert summary["processing_level"]["before"] == "L1C"


# ---------------------------------------------------------------- the real files


@pytest.fixture(scope="module")
def real_root() -> Path:
    if not (REAL_ROOT / "images").is_dir():
        pytest.skip(f"{REAL_ROOT} is absent: the real OSCD files are not beside the project")
    return REAL_ROOT


def test_real_labelled_cities_are_listed(real_root):
    assert set(REAL_CITIES) <= set(labelled_cities(real_root))


@pytest.mark.parametrize("city", ["saclay_e", "paris"])
def test_real_crop_converts(real_root, tmp_path, city):
    """A crop of the real files, second date on its own grid in saclay_e, read right."""
    crop = crop_real_city(real_root, tmp_path / "oscd", city)
    out = tmp_path / "out"
    record = convert_city(tmp_path / "oscd", city, out)
    paths = output_paths(out, city)
    grid = require_same_grid({k: paths[k] for k in ("before", "after", "labels")})
    assert grid.crs.to_epsg() == 32631 and grid.resolution == 10.0
    before, prof, desc, tags = _read(paths["before"])
    assert desc == BANDS and prof["nodata"] == 0 and tags[LEVEL_TAG] == "L1C"
    dates = crop["dates"].read_text().split()
    assert tags["ACQUISITION_DATE"].replace("-", "") == dates[1]
    b02 = next(crop["imgs_1"].glob("*_B02.tif"))
    with rasterio.open(b02) as src:
        transform, source_blue = src.transform, src.read(1)
    assert abs(np.median(before[0][before[0] > 0]) / np.median(source_blue) - 1) < 0.05
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(crop["labels"]) as src:
            change_map = src.read(1)
    labels = _read(paths["labels"])[0][0]
    want, clear = _expected_labels(grid, transform, change_map)
    assert (labels == want)[clear & (labels != UNKNOWN)].all()
    assert record["change_pixels"] > 0
    assert abs(record["changed_share"] - record["source_changed_share"]) < 0.02
