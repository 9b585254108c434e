"""``damagenet pwtt --null``: the pre-war null test the fused map standardises T with. Which
acquisitions it sets aside, that it equals PWTT run on a store holding only those windows, and
its refusal when the pre window is too short."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from support.radar_stores import make_store, schedule, speckled
from test_pwtt_arithmetic import run_cli

from damagenet.errors import InputFileError
from damagenet.radar.null import null_stacks
from damagenet.radar.pwtt_map import PwttOptions, pwtt_map
from damagenet.radar.store import open_radar_store

ORBITS = {21: (7, 2), 94: (6, 3)}


def _data(shape, seed=5):
    rng = np.random.default_rng(seed)
    return speckled(rng, shape), speckled(rng, shape, 0.05)


def test_pseudo_post_is_the_post_count_from_the_same_season(tmp_path):
    times, orbits = schedule(ORBITS)
    vv, vh = _data((len(times), 6, 7))
    store = open_radar_store(make_store(tmp_path / "s.zarr", vv, vh, times, orbits))
    stacks, matched = null_stacks(store)
    assert matched  # post starts 2022-03-01: 2021-03-01 lies in the pre window
    for stack, real in zip(stacks, store.orbits, strict=True):
        assert len(stack.post) == len(real.post)
        assert stack.post == real.pre[: len(real.post)]  # the first passes from 2021-03-01
        assert stack.pre == real.pre[len(real.post) :]
    late = {"pre_window": "2021-06-01/2022-02-23"}  # a year before the post: not in the window
    times2 = times.copy()
    times2[times2 < np.datetime64("2022-01-01")] += np.timedelta64(100, "D")
    store = open_radar_store(make_store(tmp_path / "t.zarr", vv, vh, times2, orbits, attrs=late))
    stacks, matched = null_stacks(store)
    assert not matched
    for stack, real in zip(stacks, store.orbits, strict=True):
        assert stack.post == real.pre[-len(real.post) :]


def test_null_equals_pwtt_on_a_store_of_those_windows_alone(tmp_path):
    """The recorded mean and sd are those of the T map PWTT makes when the set-aside pre-war
    passes are the post window and the other pre-war passes the pre window."""
    times, orbits = schedule(ORBITS)
    vv, vh = _data((len(times), 20, 24))
    path = make_store(tmp_path / "s.zarr", vv, vh, times, orbits)
    out = tmp_path / "maps" / "s_pwtt.tif"
    assert run_cli(["pwtt", "--radar", str(path), "--out", str(out), "--null"]) == 0
    with rasterio.open(out) as src:
        tags = src.tags()
    store = open_radar_store(path)
    keep, when = [], times.copy()
    for stack, real in zip(null_stacks(store)[0], store.orbits, strict=True):
        keep += list(stack.pre) + list(stack.post)
        when[list(stack.post)] = times[list(real.post)]  # set-aside passes moved into the post
    keep = sorted(keep, key=lambda i: when[i])
    alone = make_store(tmp_path / "a.zarr", vv[keep], vh[keep], when[keep], orbits[keep])
    pwtt_map(alone, tmp_path / "alone" / "a_pwtt.tif", PwttOptions())
    with rasterio.open(tmp_path / "alone" / "a_pwtt.tif") as src:
        t = src.read(1, masked=True).compressed().astype(np.float64)
    assert float(tags["NULL_T_MEAN"]) == pytest.approx(t.mean(), rel=1e-5)
    assert float(tags["NULL_T_SD"]) == pytest.approx(t.std(), rel=1e-5)
    summary = json.loads(out.with_name("s_pwtt_summary.json").read_text())
    assert summary["null"]["pixels"] == t.size
    assert summary["null"]["pseudo_post_acquisitions"]["21"] == ["2021-03-01", "2021-03-13"]


def test_without_null_no_tags(tmp_path):
    times, orbits = schedule(ORBITS)
    vv, vh = _data((len(times), 6, 7))
    path = make_store(tmp_path / "s.zarr", vv, vh, times, orbits)
    out = tmp_path / "maps" / "s_pwtt.tif"
    assert run_cli(["pwtt", "--radar", str(path), "--out", str(out)]) == 0
    with rasterio.open(out) as src:
        assert "NULL_T_MEAN" not in src.tags()
    assert json.loads(out.with_name("s_pwtt_summary.json").read_text())["null"] is None


def test_pre_window_too_short_for_a_null_refused(tmp_path, capsys):
    times, orbits = schedule({21: (3, 2)})  # testable, but 3 - 2 pre passes are left
    vv, vh = _data((len(times), 6, 7))
    path = make_store(tmp_path / "s.zarr", vv, vh, times, orbits)
    out = tmp_path / "maps" / "s_pwtt.tif"
    assert run_cli(["pwtt", "--radar", str(path), "--out", str(out), "--null"]) == 1
    err = capsys.readouterr().err
    assert "pre-war null test" in err and "Traceback" not in err
    assert not out.parent.exists() or not any(out.parent.iterdir())
    with pytest.raises(InputFileError, match="without --null"):
        pwtt_map(path, out, PwttOptions(null=True))
