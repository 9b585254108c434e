"""Local GeoTIFFs of calibrated backscatter (RTC products): one file per polarisation and date.

ASF HyP3 RTC names its files ``S1A_IW_<start>_DVP_RTC10_G_gpuned_<id>_VV.tif``: the letters
after the ``_G_``/``_S_`` block say gamma0 (``g``) or sigma0 (``s``) and power (``p``),
amplitude (``a``) or dB (``d``). Other tools record the same in tags (``UNITS``, ``SCALE``,
``CALIBRATION``, ``RELATIVE_ORBIT``, ``ORBIT_STATE``, ``PLATFORM``, ``ACQUISITION_START``) or
in names (``..._VV_dB.tif``). What neither says is asked for with an option, never guessed:
``--rtc-scale``, ``--calibration``, ``--orbit`` and ``--orbit-state`` (one orbit for all files,
checked against their acquisition times). Integer files are refused: they are scaled or raw
numbers, not calibrated backscatter.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import WindowError
from rasterio.warp import Resampling, reproject, transform_bounds
from rasterio.windows import from_bounds

from contract import radar
from pipeline.errors import InputFileError, PipelineUsageError
from pipeline.grid import Grid
from pipeline.radar.series import normalise_platform, normalise_state

ASF = re.compile(
    r"S1([A-D])_IW_(\d{8}T\d{6})_[DS][VH][PR]_RTC\d+_[GS]_([gs])([pad])\w{4}_"
    r"[0-9A-F]{4}_(VV|VH)\.tiff?$"
)
SCALE_WORDS = {
    "db": "db",
    "decibel": "db",
    "decibels": "db",
    "power": "power",
    "linear": "power",
    "linear power": "power",
    "amplitude": "amplitude",
}
CALIBRATION_WORDS = {
    "gamma0": radar.GAMMA0_RTC,
    radar.GAMMA0_RTC: radar.GAMMA0_RTC,
    "gamma0_terrain_corrected": radar.GAMMA0_RTC,
    "sigma0": radar.SIGMA0,
}


@dataclass(frozen=True)
class RtcFile:
    """One polarisation of one date, with what its tags and name say."""

    path: Path
    pol: str
    start: dt.datetime
    platform: str
    scale: str
    calibration: str
    orbit: int | None
    orbit_state: str | None


def _tag(tags: dict[str, str], *keys: str) -> str | None:
    for key in keys:
        for k, v in tags.items():
            if k.upper() == key and str(v).strip():
                return str(v).strip()
    return None


def _scale(path: Path, tags: dict[str, str], asf: re.Match | None, option: str | None) -> str:
    found = _tag(tags, "UNITS", "SCALE", "BACKSCATTER_SCALE")
    if found and found.lower() in SCALE_WORDS:
        return SCALE_WORDS[found.lower()]
    if asf:
        return {"p": "power", "a": "amplitude", "d": "db"}[asf.group(4)]
    if re.search(r"(^|[_.-])db([_.-]|$)", path.stem, re.I):
        return "db"
    if option:
        return option
    raise InputFileError(
        f"{path}: whether its values are linear power, amplitude or dB is recorded neither in "
        f"its tags (UNITS={found!r}) nor in its name; pass --rtc-scale power|amplitude|db"
    )


def _calibration(path: Path, tags: dict[str, str], asf: re.Match | None, option: str | None) -> str:
    found = _tag(tags, "CALIBRATION", "RADIOMETRY")
    if found and found.lower() in CALIBRATION_WORDS:
        return CALIBRATION_WORDS[found.lower()]
    if asf:
        return radar.GAMMA0_RTC if asf.group(3) == "g" else radar.SIGMA0
    if option:
        return option
    raise InputFileError(
        f"{path}: whether it holds terrain-corrected gamma0 or sigma0 is not recorded; pass "
        "--calibration gamma0_terrain_corrected|sigma0"
    )


def _start(path: Path, tags: dict[str, str]) -> dt.datetime:
    text = _tag(tags, "ACQUISITION_START", "ACQUISITION_DATETIME", "ACQUISITION_DATE")
    if text:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    m = re.search(r"(\d{8}T\d{6})", path.name)
    if m is None:
        raise InputFileError(
            f"{path}: no acquisition time in its tags (ACQUISITION_START) or name (YYYYMMDDTHHMMSS)"
        )
    return dt.datetime.strptime(m.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=dt.UTC)


def _pol(path: Path, description: str | None) -> str:
    hits = {p for p in ("vv", "vh") if re.search(rf"(^|[_.-]){p}([_.-]|$)", path.stem, re.I)}
    if description and description.lower() in ("vv", "vh"):
        hits = {description.lower()}
    if len(hits) != 1:
        raise InputFileError(f"{path}: polarisation (VV or VH) not in its name or band name")
    return hits.pop()


def inspect(path: Path, scale: str | None, calibration: str | None) -> RtcFile:
    """What one file is, from data type, tags and name (see the module docstring)."""
    with rasterio.open(path) as src:
        if src.count != 1:
            raise InputFileError(f"{path}: {src.count} bands; one file per polarisation expected")
        if src.crs is None:
            raise InputFileError(f"{path}: no CRS; RTC GeoTIFFs are map-projected")
        if not src.dtypes[0].startswith("float"):
            raise InputFileError(
                f"{path}: {src.dtypes[0]} values are scaled or raw numbers, not calibrated "
                "backscatter; export float32 linear power or dB"
            )
        tags = {**src.tags(), **src.tags(1)}
        description = src.descriptions[0]
    asf = ASF.search(path.name)
    m = re.search(r"(^|_)S1([A-D])_", path.name)
    platform = _tag(tags, "PLATFORM", "MISSION") or (f"s1{m.group(2)}" if m else None)
    if platform is None:
        raise InputFileError(f"{path}: platform not in its tags (PLATFORM) or name (S1A_...)")
    orbit = _tag(tags, "RELATIVE_ORBIT", "RELATIVEORBITNUMBER")
    state = _tag(tags, "ORBIT_STATE", "ORBIT_DIRECTION", "PASS")
    return RtcFile(
        path,
        _pol(path, description),
        _start(path, tags),
        normalise_platform(platform),
        _scale(path, tags, asf, scale),
        _calibration(path, tags, asf, calibration),
        int(orbit) if orbit else None,
        normalise_state(state) if state else None,
    )


def check_one_orbit(files: list[RtcFile], orbit: int, where: Path) -> None:
    """Files given one ``--orbit`` must be able to be one: same time of day, 6-day steps."""
    days = sorted({f.start.date() for f in files})
    hours = [f.start.hour + f.start.minute / 60 for f in files]
    if max(hours) - min(hours) > 1.0 or any((d - days[0]).days % 6 for d in days):
        raise PipelineUsageError(
            f"{where}: --orbit {orbit} given, but the files' acquisition times are not one "
            "relative orbit's (same time of day, 6 or 12 days apart); split them by orbit"
        )


def to_power(values: np.ndarray, scale: str, where: Path) -> np.ndarray:
    """Linear power from the file's scale; a "power" file full of negatives is refused."""
    finite = values[np.isfinite(values)]
    if scale != "db" and finite.size and float(np.mean(finite < 0)) > 0.5:
        raise InputFileError(
            f"{where}: said to hold {scale} but most values are negative, as dB is; pass "
            "--rtc-scale db if so"
        )
    if scale == "db":
        return (10.0 ** (values / 10.0)).astype(np.float32)
    if scale == "amplitude":
        return (values * values).astype(np.float32)
    return values.astype(np.float32)


def read_rtc(f: RtcFile, grid: Grid) -> np.ndarray:
    """The file's window over the grid, as linear power, warped onto it (bilinear)."""
    out = np.full(grid.shape, np.nan, dtype=np.float32)
    with rasterio.open(f.path) as src:
        left, bottom, right, top = transform_bounds(grid.crs, src.crs, *grid.bounds)
        pad = 2 * max(abs(src.transform.a), abs(src.transform.e))
        win = from_bounds(left - pad, bottom - pad, right + pad, top + pad, src.transform)
        try:
            win = (
                win.round_offsets()
                .round_lengths()
                .intersection(rasterio.windows.Window(0, 0, src.width, src.height))
            )
        except WindowError:  # the file does not reach the AOI
            return out
        values = src.read(1, window=win, masked=True).astype(np.float32).filled(np.nan)
        transform = src.window_transform(win)
        crs = src.crs
    power = to_power(values, f.scale, f.path)
    power[~(power > 0)] = np.nan
    reproject(
        power,
        out,
        src_transform=transform,
        src_crs=crs,
        src_nodata=np.nan,
        dst_transform=grid.transform,
        dst_crs=grid.crs,
        dst_nodata=np.nan,
        resampling=Resampling.bilinear,
    )
    return out
