"""``damagenet fuse``: the fused map's arithmetic on hand-made maps, the fallback on radar under
cloud, grids and inputs refused with one line, outputs whole or absent, byte-identical reruns."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from support.cli import check_one_line
from support.cli import run_cli as _run_cli

NODATA = -9999.0
ORIGIN = (500_000.0, 5_600_000.0)


def run_cli(argv: list[str]) -> int:
    """``damagenet fuse ARGS`` through the real command line (parser errors are exit 2)."""
    return _run_cli(["damagenet", *argv])


def write_map(path: Path, values, description: str, tags=None, origin=ORIGIN) -> Path:
    """A float32 single-band GeoTIFF on a 10 m UTM grid, NaN written as nodata."""
    a = np.asarray(values, dtype=np.float64)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=a.shape[1],
        height=a.shape[0],
        count=1,
        dtype="float32",
        nodata=NODATA,
        crs="EPSG:32636",
        transform=from_origin(*origin, 10, 10),
    ) as dst:
        dst.write(np.where(np.isfinite(a), a, NODATA).astype(np.float32), 1)
        dst.set_band_description(1, description)
        dst.update_tags(**(tags or {}))
    return path


def t_map(path: Path, values, mean=1.5, sd=0.5, **kw) -> Path:
    tags = {"NULL_T_MEAN": str(mean), "NULL_T_SD": str(sd), "NULL_TEST": "test", "THRESHOLD": "3.3"}
    return write_map(path, values, "pwtt_T", tags, **kw)


def prob_map(path: Path, values, **kw) -> Path:
    return write_map(path, values, "damage_probability", **kw)


def sigmoid(x):
    return 1 / (1 + np.exp(-np.asarray(x, dtype=np.float64)))


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1, masked=True).astype(np.float64).filled(np.nan)


def maps(tmp_path: Path, t, logits):
    return t_map(tmp_path / "in" / "x_pwtt.tif", t), prob_map(
        tmp_path / "in" / "x_damage_prob.tif", sigmoid(logits)
    )


T = [[1.5, 2.5, 4.0], [np.nan, 3.0, 0.5]]
LOGITS = [[-1.0, 1.0, 4.0], [2.0, np.nan, -3.0]]


def test_fused_z_by_hand_with_a_prewar_null(tmp_path):
    pwtt, prob = maps(tmp_path, T, LOGITS)
    prewar = prob_map(tmp_path / "in" / "prewar_prob.tif", sigmoid([[-1.0, 1.0], [-1.0, 1.0]]))
    out = tmp_path / "maps" / "x_fused.tif"
    argv = ["fuse", "--pwtt", str(pwtt), "--optical", str(prob), "--out", str(out)]
    argv += ["--optical-null", str(prewar), "--threshold", "2.5", "--radar-centre", "null"]
    assert run_cli(argv) == 0
    z_radar = (np.array(T) - 1.5) / 0.5  # the T map's recorded null
    z_optical = np.array(LOGITS)  # pre-war logits -1, 1: mean 0, sd 1
    expected = np.where(np.isfinite(z_radar), z_radar, 0) + np.where(
        np.isfinite(z_optical), z_optical, 0
    )
    # [[-1, 3, 9], [2, 3, -6]]: each pixel seen by at least one sensor
    np.testing.assert_allclose(read(out), expected, atol=1e-5)
    np.testing.assert_array_equal(read(out.with_name("x_fused_class.tif")), [[0, 1, 1], [0, 1, 0]])
    sensors = read(out.with_name("x_fused_sensors.tif"))
    np.testing.assert_array_equal(sensors, [[3, 3, 3], [2, 1, 3]])
    summary = json.loads(out.with_name("x_fused_summary.json").read_text())
    assert summary["nulls"]["optical"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert summary["nulls"]["optical"]["sd"] == pytest.approx(1.0, abs=1e-5)
    radar = summary["nulls"]["radar"]
    assert (radar["mean"], radar["sd"]) == (1.5, 0.5) and "centred on its mean" in radar["how"]
    assert summary["pixels"] == {
        "radar_only": 1,
        "optical_only": 1,
        "both": 4,
        "pixels_seen": 6,
        "damaged_pixels": 3,
    }


def test_robust_optical_null_from_the_map_itself(tmp_path):
    pwtt, prob = maps(tmp_path, [[2.0] * 5], [[-2.0, -1.0, 0.0, 1.0, 5.0]])
    out = tmp_path / "maps" / "x_fused.tif"
    argv = ["fuse", "--pwtt", str(pwtt), "--optical", str(prob), "--out", str(out)]
    assert run_cli([*argv, "--radar-centre", "null"]) == 0
    summary = json.loads(out.with_name("x_fused_summary.json").read_text())
    # median 0, absolute deviations 2, 1, 0, 1, 5: MAD 1
    assert summary["nulls"]["optical"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert summary["nulls"]["optical"]["sd"] == pytest.approx(1.4826, abs=1e-4)
    expected = 1.0 + np.array([-2.0, -1.0, 0.0, 1.0, 5.0]) / 1.4826
    np.testing.assert_allclose(read(out)[0], expected, atol=1e-4)


def test_cloud_falls_back_on_radar_alone(tmp_path):
    t = np.full((4, 4), 4.0)
    logits = np.full((4, 4), 3.0)
    logits[:, :2] = np.nan  # the left half under cloud: no optical value
    logits[2, 2] = -1.0  # room for a spread in the map's own null
    pwtt, prob = maps(tmp_path, t, logits)
    out = tmp_path / "maps" / "x_fused.tif"
    argv = ["fuse", "--pwtt", str(pwtt), "--optical", str(prob), "--out", str(out)]
    assert run_cli([*argv, "--radar-centre", "null"]) == 0
    fused = read(out)
    np.testing.assert_allclose(fused[:, :2], 5.0, atol=1e-5)  # z_radar = (4 - 1.5) / 0.5
    assert np.all(read(out.with_name("x_fused_sensors.tif"))[:, :2] == 1)
    assert np.all(read(out.with_name("x_fused_class.tif"))[:, :2] == 1)


def test_radar_centred_on_the_maps_own_median_by_default(tmp_path):
    """A null whose level sits off the post window's (here every pixel's T is 2 to 4 sds above
    the null's mean 1.5) would flag the whole town; the map's own median takes that shift out,
    the null's sd still scales it, and the order of the pixels is the same either way."""
    t = [[2.5, 2.5, 2.5, 2.5, 3.5]]
    pwtt, prob = maps(tmp_path, t, [[0.0] * 5])  # optical z 0: pre-war logits -1, 1
    prewar = prob_map(tmp_path / "in" / "prewar_prob.tif", sigmoid([[-1.0, 1.0], [-1.0, 1.0]]))
    out = tmp_path / "maps" / "x_fused.tif"
    argv = ["fuse", "--pwtt", str(pwtt), "--optical", str(prob), "--out", str(out)]
    argv += ["--optical-null", str(prewar)]
    assert run_cli(argv) == 0
    np.testing.assert_allclose(read(out)[0], [0.0, 0.0, 0.0, 0.0, 2.0], atol=1e-5)
    radar = json.loads(out.with_name("x_fused_summary.json").read_text())["nulls"]["radar"]
    assert (radar["mean"], radar["sd"]) == (2.5, 0.5) and "map's median" in radar["how"]
    out_null = tmp_path / "null" / "x_fused.tif"
    argv[argv.index(str(out))] = str(out_null)
    assert run_cli([*argv, "--radar-centre", "null"]) == 0
    np.testing.assert_allclose(read(out_null)[0], [2.0, 2.0, 2.0, 2.0, 4.0], atol=1e-5)


def test_grid_mismatch_refused_without_output(tmp_path, capsys):
    pwtt = t_map(tmp_path / "x_pwtt.tif", [[2.0, 3.0]])
    prob = prob_map(tmp_path / "x_damage_prob.tif", [[0.1, 0.9]], origin=(500_010.0, ORIGIN[1]))
    out = tmp_path / "maps" / "x_fused.tif"
    assert run_cli(["fuse", "--pwtt", str(pwtt), "--optical", str(prob), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "not on the grid of" in err and "x_damage_prob.tif" in err and "Traceback" not in err
    assert not out.parent.exists() or not any(out.parent.iterdir())


@pytest.mark.parametrize(
    ("which", "message", "code"),
    [
        ("no-null", "records no pre-war null", 1),
        ("swapped", "is not a PWTT T map", 1),
        ("not-prob", "is not a Sentinel-2 damage probability map", 1),
        ("missing", "absent_pwtt.tif: no such file or folder", 2),
        ("png", "expected a .tif path", 2),
    ],
)
def test_bad_inputs_one_line_and_nothing_written(tmp_path, capsys, which, message, code):
    pwtt, prob = maps(tmp_path, T, LOGITS)
    out = tmp_path / "maps" / "x_fused.tif"
    if which == "no-null":
        pwtt = write_map(tmp_path / "in" / "old_pwtt.tif", T, "pwtt_T")
    elif which == "swapped":
        pwtt, prob = prob, pwtt
    elif which == "not-prob":
        prob = write_map(tmp_path / "in" / "other.tif", T, "something_else")
    elif which == "missing":
        pwtt = tmp_path / "absent_pwtt.tif"
    elif which == "png":
        out = out.with_suffix(".png")
    argv = ["fuse", "--pwtt", str(pwtt), "--optical", str(prob), "--out", str(out)]
    assert run_cli(argv) == code
    err = capsys.readouterr().err
    check_one_line(err, (message,))  # argparse's usage errors print the usage above it
    assert code == 2 or len(err.strip().splitlines()) == 1
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_outputs_whole_or_absent(tmp_path, monkeypatch):
    from damagenet.radar import fused_map

    pwtt, prob = maps(tmp_path, T, LOGITS)
    out = tmp_path / "maps" / "x_fused.tif"

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(fused_map, "write_radar_quicklook", broken)
    with pytest.raises(OSError, match="disk full"):
        fused_map.fuse_map(pwtt, prob, out, fused_map.FuseOptions())
    assert not any(out.parent.iterdir())  # no staged folder, no half map
    monkeypatch.undo()
    fused_map.fuse_map(pwtt, prob, out, fused_map.FuseOptions())
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "x_fused.qml",
        "x_fused.tif",
        "x_fused_class.qml",
        "x_fused_class.tif",
        "x_fused_quicklook.png",
        "x_fused_sensors.qml",
        "x_fused_sensors.tif",
        "x_fused_summary.json",
    ]
    with rasterio.open(out) as src:
        assert (src.dtypes[0], src.nodata, src.descriptions) == ("float32", NODATA, ("fused_z",))
        assert src.crs.to_epsg() == 32636 and src.tags()["THRESHOLD"] == "3"
        assert src.tags()["PRODUCT"].startswith("FUSED")


def test_rerun_is_byte_identical(tmp_path):
    pwtt, prob = maps(tmp_path, T, LOGITS)
    outs = [tmp_path / name / "x_fused.tif" for name in ("a", "b")]
    for out in outs:
        assert (
            run_cli(["fuse", "--pwtt", str(pwtt), "--optical", str(prob), "--out", str(out)]) == 0
        )
    first = sorted(outs[0].parent.iterdir())
    assert [p.name for p in first] == sorted(p.name for p in outs[1].parent.iterdir())
    for path in first:
        assert path.read_bytes() == (outs[1].parent / path.name).read_bytes(), path.name


def test_help_lists_every_option():
    proc = subprocess.run(
        [sys.executable, "-m", "damagenet", "fuse", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0
    for option in ("--pwtt", "--optical", "--out", "--threshold", "--optical-null"):
        assert option in proc.stdout
