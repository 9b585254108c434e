"""Write an AOI's radar series as the Zarr store of :mod:`contract.radar`, all or nothing.

The store and its items record are staged beside their destinations and published as one set
(:func:`contract.atomic.output_set`) only when every chunk and the record are written, so
Snakemake and users never meet a half store, nor a store without its record.
Acquisitions are dask tasks (one per pass, reading only the AOI's window), rechunked to
:data:`contract.radar.CHUNK` pixels and written chunk by chunk: memory stays at a few passes
whatever the length of the series. Metadata hold no clock time, so the same inputs give the
same bytes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from contract import radar
from contract.atomic import output_set
from pipeline.aoi import DateWindow
from pipeline.errors import PipelineUsageError
from pipeline.grid import Grid
from pipeline.radar.series import Acquisition, sorted_series, window_text

log = logging.getLogger(__name__)
#: Zarr format 2 with consolidated metadata: what every xarray and GIS reader opens today.
ZARR_FORMAT = 2
TIME_UNITS = "seconds since 1970-01-01T00:00:00"


def _coords(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre x and y of the grid (metres in its CRS)."""
    t = grid.transform
    x = t.c + (np.arange(grid.width) + 0.5) * t.a
    y = t.f + (np.arange(grid.height) + 0.5) * t.e
    return x, y


def _stack(acquisitions: Sequence[Acquisition], grid: Grid) -> Any:
    """(pol, time, y, x) dask array, one task per acquisition, chunked as the store."""
    import dask
    import dask.array as da

    shape = (len(radar.POLARISATIONS), *grid.shape)
    parts = [
        da.from_delayed(dask.delayed(a.read, pure=False)(), shape=shape, dtype=np.float32)
        for a in acquisitions
    ]
    stack = da.stack(parts, axis=1)
    return stack.rechunk((1, 1, radar.CHUNK, radar.CHUNK))


def to_dataset(
    acquisitions: Sequence[Acquisition],
    grid: Grid,
    attrs: dict[str, str],
) -> Any:
    """The lazy ``xarray.Dataset`` of the store, CF grid mapping written by rioxarray."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)
    import xarray as xr

    series = sorted_series(acquisitions)
    x, y = _coords(grid)
    times = np.array(
        [np.datetime64(a.start.replace(tzinfo=None), "ns") for a in series], "datetime64[ns]"
    )
    data = _stack(series, grid)
    coords = {
        "time": ("time", times),
        "y": ("y", y, {"units": "m", "standard_name": "projection_y_coordinate"}),
        "x": ("x", x, {"units": "m", "standard_name": "projection_x_coordinate"}),
        radar.ORBIT: ("time", np.array([a.orbit for a in series], np.int16)),
        radar.ORBIT_STATE: ("time", np.array([a.orbit_state for a in series], dtype=object)),
        radar.PLATFORM: ("time", np.array([a.platform for a in series], dtype=object)),
    }
    variables = {
        pol: (
            ("time", "y", "x"),
            data[i],
            {
                "long_name": f"{pol.upper()} backscatter ({attrs[radar.ATTR_CALIBRATION]})",
                "units": radar.UNITS,
            },
        )
        for i, pol in enumerate(radar.POLARISATIONS)
    }
    ds = xr.Dataset(variables, coords=coords, attrs={**attrs, "units": radar.UNITS})
    ds = ds.rio.write_crs(grid.crs.to_wkt(), grid_mapping_name=radar.GRID_MAPPING)
    ds = ds.rio.write_transform(grid.transform, grid_mapping_name=radar.GRID_MAPPING)
    return ds.rio.write_coordinate_system()


def _encoding(ds: Any) -> dict[str, dict[str, Any]]:
    chunks = (1, radar.CHUNK, radar.CHUNK)
    enc: dict[str, dict[str, Any]] = {
        pol: {
            **ds[pol].encoding,  # rioxarray's grid_mapping
            "chunks": chunks,
            "_FillValue": np.float32(np.nan),
            "dtype": "float32",
        }
        for pol in radar.POLARISATIONS
    }
    enc["time"] = {"units": TIME_UNITS, "calendar": "proleptic_gregorian", "dtype": "int64"}
    return enc


def write_store(
    out: str | Path,
    acquisitions: Sequence[Acquisition],
    grid: Grid,
    *,
    calibration: str,
    source: str,
    aoi: str,
    pre: DateWindow,
    post: DateWindow,
    record: dict[str, Any],
    workers: int = 4,
) -> Path:
    """Read every acquisition onto ``grid`` and write ``out`` (``*.zarr``) and its items record."""
    import dask

    dest = Path(out)
    if dest.suffix != ".zarr":
        raise PipelineUsageError(f"{dest}: a radar store's name must end in .zarr")
    if calibration not in radar.CALIBRATIONS:
        raise ValueError(f"calibration {calibration!r} is none of {radar.CALIBRATIONS}")
    attrs = {
        radar.ATTR_CALIBRATION: calibration,
        radar.ATTR_SOURCE: source,
        radar.ATTR_AOI: aoi,
        radar.ATTR_PRE: window_text(pre),
        radar.ATTR_POST: window_text(post),
        "Conventions": "CF-1.8",
    }
    ds = to_dataset(acquisitions, grid, attrs)
    log.info("%s: writing %d acquisition(s) on %s", dest, ds.sizes["time"], grid.describe())
    with output_set() as outputs:  # the store and its items record: both, or neither
        staged = outputs.path(dest)
        with dask.config.set(scheduler="threads", num_workers=max(1, workers)):
            ds.to_zarr(
                staged, mode="w", encoding=_encoding(ds), zarr_format=ZARR_FORMAT, consolidated=True
            )
        text = json.dumps(record, indent=1, sort_keys=True) + "\n"
        outputs.path(radar.items_record_path(dest)).write_text(text, encoding="utf-8")
    return dest
