"""Finding and checking one city of the OSCD layout before a pixel is read.

OSCD ships, per city::

    images/<city>/dates.txt            date_1: YYYYMMDD / date_2: YYYYMMDD
    images/<city>/<city>.geojson       the city's extent (lon/lat)
    images/<city>/imgs_1/*_B02.tif ... one uint16 EPSG:4326 GeoTIFF per band, first date
    images/<city>/imgs_2/*_B02.tif ... the same for the second date
    labels/<city>/cm/<city>-cm.tif     change map of date 1 -> date 2 (no georeference)

Every check here refuses with the file and what was found, so a broken download is named before
anything is reprojected or written. Band files are matched by the same rules as any per-band
download (:func:`pipeline.scenes.band_files.assign_bands`): OSCD's other bands are ignored.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning

from contract.bands import BANDS, SENTINEL2
from contract.processing_level import L1C, LEVELS
from pipeline.aoi.validation import SLUG_RE
from pipeline.errors import InputFileError, PipelineUsageError
from pipeline.scenes.band_files import Download, assign_bands, open_download
from pipeline.scenes.harmonise import OFFSET_EPOCH

log = logging.getLogger(__name__)

IMAGES, LABELS = "images", "labels"
DATE_FOLDERS = ("imgs_1", "imgs_2")
DATES_FILE = "dates.txt"
DATE_LINE = re.compile(r"\s*date_([12])\s*:\s*(\d{8})\s*")
GEOGRAPHIC_EPSG = 4326


@dataclass(frozen=True)
class DateFiles:
    """One date of a city: its band files, acquisition date and the pixel grid they share."""

    folder: Path
    download: Download
    bands: dict[str, str]  # band -> file, in BANDS order
    date: dt.date
    shape: tuple[int, int]  # rows, columns
    transform: Affine
    crs: CRS

    def describe(self) -> str:
        return f"{self.folder.name} ({self.shape[1]} x {self.shape[0]} px)"


@dataclass(frozen=True)
class CityFiles:
    """Everything of one city that the conversion reads, checked."""

    city: str
    before: DateFiles
    after: DateFiles
    change_map: Path
    extent: Path  # the city's GeoJSON; a cross-check of the georeference, may be absent
    level: str
    level_evidence: str


def change_map_path(root: Path, city: str) -> Path:
    return root / LABELS / city / "cm" / f"{city}-cm.tif"


def labelled_cities(root: str | Path) -> list[str]:
    """The cities under ``root`` with images and a change map, sorted by name.

    OSCD's test cities ship their labels separately; a city without its change map is not
    listed, so a benchmark over this list never meets an unlabelled city.
    """
    root = Path(root)
    images = root / IMAGES
    if not images.is_dir():
        raise PipelineUsageError(
            f"{root}: not an OSCD folder (no {IMAGES}/ inside); give the folder that holds "
            f"{IMAGES}/<city>/ and {LABELS}/<city>/cm/"
        )
    return sorted(
        p.name for p in images.iterdir() if p.is_dir() and change_map_path(root, p.name).is_file()
    )


def find_city(root: str | Path, city: str, level: str | None = None) -> CityFiles:
    """The checked files of ``city`` under ``root``; ``level`` overrides the file names' level."""
    root = Path(root)
    cities = labelled_cities(root)
    folder = root / IMAGES / city
    if not folder.is_dir():
        raise PipelineUsageError(
            f"{folder}: no such city folder; labelled cities under {root}: "
            f"{', '.join(cities) or 'none'}"
        )
    if not SLUG_RE.match(city):
        raise PipelineUsageError(
            f"{folder}: the city name {city!r} must be lower-case letters, digits, '-' or '_' "
            "(it names the AOI and every output)"
        )
    change_map = change_map_path(root, city)
    if not change_map.is_file():
        raise InputFileError(
            f"{change_map}: change map of {city} not found (OSCD ships the labels of its "
            "training cities as labels/<city>/cm/<city>-cm.tif; its test cities' come separately)"
        )
    first, second = read_dates(folder / DATES_FILE)
    before = date_files(folder / DATE_FOLDERS[0], first)
    after = date_files(folder / DATE_FOLDERS[1], second)
    chosen, evidence = processing_level(before, after, level)
    return CityFiles(city, before, after, change_map, folder / f"{city}.geojson", chosen, evidence)


def read_dates(path: Path) -> tuple[dt.date, dt.date]:
    """``date_1`` and ``date_2`` of a ``dates.txt``, the second after the first."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFileError(
            f"{path}: dates file not found; OSCD's dates.txt holds the lines "
            "'date_1: YYYYMMDD' and 'date_2: YYYYMMDD'"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: cannot read the dates file ({exc})") from exc
    found: dict[str, dt.date] = {}
    for line in filter(str.strip, text.splitlines()):
        key, day = _date_line(path, line)
        if key in found:
            raise InputFileError(f"{path}: date_{key} is given twice")
        found[key] = day
    missing = [f"date_{k}" for k in ("1", "2") if k not in found]
    if missing:
        raise InputFileError(
            f"{path}: no {' or '.join(missing)} line (expected 'date_1: YYYYMMDD')"
        )
    first, second = found["1"], found["2"]
    if second <= first:
        raise InputFileError(f"{path}: date_2 {second} is not after date_1 {first}")
    if second >= OFFSET_EPOCH:
        raise InputFileError(
            f"{path}: acquired {second}; products from {OFFSET_EPOCH} on (processing baseline "
            "04.00) add 1000 to every digital number and the OSCD layout records no baseline, "
            "so their scale cannot be told; only pairs acquired before that date are read"
        )
    return first, second


def _date_line(path: Path, line: str) -> tuple[str, dt.date]:
    m = DATE_LINE.fullmatch(line)
    if m is None:
        raise InputFileError(
            f"{path}: unreadable line {line.strip()!r}; expected 'date_1: YYYYMMDD' and "
            "'date_2: YYYYMMDD'"
        )
    try:
        return m.group(1), dt.datetime.strptime(m.group(2), "%Y%m%d").date()
    except ValueError:
        raise InputFileError(f"{path}: {m.group(2)} is not a date (YYYYMMDD)") from None


def date_files(folder: Path, date: dt.date) -> DateFiles:
    """The four band files of one date, each one uint16 EPSG:4326 band, all on one grid."""
    if not folder.is_dir():
        raise InputFileError(f"{folder}: folder of band files not found")
    download = open_download(folder)
    bands, _ = assign_bands(download)
    headers = {band: band_header(path) for band, path in bands.items()}
    shape, transform, crs = headers[BANDS[0]]
    for band, (b_shape, b_transform, _) in headers.items():
        if b_shape != shape or not b_transform.almost_equals(transform):
            raise InputFileError(
                f"{bands[band]}: {b_shape[1]} x {b_shape[0]} px at {tuple(b_transform)[:6]}, "
                f"not the grid of {bands[BANDS[0]]} ({shape[1]} x {shape[0]} px at "
                f"{tuple(transform)[:6]}); the bands of one date must share one grid"
            )
    return DateFiles(folder, download, bands, date, shape, transform, crs)


def band_header(path: str) -> tuple[tuple[int, int], Affine, CRS]:
    """Shape, transform and CRS of one band file, refused unless it is what OSCD ships."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                count, dtype, crs = src.count, src.dtypes[0], src.crs
                shape, transform = (src.height, src.width), src.transform
    except rasterio.errors.RasterioIOError as exc:
        raise InputFileError(f"{path}: cannot read the band file ({exc})") from exc
    if count != 1:
        raise InputFileError(f"{path}: {count} bands; OSCD has one band per file")
    if dtype != SENTINEL2.dtype:
        raise InputFileError(
            f"{path}: {dtype} values; OSCD's band files are {SENTINEL2.dtype} digital numbers "
            f"(reflectance x {SENTINEL2.scale:g}), so this file's scale cannot be told"
        )
    if crs is None or crs.to_epsg() != GEOGRAPHIC_EPSG:
        raise InputFileError(
            f"{path}: CRS {crs.to_string() if crs else 'none'}; OSCD's band files are "
            f"EPSG:{GEOGRAPHIC_EPSG} (longitude/latitude)"
        )
    return shape, transform, crs


def names_level(files: DateFiles) -> str | None:
    """The processing level the band file names state (``..._MSI_L1C_...``), if one."""
    tokens = {
        t for name in files.bands.values() for t in re.split(r"[^a-z0-9]+", Path(name).name.lower())
    }
    named = [level for level in LEVELS if {level.lower(), f"msi{level.lower()}"} & tokens]
    if len(named) > 1:
        raise InputFileError(
            f"{files.folder}: the band file names state both {' and '.join(named)}"
        )
    return named[0] if named else None


def processing_level(before: DateFiles, after: DateFiles, option: str | None) -> tuple[str, str]:
    """The pair's level and the evidence: ``--level``, else the file names, else OSCD's L1C.

    L1C and L2A differ by the atmosphere, so a pair of two levels is refused, and so is a
    ``--level`` the file names contradict.
    """
    named = {f.folder: lvl for f in (before, after) if (lvl := names_level(f))}
    levels = set(named.values())
    detail = ", ".join(f"{folder}: {lvl}" for folder, lvl in named.items())
    if len(levels) > 1:
        raise InputFileError(
            f"the band file names state two processing levels ({detail}); L1C and L2A differ "
            "by the atmosphere, so one pair must be of one level"
        )
    if option is not None and levels and option not in levels:
        raise PipelineUsageError(f"--level {option}, but the band file names state {detail}")
    if option is not None:
        return option, f"--level {option}"
    if levels:
        return levels.pop(), f"band file names ({detail})"
    return L1C, "OSCD ships Sentinel-2 L1C (top of atmosphere); the band file names do not say"
