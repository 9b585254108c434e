"""Both dates and the change map of a city on its 10 m UTM grid, each resampled once.

Each date is reprojected from its own EPSG:4326 georeference straight onto the grid, band by
band, bilinearly as float with no data as NaN (:func:`pipeline.scenes.local.read_band_files`,
the reader of every per-band download): a second date on a slightly different pixel grid
(OSCD's saclay_e and abudhabi) is resampled onto the same output pixels as the first, with no
intermediate grid. The change map has no georeference; it is placed on the grid of the date
whose size it has (the first, in OSCD) and reprojected with nearest neighbour.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning

from contract.labels import DAMAGE, NO_DAMAGE, UNKNOWN
from pipeline.errors import InputFileError
from pipeline.grid import Grid
from pipeline.oscd.layout import CityFiles, DateFiles
from pipeline.scenes.local import LocalOptions, read_band_files
from pipeline.scenes.onto_grid import classes_onto_grid
from pipeline.scenes.product import RawScene, check_plausible

log = logging.getLogger(__name__)

#: OSCD's own codes (its files hold 1 and 2, although its README says 0 and 1).
OSCD_NO_CHANGE, OSCD_CHANGE = 1, 2
OSCD_CODING = "1 no change, 2 change (as OSCD's files hold it)"
README_CODING = "0 no change, 1 change (as OSCD's README states it)"


@dataclass(frozen=True)
class ChangeMap:
    """A change map in OSCD's codes on the pixel grid of one date."""

    path: Path
    classes: np.ndarray  # (rows, cols) uint8: OSCD_NO_CHANGE or OSCD_CHANGE
    on: DateFiles  # the date whose pixel grid it follows
    coding: str  # the coding the file was found in


def read_scene(files: DateFiles, grid: Grid, city: str, epoch: str) -> RawScene:
    """One date on the grid as digital numbers, 0 where any band has no source pixel.

    The scale is decided as for any download (integer digital numbers acquired before the
    2022 offset) and stated in the log; the land medians pass the product's plausibility gate.
    """
    raw = read_band_files(files.download, grid, city, LocalOptions(date=files.date.isoformat()))
    invalid = (raw.dn == 0).any(axis=0)
    raw.dn[:, invalid] = 0
    if invalid.all():
        raise InputFileError(f"{files.folder}: no pixel of {city}'s grid is observed")
    check_plausible(raw.dn, ~invalid, None, f"{city} ({epoch}) from {files.folder}")
    return raw


def read_change_map(files: CityFiles) -> ChangeMap:
    """The change map, its codes checked and the date grid it follows found."""
    path = files.change_map
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                if src.count != 1:
                    raise InputFileError(f"{path}: {src.count} bands; a change map has one")
                data, crs, transform = src.read(1), src.crs, src.transform
    except rasterio.errors.RasterioIOError as exc:
        raise InputFileError(f"{path}: cannot read the change map ({exc})") from exc
    on = date_of_grid(path, data.shape, files)
    georeferenced = crs is not None or not transform.almost_equals(Affine.identity())
    if georeferenced and (crs != on.crs or not transform.almost_equals(on.transform)):
        raise InputFileError(
            f"{path}: georeferenced ({crs}, {tuple(transform)[:6]}) but not on the grid of "
            f"{on.describe()} ({tuple(on.transform)[:6]}), the date of its size"
        )
    classes, coding = decode(path, data)
    return ChangeMap(path, classes, on, coding)


def date_of_grid(path: Path, shape: tuple[int, ...], files: CityFiles) -> DateFiles:
    """The date whose pixel grid a change map of ``shape`` follows (the first if both fit)."""
    for date in (files.before, files.after):
        if shape == date.shape:
            if date is files.after:
                log.info(
                    "%s: on the pixel grid of %s, not of the first date", path, date.describe()
                )
            return date
    raise InputFileError(
        f"{path}: change map of {shape[1]} x {shape[0]} px matches neither date "
        f"({files.before.describe()}, {files.after.describe()}); without a georeference it "
        "can only be placed on the grid of a date of its size"
    )


def decode(path: Path, data: np.ndarray) -> tuple[np.ndarray, str]:
    """The map in OSCD's 1/2 codes: files holding exactly 1 and 2, or exactly 0 and 1.

    Anything else (one value only, 0/255 masks, class codes) is ambiguous and refused.
    """
    found = sorted(int(v) for v in np.unique(data)) if data.dtype.kind in "iu" else []
    if found == [OSCD_NO_CHANGE, OSCD_CHANGE]:
        return data.astype(np.uint8), OSCD_CODING
    if found == [0, 1]:
        log.info(
            "%s: holds exactly 0 and 1, not the 1 and 2 of OSCD's files; read as %s",
            path,
            README_CODING,
        )
        return (data + 1).astype(np.uint8), README_CODING
    what = f"values {found[:8]}" if found else f"{data.dtype} values"
    raise InputFileError(
        f"{path}: change map {what}; expected exactly 1 (no change) and 2 (change) as OSCD's "
        "files hold them, or exactly 0 and 1"
    )


def change_onto_grid(change: ChangeMap, grid: Grid) -> np.ndarray:
    """(H, W) uint8 labels: 1 change, 0 no change, 255 where the map has no pixel."""
    placed = classes_onto_grid(change.classes, change.on.transform, change.on.crs, grid)
    labels = np.full(grid.shape, UNKNOWN, dtype=np.uint8)
    labels[placed == OSCD_NO_CHANGE] = NO_DAMAGE
    labels[placed == OSCD_CHANGE] = DAMAGE
    return labels
