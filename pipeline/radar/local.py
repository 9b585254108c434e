"""``--source local``: a folder (or one file) of SAFE GRD products or of RTC GeoTIFFs.

SAFE products (``*.SAFE`` folders or their ``*.zip``) are calibrated to sigma0 like the
Planetary Computer GRD items; RTC GeoTIFFs (``*.tif``) are taken as the calibrated backscatter
they say they are. A folder mixing both is refused: one store holds one calibration.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from contract import radar
from pipeline.errors import InputFileError, PipelineUsageError
from pipeline.grid import Grid
from pipeline.radar.grd import read_grd
from pipeline.radar.rtc_files import RtcFile, check_one_orbit, inspect, read_rtc
from pipeline.radar.safe import SafeProduct, open_safe
from pipeline.radar.series import Acquisition, first_valid

if TYPE_CHECKING:
    from pipeline.radar.build import LocalRadarOptions

log = logging.getLogger(__name__)


def _entries(path: Path) -> tuple[list[Path], list[Path]]:
    """SAFE products and GeoTIFFs at ``path`` (a folder, or one of them)."""
    if not path.exists():
        raise PipelineUsageError(f"--input {path}: no such file or folder")
    candidates = sorted(path.iterdir()) if path.is_dir() and path.suffix != ".SAFE" else [path]
    safes = [p for p in candidates if p.suffix in (".SAFE", ".zip")]
    tifs = [p for p in candidates if p.suffix.lower() in (".tif", ".tiff")]
    if safes and tifs:
        raise InputFileError(
            f"{path}: holds both SAFE products and GeoTIFFs; one store holds one calibration, "
            "so give them as separate --input folders"
        )
    if not safes and not tifs:
        raise InputFileError(
            f"{path}: no Sentinel-1 SAFE product (*.SAFE, *.zip) or GeoTIFF (*.tif) found"
        )
    return safes, tifs


def _safe_reader(products: Sequence[SafeProduct], grid: Grid) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        return first_valid(
            np.stack(
                [
                    read_grd(p.measurements[pol], *p.annotations[pol], grid, f"{p.path} {pol}")
                    for pol in radar.POLARISATIONS
                ]
            )
            for p in products
        )

    return read


def _safe_series(paths: list[Path], grid: Grid, noise: bool) -> list[Acquisition]:
    groups: dict[tuple[int, dt.date], list[SafeProduct]] = {}
    for path in paths:
        product = open_safe(path, noise)
        groups.setdefault((product.orbit, product.start.date()), []).append(product)
    out = []
    for _key, group in sorted(groups.items()):
        group.sort(key=lambda p: p.path.name)
        first = group[0]
        out.append(
            Acquisition(
                start=min(p.start for p in group),
                orbit=first.orbit,
                orbit_state=first.orbit_state,
                platform=first.platform,
                read=_safe_reader(group, grid),
                items=tuple({"id": p.path.name, "path": str(p.path)} for p in group),
            )
        )
    return out


def _rtc_reader(pair: dict[str, RtcFile], grid: Grid) -> Callable[[], np.ndarray]:
    return lambda: np.stack([read_rtc(pair[pol], grid) for pol in radar.POLARISATIONS])


def _with_orbits(files: list[RtcFile], opts: LocalRadarOptions, where: Path) -> list[RtcFile]:
    """Every file with its relative orbit and direction: its own tags, else the options."""
    if all(f.orbit is not None and f.orbit_state is not None for f in files):
        return files
    if opts.orbit is None or opts.orbit_state is None:
        bad = next(f for f in files if f.orbit is None or f.orbit_state is None)
        raise InputFileError(
            f"{bad.path}: relative orbit or orbit direction is not in its tags "
            "(RELATIVE_ORBIT, ORBIT_STATE); pass --orbit N --orbit-state "
            "ascending|descending (all files of one orbit)"
        )
    check_one_orbit(files, opts.orbit, where)
    return [replace(f, orbit=opts.orbit, orbit_state=opts.orbit_state) for f in files]


def _pairs(files: list[RtcFile]) -> dict[tuple[int, dt.date], dict[str, RtcFile]]:
    """VV and VH of each orbit and day; a missing or doubled polarisation is refused."""
    pairs: dict[tuple[int, dt.date], dict[str, RtcFile]] = {}
    for f in files:
        pair = pairs.setdefault((int(f.orbit or 0), f.start.date()), {})
        if f.pol in pair:
            raise InputFileError(
                f"{f.path} and {pair[f.pol].path}: two {f.pol.upper()} files of one orbit and day"
            )
        pair[f.pol] = f
    for pair in pairs.values():
        if set(pair) != set(radar.POLARISATIONS):
            only = next(iter(pair.values()))
            other = "VH" if only.pol == "vv" else "VV"
            raise InputFileError(f"{only.path}: no {other} file of the same date beside it")
    return pairs


def _rtc_series(
    paths: list[Path], grid: Grid, opts: LocalRadarOptions
) -> tuple[list[Acquisition], str]:
    files = [inspect(p, opts.scale, opts.calibration) for p in paths]
    files = _with_orbits(files, opts, paths[0].parent)
    calibrations = {f.calibration for f in files}
    if len(calibrations) > 1:
        raise InputFileError(f"{paths[0].parent}: files mix calibrations {sorted(calibrations)}")
    out = []
    for (orbit, _day), pair in sorted(_pairs(files).items()):
        out.append(
            Acquisition(
                start=min(f.start for f in pair.values()),
                orbit=orbit,
                orbit_state=str(pair["vv"].orbit_state),
                platform=pair["vv"].platform,
                read=_rtc_reader(pair, grid),
                items=tuple(
                    {"id": f.path.name, "path": str(f.path), "scale": f.scale}
                    for f in pair.values()
                ),
            )
        )
    return out, calibrations.pop()


def local_series(
    path: Path, grid: Grid, opts: LocalRadarOptions
) -> tuple[list[Acquisition], str, dict]:
    """Acquisitions from local files, their calibration and the record."""
    safes, tifs = _entries(Path(path))
    if safes:
        return (
            _safe_series(safes, grid, opts.noise),
            radar.SIGMA0,
            {"input": str(path), "format": "SAFE", "thermal_noise_removed": opts.noise},
        )
    series, calibration = _rtc_series(tifs, grid, opts)
    return series, calibration, {"input": str(path), "format": "RTC GeoTIFF"}
