"""Reading a part of a (possibly huge) raster and resampling it onto the AOI grid.

Reflectance is resampled bilinearly as float with NaN for no data, after conversion to digital
numbers, so no value is rounded twice and no band's nodata leaks into its neighbours as zeros;
the scene classification is resampled with nearest neighbour.
"""

from __future__ import annotations

import math

import numpy as np
import rasterio
from rasterio import Affine
from rasterio.enums import Resampling
from rasterio.warp import reproject, transform_bounds

from pipeline.errors import InputFileError
from pipeline.grid import Grid


def check_covers(path: str, src, grid: Grid, aoi_slug: str) -> None:
    """Refuse a raster without a CRS or whose footprint misses the AOI grid."""
    if src.crs is None:
        raise InputFileError(
            f"{path}: raster has no CRS, so it cannot be placed on the AOI "
            "grid; write it with its CRS (a GeoTIFF, not a plain TIFF)"
        )
    left, bottom, right, top = transform_bounds(src.crs, grid.crs, *src.bounds, densify_pts=21)
    g_left, g_bottom, g_right, g_top = grid.bounds
    if right <= g_left or left >= g_right or top <= g_bottom or bottom >= g_top:
        raise InputFileError(
            f"{path} does not cover AOI {aoi_slug}: its footprint "
            f"({left:.0f}, {bottom:.0f}, {right:.0f}, {top:.0f}) misses the "
            f"AOI grid {grid.bounds} in {grid.crs}"
        )


def read_window(src, grid: Grid, indexes: list[int]) -> tuple[np.ndarray, Affine]:
    """Only the part of ``src`` the AOI grid needs (with a two-pixel margin)."""
    left, bottom, right, top = transform_bounds(grid.crs, src.crs, *grid.bounds, densify_pts=21)
    pad = 2 * max(abs(src.transform.a), abs(src.transform.e))
    window = src.window(left - pad, bottom - pad, right + pad, top + pad)
    window = (
        window.round_offsets()
        .round_lengths()
        .intersection(rasterio.windows.Window(0, 0, src.width, src.height))
    )
    return src.read(indexes, window=window), src.window_transform(window)


def as_float(data: np.ndarray, nodata: float | None) -> np.ndarray:
    """Values as float32 with NaN where there is no data (0, the nodata value, or NaN)."""
    out = data.astype(np.float32)
    invalid = ~np.isfinite(out) | (out == 0)
    if nodata is not None and not math.isnan(nodata):
        invalid |= out == np.float32(nodata)
    out[invalid] = np.nan
    return out


def float_onto_grid(values: np.ndarray, transform: Affine, crs, grid: Grid) -> np.ndarray:
    """(B, h, w) float32 with NaN no data, bilinearly onto the grid."""
    out = np.full((values.shape[0], *grid.shape), np.nan, dtype=np.float32)
    reproject(
        values,
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


def classes_onto_grid(values: np.ndarray, transform: Affine, crs, grid: Grid) -> np.ndarray:
    """A class raster (uint8, 0 = no data) onto the grid with nearest neighbour."""
    out = np.zeros(grid.shape, dtype=np.uint8)
    reproject(
        values.astype(np.uint8),
        out,
        src_transform=transform,
        src_crs=crs,
        src_nodata=0,
        dst_transform=grid.transform,
        dst_crs=grid.crs,
        dst_nodata=0,
        resampling=Resampling.nearest,
    )
    return out


def to_uint16(dn: np.ndarray) -> np.ndarray:
    """Float DN (NaN = no data) to uint16; valid pixels stay >= 1 since 0 means no data."""
    valid = np.isfinite(dn)
    out = np.zeros(dn.shape, dtype=np.uint16)
    out[valid] = np.clip(np.round(dn[valid]), 1, 65535).astype(np.uint16)
    return out


def read_scl(path: str, grid: Grid) -> np.ndarray:
    """A scene classification raster onto the AOI grid with nearest-neighbour resampling."""
    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise InputFileError(f"{path}: SCL raster has no CRS")
            data, transform = read_window(src, grid, [1])
            return classes_onto_grid(data[0], transform, src.crs, grid)
    except rasterio.errors.RasterioIOError as exc:
        raise InputFileError(f"{path}: cannot read the SCL raster ({exc})") from exc
