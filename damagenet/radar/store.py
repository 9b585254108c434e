"""Opening an AOI's radar store (:mod:`contract.radar`) and checking it can be read right.

PWTT's arithmetic is only meaningful on calibrated linear power on one regular grid, with each
relative orbit kept apart; a store in dB, amplitude or digital numbers would give a plausible
looking but wrong T map. So everything the test relies on is checked here, once, before any
pixel is computed, and refused with the store's name and what was found.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from contract import radar
from contract.errors import first_line
from damagenet.errors import InputFileError

#: Dimensions of every polarisation variable.
DIMS = ("time", "y", "x")
#: Share of negative values above which a store is taken to hold dB, not linear power.
DB_NEGATIVE_SHARE = 0.5


@dataclass(frozen=True)
class Window:
    """A date window ``start/end``, end inclusive (the store's ``pre_window``/``post_window``)."""

    start: dt.date
    end: dt.date

    def contains(self, times: np.ndarray) -> np.ndarray:
        lo = np.datetime64(self.start, "ns")
        hi = np.datetime64(self.end + dt.timedelta(days=1), "ns")
        return (times >= lo) & (times < hi)

    def __str__(self) -> str:
        return f"{self.start.isoformat()}/{self.end.isoformat()}"


@dataclass(frozen=True)
class OrbitStack:
    """One relative orbit's acquisitions: store time indices in the pre and post windows."""

    orbit: int
    pre: tuple[int, ...]
    post: tuple[int, ...]


@dataclass
class RadarStore:
    """An opened, checked store: the lazily read dataset, its grid and its acquisitions."""

    path: Path
    ds: Any
    crs: Any
    transform: Any
    width: int
    height: int
    pixel_size: float
    chunk_rows: int
    pre: Window
    post: Window
    orbits: list[OrbitStack] = field(default_factory=list)

    def attrs(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in self.ds.attrs.items()}

    def rows(self, pol: str, time: int, r0: int, r1: int) -> np.ndarray:
        return read_rows(self.ds, self.path, pol, time, r0, r1)


def read_rows(ds: Any, path: Path, pol: str, time: int, r0: int, r1: int) -> np.ndarray:
    """Rows ``r0:r1`` of one acquisition, float32; a chunk that cannot be decoded (a truncated
    or overwritten file) is named with the store, not left to the codec's words."""
    try:
        block = ds[pol].isel(time=time, y=slice(r0, r1)).values
    except (RuntimeError, ValueError, OSError) as exc:
        raise InputFileError(
            f"{path}: {pol} of acquisition {time}, rows {r0}-{r1}, cannot be read "
            f"({first_line(exc)}); the store is damaged: build it again with 'pipeline radar'"
        ) from exc
    return np.asarray(block, dtype=np.float32)


def parse_window(text: str, name: str, path: Path) -> Window:
    """``YYYY-MM-DD/YYYY-MM-DD`` into a :class:`Window`, refused with the store's name."""
    try:
        start, end = (dt.date.fromisoformat(p.strip()) for p in str(text).split("/"))
    except ValueError:
        raise InputFileError(
            f"{path}: attribute {name}={text!r} is not a date window YYYY-MM-DD/YYYY-MM-DD"
        ) from None
    if end < start:
        raise InputFileError(f"{path}: attribute {name}={text!r} ends before it starts")
    return Window(start, end)


def _open(path: Path) -> Any:
    import xarray as xr

    if not path.exists():
        raise InputFileError(f"{path}: no such radar store (make it with 'pipeline radar')")
    try:
        return xr.open_dataset(path, engine="zarr", chunks=None, cache=False, decode_coords="all")
    except Exception as exc:  # zarr and xarray raise many kinds for a folder that is no store
        raise InputFileError(f"{path}: not a readable Zarr radar store ({exc})") from exc


def _check_variables(ds: Any, path: Path) -> None:
    for name in radar.POLARISATIONS:
        if name not in ds.data_vars:
            raise InputFileError(
                f"{path}: no {name!r} variable (found {sorted(ds.data_vars)}); PWTT needs "
                f"both {', '.join(radar.POLARISATIONS)}"
            )
        var = ds[name]
        if tuple(var.dims) != DIMS:
            raise InputFileError(f"{path}: {name} has dims {var.dims}, expected {DIMS}")
        if var.dtype.kind != "f":
            raise InputFileError(
                f"{path}: {name} is {var.dtype}, expected float linear power; integer values "
                "are detected amplitude or digital numbers, which need calibration first"
            )
    if radar.ORBIT not in ds.coords:
        raise InputFileError(f"{path}: no {radar.ORBIT!r} coordinate to keep orbits apart")


def _check_radiometry(ds: Any, path: Path) -> None:
    units = str(ds.attrs.get("units", ""))
    if units != radar.UNITS:
        raise InputFileError(
            f"{path}: units={units!r}; PWTT needs {radar.UNITS!r} (convert dB with 10**(dB/10))"
        )
    calibration = str(ds.attrs.get(radar.ATTR_CALIBRATION, ""))
    if calibration not in radar.CALIBRATIONS:
        raise InputFileError(
            f"{path}: calibration={calibration!r}, expected one of {list(radar.CALIBRATIONS)}"
        )


def _grid(ds: Any, path: Path) -> tuple[Any, Any, float]:
    """CRS, affine transform of the pixel corners and the (square) pixel size."""
    from affine import Affine
    from rasterio.crs import CRS

    ref = ds.coords.get(radar.GRID_MAPPING, ds.get(radar.GRID_MAPPING))
    wkt = None if ref is None else ref.attrs.get("crs_wkt") or ref.attrs.get("spatial_ref")
    if not wkt:
        raise InputFileError(f"{path}: no CRS (variable {radar.GRID_MAPPING!r} with crs_wkt)")
    x, y = (np.asarray(ds[c].values, dtype=np.float64) for c in ("x", "y"))
    if len(x) < 2 or len(y) < 2:
        raise InputFileError(f"{path}: grid of {len(y)} x {len(x)} pixels is too small")
    dx, dy = np.diff(x), np.diff(y)
    if not (np.allclose(dx, dx[0]) and np.allclose(dy, dy[0]) and dx[0] > 0 > dy[0]):
        raise InputFileError(f"{path}: x/y are not a regular north-up grid")
    if not np.isclose(dx[0], -dy[0]):
        raise InputFileError(f"{path}: pixels are not square ({dx[0]:g} x {-dy[0]:g} m)")
    transform = Affine(dx[0], 0.0, x[0] - dx[0] / 2, 0.0, dy[0], y[0] - dy[0] / 2)
    return CRS.from_wkt(wkt), transform, float(dx[0])


def _looks_like_db(ds: Any, path: Path) -> bool:
    """Whether the first acquisition is mostly negative, as dB is and power never is."""
    sample = read_rows(ds, path, radar.POLARISATIONS[0], 0, 0, 256)
    finite = sample[np.isfinite(sample)]
    return finite.size > 0 and float(np.mean(finite < 0)) > DB_NEGATIVE_SHARE


def _orbit_stacks(ds: Any, pre: Window, post: Window) -> list[OrbitStack]:
    times = np.asarray(ds["time"].values, dtype="datetime64[ns]")
    orbits = np.asarray(ds[radar.ORBIT].values, dtype=np.int64)
    in_pre, in_post = pre.contains(times), post.contains(times)
    stacks = []
    for orbit in sorted(set(orbits.tolist())):
        mine = orbits == orbit
        stacks.append(
            OrbitStack(
                orbit,
                tuple(np.flatnonzero(mine & in_pre).tolist()),
                tuple(np.flatnonzero(mine & in_post).tolist()),
            )
        )
    return stacks


def _chunk_rows(ds: Any) -> int:
    chunks = ds[radar.POLARISATIONS[0]].encoding.get("chunks") or (1, radar.CHUNK, radar.CHUNK)
    return int(chunks[1])


def open_radar_store(path: str | Path) -> RadarStore:
    """Open ``path`` lazily and check it holds what PWTT needs; raise :class:`InputFileError`."""
    path = Path(path)
    ds = _open(path)
    _check_variables(ds, path)
    _check_radiometry(ds, path)
    crs, transform, pixel = _grid(ds, path)
    if ds.sizes["time"] == 0:
        raise InputFileError(f"{path}: the store holds no acquisition")
    if _looks_like_db(ds, path):
        raise InputFileError(
            f"{path}: most values of the first acquisition are negative, as in dB, though the "
            f"store says {radar.UNITS!r}; rebuild it in linear power"
        )
    pre = parse_window(ds.attrs.get(radar.ATTR_PRE, ""), radar.ATTR_PRE, path)
    post = parse_window(ds.attrs.get(radar.ATTR_POST, ""), radar.ATTR_POST, path)
    if post.start <= pre.end:
        raise InputFileError(f"{path}: post window {post} does not start after pre window {pre}")
    store = RadarStore(
        path, ds, crs, transform, ds.sizes["x"], ds.sizes["y"], pixel, _chunk_rows(ds), pre, post
    )
    store.orbits = _orbit_stacks(ds, pre, post)
    return store
