"""``benchmarks/oscd.py``: four models on real change pairs, leave-city-out (issue 27, part 4).

The benchmark runs with ``--quick`` on 96 px crops of three real cities (skipped when
``../shared/oscd`` is absent) and on cities written in exactly OSCD's layout
(:mod:`support.oscd_files`); the JSON is checked for the shape the issue asks for, the folds for
what they may never do (a city in two roles, related cities split across roles).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from support.oscd_files import REAL_ROOT, CitySpec, crop_real_city, write_city
from support.paths import ROOT

FIGURES = ("f1", "precision", "recall", "roc_auc", "pr_auc", "patch_roc_auc")
MODELS = ("pixel", "patch", "change", "gbt")
#: unrelated real cities: other dates, hundreds of km apart
REAL_CROPS = ("abudhabi", "paris", "rennes")


def _benchmark():
    spec = importlib.util.spec_from_file_location("oscd_benchmark", ROOT / "benchmarks" / "oscd.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["oscd_benchmark"] = module
    spec.loader.exec_module(module)
    return module


bench = _benchmark()


def _spec(city: str, lon: float, year: int = 2016):
    """A synthetic city at ``lon`` (degrees east, latitude 48.83), imaged in ``year`` and the
    next (the band file names of :mod:`support.oscd_files` all name tile T31UDQ)."""
    bounds = (lon, 48.8311, lon + 0.0116, 48.8451)
    dates = f"date_1: {year}1130\ndate_2: {year + 1}0829\n"
    return CitySpec(city=city, bounds=bounds, feature=(lon + 0.006, 48.838), dates=dates)


def _check_figures(entry: dict) -> None:
    for name in FIGURES:
        assert set(entry[name]) >= {"value", "low", "high"}, name
        assert entry[name]["value"] is None or -1e-9 <= entry[name]["value"] <= 1 + 1e-9


def _check_report(report: dict, cities: set[str]) -> None:
    """The JSON shape of issue 27: models, pooled and per city, paired differences."""
    assert set(report["models"]) == set(MODELS)
    for model in MODELS:
        _check_figures(report["models"][model]["pooled"])
        assert set(report["models"][model]["cities"]) == cities
        for entry in report["models"][model]["cities"].values():
            _check_figures(entry)
    for city in cities:  # no threshold beats the one best on the city's own labels
        best = report["cities"][city]["best_f1_on_itself"]
        for model in MODELS:
            assert best[model] >= report["models"][model]["cities"][city]["f1"]["value"] - 1e-9
    pairs = {f"{a}-{b}" for i, a in enumerate(MODELS) for b in MODELS[i + 1 :]}
    assert set(report["paired_differences"]) == pairs
    for row in report["paired_differences"].values():
        for name in FIGURES:
            assert set(row[name]) >= {"value", "low", "high"}
    for fold in report["folds"]:
        for model in MODELS:
            assert fold["models"][model]["threshold"] >= 0
    assert report["seed"] == 0 and report["settings"]["quick"] is True
    assert report["wall_time_s"]["total"] > 0
    assert len(report["machine"]["load_average_at_start"]) == 3


@pytest.fixture(scope="module")
def real_crops(tmp_path_factory) -> Path:
    if not (REAL_ROOT / "images").is_dir():
        pytest.skip(f"{REAL_ROOT} is absent: the real OSCD files are not beside the project")
    root = tmp_path_factory.mktemp("oscd")
    for city in REAL_CROPS:
        crop_real_city(REAL_ROOT, root, city)
    return root


def test_leave_city_out_on_crops_of_real_cities(real_crops, tmp_path, capsys):
    out = tmp_path / "bench"
    assert bench.main(["--train-root", str(real_crops), "--out", str(out), "--quick"]) == 0
    report = json.loads((out / "oscd.json").read_text())
    _check_report(report, set(REAL_CROPS))
    assert report["mode"] == "leave-city-out" and report["related"] == []
    tested = [c for f in report["folds"] for c in f["test"]]
    assert sorted(tested) == sorted(REAL_CROPS)  # every city scored once, by one fold
    for f in report["folds"]:
        roles = [*f["test"], *f["val"], *f["train"]]
        assert len(roles) == len(set(roles)) == len(REAL_CROPS)
    printed = capsys.readouterr().out
    assert "| pixel |" in printed and "F1 per city" in printed and "fold 2: done" in printed
    assert (out / "oscd.md").read_text().startswith("### Pooled")
    assert report["cities"]["paris"]["change_pixels"] > 0


def test_test_root_on_files_in_oscd_layout(tmp_path):
    train, test = tmp_path / "train", tmp_path / "test"
    for i, (city, lon) in enumerate((("alpha", 2.31), ("beta", 2.51), ("gamma", 2.71))):
        write_city(train, _spec(city, lon, 2016 + i), seed=10 * i)
    write_city(test, _spec("delta", 2.91, 2019), seed=40)
    argv = ["--train-root", str(train), "--test-root", str(test), "--quick"]
    assert bench.main([*argv, "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "oscd.json").read_text())
    _check_report(report, {"delta"})
    (fold,) = report["folds"]
    assert report["mode"] == "train-test" and fold["test"] == ["delta"]
    assert sorted([*fold["val"], *fold["train"]]) == ["alpha", "beta", "gamma"]
    delta = report["cities"]["delta"]
    assert delta["blocks"] >= 2 and delta["change_pixels"] > 0  # one city: ground blocks


def test_cities_sharing_an_acquisition_are_held_out_together(tmp_path, capsys):
    """Three cities imaged on the same dates of one tile form one group: no fold."""
    for i, lon in enumerate((2.31, 2.51, 2.71)):
        write_city(tmp_path / "oscd", _spec(f"c{i}", lon), seed=i)
    argv = ["--train-root", str(tmp_path / "oscd"), "--out", str(tmp_path / "o"), "--quick"]
    assert bench.main(argv) == 2
    err = capsys.readouterr().err
    assert "needs 3 groups of unrelated cities" in err and "--fold-by city" in err
    assert not (tmp_path / "o" / "oscd.json").exists()


def _city(name: str, lonlat: tuple[float, float], dates: str, tiles: str):
    """A city of about 3 x 5 km around ``lonlat``."""
    d1, d2 = dates.split()
    t1, t2 = tiles.split()
    lon, lat = lonlat
    bounds = (lon - 0.02, lat - 0.02, lon + 0.02, lat + 0.02)
    return bench.City(name, Path(name), Path(), Path(), (d1, d2), bounds, (t1, t2))


def test_folds_keep_related_cities_in_one_role():
    """OSCD's eight cities as they are: paris, bercy and saclay_e share images; nantes and
    rennes share a date, not a tile."""
    cities = [
        _city("paris", (2.33, 48.82), "2016-11-30 2017-11-07", "31UDQ 31UDQ"),
        _city("bercy", (2.38, 48.83), "2016-11-30 2017-08-29", "31UDQ 31UDQ"),
        _city("saclay_e", (2.16, 48.71), "2016-03-15 2017-08-29", "31UDP 31UDQ"),
        _city("nantes", (-1.55, 47.22), "2015-08-21 2017-10-14", "30TXT 30TXT"),
        _city("rennes", (-1.68, 48.11), "2015-08-21 2017-06-21", "30UWU 30UWU"),
        _city("abudhabi", (54.4, 24.45), "2016-01-20 2018-03-28", "39QZG 40QBM"),
        _city("beihai", (109.1, 21.48), "2016-12-09 2018-03-09", "49QCD 49QCD"),
    ]
    groups, reasons = bench.city_groups(cities, "related")
    assert ("bercy", "paris", "saclay_e") in groups and len(groups) == 5
    assert any("bercy and saclay_e share the acquisition of 2017-08-29" in r for r in reasons)
    folds = bench.plan_folds(groups, seed=0, test_cities=None)
    assert sorted(c for f in folds for c in f.test) == sorted(c.name for c in cities)
    for f in folds:
        for g in groups:  # a group lies wholly in one role
            assert sum(bool(set(g) & set(role)) for role in (f.test, f.val, f.train)) == 1
    nextdoor = _city("nextdoor", (2.33, 48.86), "2019-01-01 2020-01-01", "31UDQ 31UDQ")
    assert "lie 0.0 km apart" in str(bench.related(cities[0], nextdoor))
    singles, _ = bench.city_groups(cities, "city")
    assert len(bench.plan_folds(singles, seed=0, test_cities=None)) == len(cities)


def test_out_inside_the_repository_is_refused(tmp_path, capsys):
    argv = ["--train-root", str(tmp_path), "--out", str(ROOT / "oscd_out"), "--quick"]
    (tmp_path / "images").mkdir()
    assert bench.main(argv) == 2
    assert "inside the repository" in capsys.readouterr().err
    assert not (ROOT / "oscd_out").exists()


def test_missing_scores_rank_below_every_model_score():
    values = np.array([[[np.nan, 0.0, 0.3]]])
    assert bench.floor(values).tolist() == [[[bench.MISSING, 0.0, np.float32(0.3)]]]
    calib = {"method": "temperature", "T": 2.0}
    out = bench.calibrate(np.array([bench.MISSING, 0.5, 0.9], dtype=np.float32), calib)
    assert out[0] == bench.MISSING and out[1] == pytest.approx(0.5) and 0.5 < out[2] < 0.9
