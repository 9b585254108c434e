"""Small radar stores in the layout of :mod:`contract.radar`, written by the tests."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import xarray as xr
from affine import Affine
from rasterio.crs import CRS

from contract import radar

PRE = "2021-02-24/2022-02-23"
POST = "2022-03-01/2022-04-30"
CRS_UTM = "EPSG:32636"
ORIGIN = (500_000.0, 5_600_000.0)


def schedule(orbits: dict[int, tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Acquisition times and orbits: per orbit ``(n_pre, n_post)`` passes 12 days apart."""
    times, orbs = [], []
    for k, (orbit, (n_pre, n_post)) in enumerate(sorted(orbits.items())):
        pre0 = dt.datetime(2021, 3, 1, 4, k)
        post0 = dt.datetime(2022, 3, 2, 4, k)
        times += [pre0 + dt.timedelta(days=12 * i) for i in range(n_pre)]
        times += [post0 + dt.timedelta(days=12 * i) for i in range(n_post)]
        orbs += [orbit] * (n_pre + n_post)
    order = np.argsort(np.array(times, dtype="datetime64[ns]"), kind="stable")
    return np.array(times, dtype="datetime64[ns]")[order], np.array(orbs, np.int16)[order]


def make_store(
    path: Path,
    vv: np.ndarray,
    vh: np.ndarray,
    times: np.ndarray,
    orbits: np.ndarray,
    *,
    pixel: float = 10.0,
    chunk: int = radar.CHUNK,
    attrs: dict[str, str] | None = None,
    zarr_format: int = 2,
) -> Path:
    """Write ``(time, y, x)`` linear power as ``pipeline radar`` does (rioxarray CF grid
    mapping, one acquisition by ``chunk`` x ``chunk`` pixels, consolidated Zarr 2)."""
    import rioxarray  # noqa: F401

    _, h, w = vv.shape
    x = ORIGIN[0] + (np.arange(w) + 0.5) * pixel
    y = ORIGIN[1] - (np.arange(h) + 0.5) * pixel
    n = len(times)
    coords = {
        "time": ("time", times),
        "y": ("y", y),
        "x": ("x", x),
        radar.ORBIT: ("time", orbits.astype(np.int16)),
        radar.ORBIT_STATE: ("time", np.array(["descending"] * n, dtype=object)),
        radar.PLATFORM: ("time", np.array(["sentinel-1a"] * n, dtype=object)),
    }
    dims = ("time", "y", "x")
    ds = xr.Dataset(
        {"vv": (dims, vv.astype(np.float32)), "vh": (dims, vh.astype(np.float32))},
        coords=coords,
        attrs={
            radar.ATTR_CALIBRATION: radar.GAMMA0_RTC,
            radar.ATTR_SOURCE: "test",
            radar.ATTR_AOI: "testtown",
            radar.ATTR_PRE: PRE,
            radar.ATTR_POST: POST,
            "units": radar.UNITS,
            **(attrs or {}),
        },
    )
    ds = ds.rio.write_crs(
        CRS.from_user_input(CRS_UTM).to_wkt(), grid_mapping_name=radar.GRID_MAPPING
    )
    ds = ds.rio.write_transform(
        Affine(pixel, 0, ORIGIN[0], 0, -pixel, ORIGIN[1]), grid_mapping_name=radar.GRID_MAPPING
    )
    ds = ds.rio.write_coordinate_system()
    chunks = (1, min(chunk, h), min(chunk, w))
    encoding = {
        pol: {**ds[pol].encoding, "chunks": chunks, "_FillValue": np.float32(np.nan)}
        for pol in radar.POLARISATIONS
    }
    ds.to_zarr(path, mode="w", encoding=encoding, zarr_format=zarr_format, consolidated=True)
    return path


def speckled(rng: np.random.Generator, shape: tuple[int, ...], level: float = 0.2) -> np.ndarray:
    """Linear power with five-look speckle (gamma, mean ``level``)."""
    return rng.gamma(5.0, level / 5.0, size=shape).astype(np.float32)
