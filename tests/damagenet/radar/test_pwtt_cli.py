"""``damagenet pwtt`` at the command line: its files and their layout, and its refusals (one line,
the right exit status, nothing left behind)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import rasterio
from support.radar_stores import make_store, schedule, speckled
from test_pwtt_arithmetic import run_cli


def _town(tmp_path, orbits=None):
    rng = np.random.default_rng(3)
    times, orbs = schedule(orbits or {21: (4, 2)})
    shape = (len(times), 10, 12)
    return make_store(
        tmp_path / "town.zarr", speckled(rng, shape), speckled(rng, shape, 0.05), times, orbs
    )


def test_map_files_and_layout(tmp_path):
    store = _town(tmp_path)
    out = tmp_path / "maps" / "town_pwtt.tif"
    assert run_cli(["pwtt", "--radar", str(store), "--out", str(out), "--threshold", "2"]) == 0
    names = sorted(p.name for p in out.parent.iterdir())
    assert names == [
        "town_pwtt.qml",
        "town_pwtt.tif",
        "town_pwtt_backscatter.qml",
        "town_pwtt_backscatter.tif",
        "town_pwtt_class.qml",
        "town_pwtt_class.tif",
        "town_pwtt_quicklook.png",
        "town_pwtt_summary.json",
    ]
    with rasterio.open(out) as src:
        assert (src.dtypes[0], src.nodata, src.descriptions) == ("float32", -9999.0, ("pwtt_T",))
        assert src.crs.to_epsg() == 32636 and src.tags()["THRESHOLD"] == "2"
        assert src.tags()["PRE_WINDOW"] == "2021-02-24/2022-02-23"
    with rasterio.open(out.with_name("town_pwtt_class.tif")) as src:
        assert (src.dtypes[0], src.nodata, src.descriptions) == ("uint8", 255, ("damage_class",))
    ramp = ET.parse(out.with_suffix(".qml")).getroot().find(".//colorrampshader")
    assert ramp is not None and float(ramp.get("minimumValue")) == 0.0
    summary = json.loads(out.with_name("town_pwtt_summary.json").read_text())
    assert summary["orbits"] == [{"relative_orbit": 21, "n_pre": 4, "n_post": 2, "tested": True}]
    assert summary["tested_pixels"] == 120


def test_no_testable_orbit_refused_without_output(tmp_path, capsys):
    store = _town(tmp_path, {21: (2, 2), 94: (5, 1)})
    out = tmp_path / "maps" / "town_pwtt.tif"
    assert run_cli(["pwtt", "--radar", str(store), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "orbit 21: 2 pre, 2 post, orbit 94: 5 pre, 1 post" in err
    assert "Traceback" not in err
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_bad_out_and_missing_store(tmp_path, capsys):
    store = _town(tmp_path)
    assert run_cli(["pwtt", "--radar", str(store), "--out", str(tmp_path / "t.png")]) == 2
    assert "expected a .tif path" in capsys.readouterr().err
    missing = tmp_path / "none.zarr"
    assert run_cli(["pwtt", "--radar", str(missing), "--out", str(tmp_path / "t.tif")]) == 2
    assert "none.zarr: no such file or folder" in capsys.readouterr().err


def test_built_mask_limits_the_map_and_must_share_the_grid(tmp_path, capsys):
    store = _town(tmp_path)
    built = tmp_path / "built.tif"
    mask = np.zeros((10, 12), np.uint8)
    mask[2:6, 3:9] = 1
    profile = dict(driver="GTiff", width=12, height=10, count=1, dtype="uint8", crs="EPSG:32636")
    transform = rasterio.transform.from_origin(500_000, 5_600_000, 10, 10)
    with rasterio.open(built, "w", transform=transform, **profile) as dst:
        dst.write(mask, 1)
    out = tmp_path / "maps" / "town_pwtt.tif"
    assert run_cli(["pwtt", "--radar", str(store), "--out", str(out), "--built", str(built)]) == 0
    with rasterio.open(out) as src:
        t = src.read(1, masked=True)
    np.testing.assert_array_equal(~t.mask, mask.astype(bool))
    shifted = tmp_path / "shifted.tif"
    moved = rasterio.transform.from_origin(500_010, 5_600_000, 10, 10)
    with rasterio.open(shifted, "w", transform=moved, **profile) as dst:
        dst.write(mask, 1)
    out2 = tmp_path / "maps2" / "town_pwtt.tif"
    assert (
        run_cli(["pwtt", "--radar", str(store), "--out", str(out2), "--built", str(shifted)]) == 1
    )
    assert "not on the radar store's grid" in capsys.readouterr().err


def test_a_damaged_chunk_names_the_store(tmp_path, capsys):
    """A chunk file cut short (a copy that stopped): the store and the rows, not the codec."""
    store = _town(tmp_path)
    chunks = sorted(p for p in (store / "vv").rglob("*") if p.is_file() and p.name[0].isdigit())
    chunks[0].write_bytes(chunks[0].read_bytes()[:20])
    out = tmp_path / "maps" / "town_pwtt.tif"
    assert run_cli(["pwtt", "--radar", str(store), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "town.zarr: vv of acquisition" in err
    assert "build it again with 'pipeline radar'" in err
    assert not out.parent.exists() or not any(out.parent.iterdir())
