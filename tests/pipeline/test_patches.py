"""Patch pairs cut window by window (issue 6)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from pyproj import Transformer

from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.patches import cut_patches


def _rasters(r):
    with (
        rasterio.open(r["before"]) as b,
        rasterio.open(r["after"]) as a,
        rasterio.open(r["labels"]) as lab,
    ):
        return b.read(), a.read(), lab.read(1), b.transform, b.crs


def test_patches_are_clean_and_positioned(aoi_rasters, patch_files):
    r = aoi_rasters["bucha"]
    before, after, labels, transform, crs = _rasters(r)
    d = np.load(patch_files[0])
    assert str(d["aoi"]) == "bucha"
    n = len(d["label"])
    assert n > 20 and d["before"].shape == d["after"].shape == (n, 4, 16, 16)
    assert d["before"].dtype == np.uint16 and d["label"].dtype == np.uint8
    assert (d["before"] > 0).all() and (d["after"] > 0).all()
    for i in range(n):
        rr, cc = int(d["row"][i]), int(d["col"][i])
        win = labels[rr : rr + 16, cc : cc + 16]
        assert (win != 255).all()
        assert int((win == 1).sum()) == int(d["damage_pixels"][i])
        assert d["label"][i] == (d["damage_pixels"][i] >= 1)
        assert (d["before"][i] == before[:, rr : rr + 16, cc : cc + 16]).all()
        assert (d["after"][i] == after[:, rr : rr + 16, cc : cc + 16]).all()
    assert len({(int(a), int(b)) for a, b in zip(d["row"], d["col"], strict=True)}) == n
    assert np.allclose(d["x"], transform.c + (d["col"] + 8) * 10)
    assert np.allclose(d["y"], transform.f - (d["row"] + 8) * 10)
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(d["x"], d["y"])
    assert np.allclose(d["lon"], lon) and np.allclose(d["lat"], lat)
    assert rasterio.crs.CRS.from_wkt(str(d["crs"])) == crs
    assert tuple(d["transform"]) == tuple(transform)[:6]
    summary = json.loads(str(d["summary"]))
    assert summary["damaged"] == int(d["label"].sum()) > 0
    assert summary["dropped_nodata"] > 0  # the synthetic cloud and swath edge
    assert (
        summary["candidates"]
        == summary["kept"] + summary["dropped_nodata"] + summary["dropped_unknown"]
    )


def test_strips_do_not_change_the_result(tmp_path, aoi_rasters, patch_files):
    r = aoi_rasters["bucha"]
    small = tmp_path / "small.npz"
    cut_patches(
        "bucha", r["before"], r["after"], r["labels"], small, memory_mb=0.01, progress=False
    )
    assert small.read_bytes() == patch_files[0].read_bytes()


def test_overlapping_stride_and_min_damage(tmp_path, aoi_rasters):
    r = aoi_rasters["irpin"]
    counts8 = cut_patches(
        "irpin", r["before"], r["after"], r["labels"], tmp_path / "s8.npz", stride=8, progress=False
    )
    counts16 = cut_patches(
        "irpin", r["before"], r["after"], r["labels"], tmp_path / "s16.npz", progress=False
    )
    assert counts8.candidates > 3 * counts16.candidates
    strict = cut_patches(
        "irpin",
        r["before"],
        r["after"],
        r["labels"],
        tmp_path / "m5.npz",
        min_damage_pixels=5,
        progress=False,
    )
    assert strict.damaged < counts16.damaged
    assert strict.damaged + strict.no_damage == counts16.damaged + counts16.no_damage


def test_mismatched_grids_and_oversized_patch(tmp_path, aoi_rasters):
    r, other = aoi_rasters["bucha"], aoi_rasters["irpin"]
    out = tmp_path / "p.npz"
    with pytest.raises(PipelineError, match="is not on the grid"):
        cut_patches("bucha", r["before"], other["after"], r["labels"], out, progress=False)
    with pytest.raises(PipelineError, match="larger than the scene"):
        cut_patches("bucha", r["before"], r["after"], r["labels"], out, size=500, progress=False)
    assert not out.exists()


def test_cli(tmp_path, aoi_rasters, root):
    r = aoi_rasters["hostomel"]
    out = tmp_path / "p.npz"
    assert (
        main(
            [
                "-q",
                "patches",
                str(root / "aois" / "hostomel.geojson"),
                "--before",
                str(r["before"]),
                "--after",
                str(r["after"]),
                "--labels",
                str(r["labels"]),
                "--out",
                str(out),
                "--size",
                "8",
            ]
        )
        == 0
    )
    assert np.load(out)["before"].shape[1:] == (4, 8, 8)


def test_help_builds_without_the_libraries():
    """``pipeline --help`` builds every parser: the patch and dataset commands' wiring must not
    import their libraries (rasterio, scipy, pyproj), which cost most of its start-up."""
    code = (
        "import sys; from pipeline.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('rasterio', 'scipy', 'pyproj', 'shapely', 'pipeline.patches', "
        "'pipeline.dataset') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
