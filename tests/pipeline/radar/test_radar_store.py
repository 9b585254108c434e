"""The radar store: layout of :mod:`contract.radar`, byte-identical, all or nothing; the CLI."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr
from affine import Affine
from rasterio.crs import CRS
from support.cli import leftovers, refuse_move_into
from support.s1_server import write_aoi

from contract import radar
from contract.cli import run_command
from pipeline.aoi import DateWindow, load_aoi
from pipeline.errors import PipelineUsageError
from pipeline.grid import Grid
from pipeline.radar import cli
from pipeline.radar.series import Acquisition, check_windows, default_post, default_pre
from pipeline.radar.store import write_store

GRID = Grid(CRS.from_epsg(32636), Affine(10, 0, 300000, 0, -10, 5600000), 530, 260)
POST = DateWindow(dt.date(2022, 5, 1), dt.date(2022, 5, 30))


def _acq(day: dt.date, orbit: int, value: float, fail: bool = False) -> Acquisition:
    def read() -> np.ndarray:
        if fail:
            raise OSError("disk went away")
        out = np.full((2, *GRID.shape), value, np.float32)
        out[1] /= 5
        out[:, :3] = np.nan
        return out

    start = dt.datetime.combine(day, dt.time(4, 30), tzinfo=dt.UTC)
    return Acquisition(start, orbit, "descending", "sentinel-1a", read)


def _series(fail: bool = False) -> list[Acquisition]:
    days = [dt.date(2021, 6, 1), dt.date(2021, 6, 13), dt.date(2022, 5, 5)]
    out = [_acq(d, 36, 0.1 * (i + 1)) for i, d in enumerate(days)]
    return [*out, _acq(dt.date(2022, 5, 6), 43, 0.5, fail)]


def _write(path: Path, series: list[Acquisition]) -> Path:
    return write_store(
        path,
        series,
        GRID,
        calibration=radar.SIGMA0,
        source="test",
        aoi="t",
        pre=default_pre(),
        post=POST,
        record={"items": []},
        workers=2,
    )


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            h.update(name.encode() + (Path(root) / name).read_bytes())
    return h.hexdigest()


def test_layout_is_the_contract(tmp_path):
    store = _write(tmp_path / "t.zarr", list(reversed(_series())))
    ds = xr.open_zarr(store, decode_coords="all")
    for pol in radar.POLARISATIONS:
        assert ds[pol].dims == ("time", "y", "x") and ds[pol].dtype == np.float32
        assert ds[pol].encoding["chunks"] == (1, radar.CHUNK, radar.CHUNK)
        assert ds[pol].attrs["units"] == radar.UNITS
    assert ds.rio.crs.to_epsg() == 32636
    assert ds.rio.transform() == GRID.transform
    assert ds[radar.ORBIT].values.tolist() == [36, 36, 36, 43]  # sorted by time
    assert ds[radar.ORBIT].dtype == np.int16
    assert ds.attrs[radar.ATTR_PRE] == "2021-02-24/2022-02-23"
    assert ds.attrs[radar.ATTR_POST] == "2022-05-01/2022-05-30"
    assert ds.attrs["units"] == radar.UNITS
    assert np.isnan(ds.vv.isel(time=0, y=0).values).all()
    assert float(ds.vh.isel(time=3, x=10, y=10)) == pytest.approx(0.1)
    assert json.loads(radar.items_record_path(store).read_text()) == {"items": []}


def test_same_inputs_same_bytes(tmp_path):
    a = _write(tmp_path / "a" / "t.zarr", _series())
    b = _write(tmp_path / "b" / "t.zarr", _series())
    assert _digest(a) == _digest(b)


def test_failed_read_leaves_nothing_and_keeps_the_old_store(tmp_path):
    store = _write(tmp_path / "t.zarr", _series())
    before = _digest(store)
    with pytest.raises(OSError, match="disk went away"):
        _write(tmp_path / "t.zarr", _series(fail=True))
    assert _digest(store) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.items.json", "t.zarr"]


def test_store_and_its_record_published_together(tmp_path, monkeypatch):
    """A store is complete with its items record or absent: a failure at the record's move
    leaves no new store, and an older store keeps its own record."""
    record = radar.items_record_path(tmp_path / "new" / "t.zarr")
    with monkeypatch.context() as m:
        refuse_move_into(m, record)
        with pytest.raises(OSError, match="Input/output"):
            _write(tmp_path / "new" / "t.zarr", _series())
    assert leftovers(tmp_path / "new") == []
    store = _write(tmp_path / "t.zarr", _series())
    before = _digest(store), radar.items_record_path(store).read_bytes()
    refuse_move_into(monkeypatch, radar.items_record_path(store))
    with pytest.raises(OSError, match="Input/output"):
        _write(tmp_path / "t.zarr", list(reversed(_series()))[:2])
    assert (_digest(store), radar.items_record_path(store).read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "t.items.json", "t.zarr"]


def test_windows(tmp_path):
    aoi = load_aoi(write_aoi(tmp_path, after="2022-05-05"))
    assert str(default_pre()) == "2021-02-24/2022-02-23"
    assert str(default_post(aoi)) == "2022-05-05/2022-06-03"
    with pytest.raises(PipelineUsageError, match="does not start after"):
        check_windows(default_pre(), DateWindow(dt.date(2022, 1, 1), dt.date(2022, 3, 1)))


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pipeline")
    cli.add_parser(parser.add_subparsers(dest="command", required=True))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return run_command(args.func, args)


def test_cli_usage_errors_exit_2(tmp_path, capsys):
    aoi = write_aoi(tmp_path)
    out = str(tmp_path / "t.zarr")
    assert _cli(["radar", str(aoi), "--out", out, "--pre", "2022-13-01/2022-14-01"]) == 2
    assert _cli(["radar", str(aoi), "--out", out, "--source", "local"]) == 2
    assert "--source local needs --input" in capsys.readouterr().err
    assert (
        _cli(
            [
                "radar",
                str(aoi),
                "--out",
                str(tmp_path / "t.nc"),
                "--source",
                "synthetic",
                "--max-size-km",
                "1",
            ]
        )
        == 2
    )
    assert not list(tmp_path.glob("*.zarr")) and not list(tmp_path.glob(".*"))


def test_cli_synthetic_end_to_end(tmp_path, capsys):
    aoi = write_aoi(tmp_path)
    out = tmp_path / "t.zarr"
    assert (
        _cli(
            [
                "radar",
                str(aoi),
                "--out",
                str(out),
                "--source",
                "synthetic",
                "--max-size-km",
                "1",
                "--post",
                "2022-05-01/2022-05-31",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.strip() == str(out)
    record = json.loads(radar.items_record_path(out).read_text())
    assert record["calibration"] == radar.SIGMA0 and record["acquisitions"]
