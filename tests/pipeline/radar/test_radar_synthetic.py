"""The synthetic radar bed: speckle, orbits and repeat cycles, damage that shows and stays."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyogrio
import rioxarray  # noqa: F401  (the .rio accessor)
import xarray as xr
from rasterio.features import rasterize
from support.s1_server import write_aoi

from contract import radar
from pipeline.aoi import DateWindow, load_aoi
from pipeline.radar.build import RadarRequest, build_radar
from pipeline.radar.synthetic import ENL, S1B_END, _correlated_speckle, pass_days
from pipeline.synthetic import generate_synthetic


def test_speckle_has_the_looks_of_iw_grd():
    s = _correlated_speckle(np.random.default_rng(0), (400, 400))
    assert abs(float(s.mean()) - 1) < 0.02
    assert abs(float(s.mean() ** 2 / s.var()) - ENL) < 0.3
    neighbour = np.corrcoef(s[:, :-1].ravel(), s[:, 1:].ravel())[0, 1]
    assert 0.2 < neighbour < 0.7  # 20 m cells sampled at 10 m


def test_repeat_cycle_and_platforms():
    days = pass_days(3, DateWindow(dt.date(2021, 11, 1), dt.date(2022, 2, 23)))
    gaps = np.diff([d.toordinal() for d, _ in days])
    before = [p for d, p in days if d < S1B_END]
    after = [p for d, p in days if d >= S1B_END]
    assert set(before) == {"sentinel-1a", "sentinel-1b"}
    assert set(after) == {"sentinel-1a"}
    assert set(gaps.tolist()) <= {6, 12} and 12 in gaps and 6 in gaps


def test_damaged_buildings_change_intact_ones_do_not(tmp_path):
    aoi = load_aoi(write_aoi(tmp_path, half_deg=0.012))
    town = generate_synthetic(aoi, tmp_path / "syn", seed=3, max_size_km=1.5, mode="easy")
    out = tmp_path / "t.zarr"
    build_radar(
        aoi,
        RadarRequest(
            out=out,
            source="synthetic",
            input=tmp_path / "syn",
            seed=3,
            max_size_km=1.5,
            pre=DateWindow(dt.date(2021, 9, 1), dt.date(2022, 2, 23)),
            post=DateWindow(dt.date(2022, 5, 1), dt.date(2022, 6, 15)),
        ),
    )
    ds = xr.open_zarr(out)
    assert len(set(ds[radar.ORBIT].values.tolist())) == 3
    assert np.isfinite(ds.vv.values).all()
    frame = pyogrio.read_dataframe(town.buildings)
    bid = rasterize(
        zip(frame.geometry, frame.building_id, strict=True),
        out_shape=ds.vv.shape[1:],
        transform=ds.rio.transform(),
        dtype="int64",
    )
    orbit = ds[radar.ORBIT].values == ds[radar.ORBIT].values[0]
    post = ds.time.values >= np.datetime64("2022-05-01")
    log = np.log(ds.vv.values[orbit])
    change = np.abs(log[post[orbit]].mean(0) - log[~post[orbit]].mean(0))
    damaged = frame.building_id[frame.damage_class.isin([1, 2])].to_numpy()
    intact = frame.building_id[frame.damage_class == 0].to_numpy()
    assert change[np.isin(bid, damaged)].mean() > 2 * change[np.isin(bid, intact)].mean()


def _digest(folder) -> str:
    import hashlib

    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes(tmp_path):
    aoi = load_aoi(write_aoi(tmp_path))
    window = DateWindow(dt.date(2022, 5, 1), dt.date(2022, 5, 31))
    pre = DateWindow(dt.date(2021, 12, 1), dt.date(2022, 2, 23))
    for name in ("a", "b"):
        build_radar(
            aoi,
            RadarRequest(
                out=tmp_path / name / "t.zarr",
                source="synthetic",
                max_size_km=1.0,
                pre=pre,
                post=window,
                seed=5,
            ),
        )
    assert _digest(tmp_path / "a" / "t.zarr") == _digest(tmp_path / "b" / "t.zarr")
