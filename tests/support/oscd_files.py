"""OSCD cities written in exactly the layout the dataset ships, and crops of the real files.

The layout and its quirks, as measured on ``../shared/oscd`` (see its README): one uint16
GeoTIFF per band and date in EPSG:4326 (latitude-first axis order in the WKT), no nodata,
product- or tile-style names (``S2A_OPER_MSI_L1C_TL_..._T31UDQ_B02.tif``,
``T31UDQ_20170829T105019_B02.tif``), ``dates.txt`` as ``date_1: YYYYMMDD``, the city's extent as
a GeoJSON, and a uint8 change map holding 1 (no change) and 2 (change) with no georeference on
the first date's pixel grid; a second date may have its own, slightly different pixel grid.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import array_bounds, from_bounds
from rasterio.windows import Window

from support.paths import SHARED

BANDS = ("B02", "B03", "B04", "B08")
REAL_ROOT = SHARED / "oscd"
REAL_CITIES = (
    "abudhabi",
    "aguasclaras",
    "beihai",
    "bercy",
    "nantes",
    "paris",
    "rennes",
    "saclay_e",
)
PRODUCT_NAME = "S2A_OPER_MSI_L1C_TL_MPS__20161130T130757_A007527_T31UDQ_{band}.tif"
TILE_NAME = "T31UDQ_20170829T105019_{band}.tif"
DATES = "date_1: 20161130\ndate_2: 20170829\n"
#: Typical L1C digital numbers over a town (B02, B03, B04, B08) and the texture's spread.
BASE_DN = (1100, 1000, 900, 2000)
TEXTURE_DN = 40.0
FEATURE_RADIUS_M = 25.0


@dataclass
class CitySpec:
    """One synthetic city in OSCD's layout: where it is and what each file holds."""

    city: str = "paris"
    bounds: tuple[float, float, float, float] = (2.3101, 48.8311, 2.3217, 48.8451)
    shape1: tuple[int, int] = (120, 100)  # rows, cols of imgs_1 and of the change map
    shape2: tuple[int, int] | None = None  # imgs_2 on its own pixel grid over the same bounds
    dates: str = DATES
    names: tuple[str, str] = (PRODUCT_NAME, TILE_NAME)
    feature: tuple[float, float] = (2.3160, 48.8380)  # lon, lat of a bright disc in both dates
    change: tuple[slice, slice] = field(default_factory=lambda: (slice(30, 50), slice(40, 60)))

    def transform(self, date: int) -> Affine:
        rows, cols = self.shape1 if date == 1 or self.shape2 is None else self.shape2
        return from_bounds(*self.bounds, cols, rows)

    def shape(self, date: int) -> tuple[int, int]:
        return self.shape1 if date == 1 or self.shape2 is None else self.shape2


def write_band(
    path: Path, data: np.ndarray, transform: Affine, crs: str = "EPSG:4326", dtype: str = "uint16"
) -> None:
    """One band file as OSCD writes it: one band, no nodata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype=dtype,
        crs=CRS.from_user_input(crs),
        transform=transform,
    ) as dst:
        dst.write(data.astype(dtype), 1)


def write_change_map(path: Path, data: np.ndarray) -> None:
    """A change map as OSCD writes it: no CRS, no geotransform."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=data.shape[1],
            height=data.shape[0],
            count=1,
            dtype=data.dtype.name,
        ) as dst:
            dst.write(data, 1)


def metres_from(lon: np.ndarray, lat: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
    """Ground distance to ``centre`` (lon, lat), locally flat: fine over a few hundred metres."""
    dx = (lon - centre[0]) * 111_320.0 * np.cos(np.radians(centre[1]))
    dy = (lat - centre[1]) * 110_574.0
    return np.hypot(dx, dy)


def scene_values(spec: CitySpec, date: int, seed: int) -> np.ndarray:
    """(4, H, W) uint16 DN on a date's grid: textured town ground and the bright disc."""
    shape = spec.shape(date)
    rng = np.random.default_rng(seed)
    data = np.array(BASE_DN, dtype=float)[:, None, None] + rng.normal(0, TEXTURE_DN, (4, *shape))
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]] + 0.5
    lon, lat = spec.transform(date) * (cols, rows)
    disc = metres_from(lon, lat, spec.feature) <= FEATURE_RADIUS_M
    data[:3, disc] += 1500
    data[3, disc] += 3000
    return np.clip(np.round(data), 1, 65535).astype(np.uint16)


def city_paths(root: Path, city: str) -> dict[str, Path]:
    images = root / "images" / city
    return {
        "images": images,
        "imgs_1": images / "imgs_1",
        "imgs_2": images / "imgs_2",
        "dates": images / "dates.txt",
        "extent": images / f"{city}.geojson",
        "labels": root / "labels" / city / "cm" / f"{city}-cm.tif",
    }


def write_extent(path: Path, bounds: tuple[float, float, float, float]) -> None:
    """The city's extent as OSCD's GeoJSON holds it (a lon/lat rectangle, empty properties)."""
    west, south, east, north = bounds
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    feature = {
        "type": "Feature",
        "properties": {},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))


def change_values(spec: CitySpec) -> np.ndarray:
    """The change map in OSCD's codes: 1 no change, 2 change in ``spec.change``."""
    cm = np.ones(spec.shape1, dtype=np.uint8)
    cm[spec.change] = 2
    return cm


def write_city(root: Path, spec: CitySpec | None = None, seed: int = 0) -> dict[str, Path]:
    """A whole city in OSCD's layout under ``root``; returns its paths."""
    spec = spec or CitySpec()
    paths = city_paths(root, spec.city)
    for date in (1, 2):
        values = scene_values(spec, date, seed + date)
        for i, band in enumerate(BANDS):
            name = spec.names[date - 1].format(band=band)
            write_band(paths[f"imgs_{date}"] / name, values[i], spec.transform(date))
    paths["dates"].write_text(spec.dates)
    write_extent(paths["extent"], spec.bounds)
    write_change_map(paths["labels"], change_values(spec))
    return paths


def densest_window(change_map: np.ndarray, size: int) -> Window:
    """The ``size`` px window (on a half-window lattice) holding the most change pixels."""
    best, best_count = Window(0, 0, size, size), -1
    step = max(1, size // 2)
    for row in range(0, change_map.shape[0] - size + 1, step):
        for col in range(0, change_map.shape[1] - size + 1, step):
            count = int((change_map[row : row + size, col : col + size] == 2).sum())
            if count > best_count:
                best, best_count = Window(col, row, size, size), count
    return best


def _crop_folder(
    src: Path, dst: Path, bounds: tuple[float, float, float, float] | None, window: Window
) -> None:
    """Each band file of ``src`` cut to ``bounds`` (or ``window``), same names, into ``dst``."""
    for path in sorted(src.glob("*.tif")):
        with rasterio.open(path) as s:
            win = window if bounds is None else s.window(*bounds).round_offsets().round_lengths()
            write_band(
                dst / path.name,
                s.read(1, window=win),
                s.window_transform(win),
                s.crs.to_wkt(),
                s.dtypes[0],
            )


def crop_real_city(src_root: Path, dst_root: Path, city: str, size: int = 96) -> dict[str, Path]:
    """A ``size`` px crop of a real city, with change in it, in exactly OSCD's layout.

    The first date and the change map are cut to one window of the first date's grid; the
    second date to the same ground on its own grid; the extent is the crop's.
    """
    src, dst = city_paths(src_root, city), city_paths(dst_root, city)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(src["labels"]) as s:
            change_map = s.read(1)
    window = densest_window(change_map, size)
    b02 = sorted(src["imgs_1"].glob("*B02.tif"))[0]
    with rasterio.open(b02) as s:
        transform = s.window_transform(window)
    bounds = array_bounds(size, size, transform)
    west, south, east, north = bounds[0], bounds[1], bounds[2], bounds[3]
    _crop_folder(src["imgs_1"], dst["imgs_1"], None, window)
    _crop_folder(src["imgs_2"], dst["imgs_2"], (west, south, east, north), window)
    dst["dates"].write_text(src["dates"].read_text())
    write_extent(dst["extent"], (west, south, east, north))
    rows, cols = window.toslices()
    write_change_map(dst["labels"], change_map[rows, cols])
    return dst
