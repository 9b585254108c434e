"""``pipeline radar --source local``: SAFE GRD products and RTC GeoTIFFs in their real layouts."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine
from pyproj import Transformer
from support.s1_server import SliceGeometry, truth_sigma0, write_aoi, write_safe

from contract import radar
from pipeline.aoi import DateWindow, load_aoi
from pipeline.errors import InputFileError, PipelineUsageError
from pipeline.radar.build import LocalRadarOptions, RadarRequest, build_radar

PRE = DateWindow(dt.date(2021, 3, 1), dt.date(2022, 2, 23))
X, Y = Transformer.from_crs(4326, 32636, always_xy=True).transform(30.52, 50.45)


def _build(tmp_path: Path, folder: Path, **local) -> xr.Dataset:
    aoi = load_aoi(write_aoi(tmp_path))
    out = tmp_path / "test.zarr"
    build_radar(
        aoi,
        RadarRequest(
            out=out, source="local", input=folder, pre=PRE, local=LocalRadarOptions(**local)
        ),
    )
    return xr.open_zarr(out, decode_coords="all")


def _error(ds: xr.Dataset, t: int, pol: str, day: int) -> np.ndarray:
    x, y = np.meshgrid(ds.x.values, ds.y.values)
    return np.abs(ds[pol].isel(time=t).values / truth_sigma0(x, y, pol, day) - 1)


@pytest.mark.parametrize("as_zip", [False, True])
def test_safe_products_calibrated(tmp_path, as_zip):
    folder = tmp_path / "safe"
    folder.mkdir()
    geom = SliceGeometry((X + 1500, Y + 2500), 500, 400, "descending")
    for day, when in enumerate(("2021-06-01T04:30:00", "2022-05-05T04:30:00")):
        write_safe(folder, geom, dt.datetime.fromisoformat(when), 36, day=day, as_zip=as_zip)
    if as_zip:
        for safe in folder.glob("*.SAFE"):
            __import__("shutil").rmtree(safe)
    ds = _build(tmp_path, folder)
    assert ds.attrs[radar.ATTR_CALIBRATION] == radar.SIGMA0
    assert ds[radar.ORBIT].values.tolist() == [36, 36]
    assert ds[radar.ORBIT_STATE].values.tolist() == ["descending"] * 2
    for t in (0, 1):
        assert np.nanmedian(_error(ds, t, "vh", t)) < 0.01


def test_safe_refusals(tmp_path):
    geom = SliceGeometry((X + 1500, Y + 2500), 300, 300, "descending")
    safe = write_safe(tmp_path / "a", geom, dt.datetime(2021, 6, 1, 4, 30), 36)
    slc = safe.with_name(safe.name.replace("_GRDH_", "_SLC__"))
    safe.rename(slc)
    with pytest.raises(InputFileError, match="not named like|only IW GRD"):
        _build(tmp_path, slc.parent)
    slc.rename(safe)
    for f in safe.glob("annotation/calibration/noise-*.xml"):
        f.unlink()
    with pytest.raises(InputFileError, match="--no-noise-removal"):
        _build(tmp_path, safe.parent)
    assert not (tmp_path / "test.zarr").exists()


def _rtc(
    path: Path,
    pol: str,
    day: int,
    db: bool = False,
    tags: dict | None = None,
    dtype: str = "float32",
) -> Path:
    h = w = 300
    transform = Affine(10, 0, round(X / 10) * 10 - 1500, 0, -10, round(Y / 10) * 10 + 1500)
    cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    x, y = transform * (cols, rows)
    data = truth_sigma0(np.asarray(x), np.asarray(y), pol, day)
    data = 10 * np.log10(data) if db else data
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=w,
        height=h,
        count=1,
        dtype=dtype,
        crs="EPSG:32636",
        transform=transform,
        nodata=np.nan if dtype[0] == "f" else 0,
    ) as dst:
        dst.write(data.astype(dtype), 1)
        dst.update_tags(**(tags or {}))
    return path


ASF = "S1A_IW_{t}_DVP_RTC10_G_gpuned_1A2B_{p}.tif"
WHEN = ("20210601T043000", "20220503T043000")  # 336 days: 28 repeats of 12


def test_asf_rtc_power_with_orbit_option(tmp_path):
    folder = tmp_path / "rtc"
    folder.mkdir()
    for day, t in enumerate(WHEN):
        for pol in ("vv", "vh"):
            _rtc(folder / ASF.format(t=t, p=pol.upper()), pol, day)
    with pytest.raises(InputFileError, match="--orbit N --orbit-state"):
        _build(tmp_path, folder)
    ds = _build(tmp_path, folder, orbit=36, orbit_state="descending")
    assert ds.attrs[radar.ATTR_CALIBRATION] == radar.GAMMA0_RTC
    assert np.nanmax(_error(ds, 1, "vv", 1)) < 1e-3


def test_rtc_db_from_tags_and_scale_asked_when_unknown(tmp_path):
    folder = tmp_path / "rtc"
    folder.mkdir()
    tags = {"RELATIVE_ORBIT": "43", "ORBIT_STATE": "ascending", "PLATFORM": "SENTINEL-1A"}
    for day, t in enumerate(WHEN):
        for pol in ("vv", "vh"):
            _rtc(folder / f"S1A_{t}_{pol.upper()}.tif", pol, day, db=True, tags=tags)
    with pytest.raises(InputFileError, match="--rtc-scale"):
        _build(tmp_path, folder, calibration=radar.SIGMA0)
    with pytest.raises(InputFileError, match="most values are negative"):
        _build(tmp_path, folder, calibration=radar.SIGMA0, scale="power")
    ds = _build(tmp_path, folder, calibration=radar.SIGMA0, scale="db")
    assert ds[radar.ORBIT].values.tolist() == [43, 43]
    assert np.nanmax(_error(ds, 0, "vh", 0)) < 1e-3
    for f in folder.glob("*.tif"):
        with rasterio.open(f, "r+") as dst:
            dst.update_tags(UNITS="dB", CALIBRATION="sigma0")
    assert _build(tmp_path, folder).attrs[radar.ATTR_CALIBRATION] == radar.SIGMA0


def test_rtc_refusals(tmp_path):
    folder = tmp_path / "rtc"
    folder.mkdir()
    _rtc(folder / ASF.format(t=WHEN[0], p="VV"), "vv", 0, dtype="uint16")
    with pytest.raises(InputFileError, match="uint16 values are scaled"):
        _build(tmp_path, folder)
    (folder / ASF.format(t=WHEN[0], p="VV")).unlink()
    _rtc(folder / ASF.format(t=WHEN[0], p="VV"), "vv", 0)
    _rtc(folder / ASF.format(t=WHEN[0], p="VH"), "vh", 0)
    _rtc(folder / ASF.format(t="20220504T154000", p="VV"), "vv", 1)
    _rtc(folder / ASF.format(t="20220504T154000", p="VH"), "vh", 1)
    with pytest.raises(PipelineUsageError, match="not one relative orbit"):
        _build(tmp_path, folder, orbit=36, orbit_state="descending")
    assert not (tmp_path / "test.zarr").exists()
