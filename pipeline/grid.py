"""The pixel grid every raster of one AOI shares.

Before, after and label rasters must line up pixel for pixel, so the grid is a pure function of
the AOI (and an optional size cap): the AOI's UTM zone, 10 m pixels, the bounds snapped outward
to whole pixels. Two scenes computed independently therefore land on identical grids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.transform import array_bounds

from pipeline.errors import GridMismatchError, InputFileError, PipelineUsageError

if TYPE_CHECKING:  # the grid is a leaf: AOIs depend on it, not the other way round
    from pipeline.aoi import AOI

RESOLUTION_M = 10.0


@dataclass(frozen=True)
class Grid:
    """CRS, affine transform and size of a north-up raster grid."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in grid CRS units."""
        return array_bounds(self.height, self.width, self.transform)

    @property
    def resolution(self) -> float:
        return abs(self.transform.a)

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    def profile(self) -> dict:
        """The georeferencing part of a rasterio profile."""
        return {
            "crs": self.crs,
            "transform": self.transform,
            "width": self.width,
            "height": self.height,
        }

    def same_as(self, other: Grid, tol: float = 1e-6) -> bool:
        return (
            self.crs == other.crs
            and self.width == other.width
            and self.height == other.height
            and self.transform.almost_equals(other.transform, precision=tol)
        )

    def describe(self) -> str:
        return (
            f"{self.crs.to_string()} {self.width}x{self.height} px, "
            f"origin ({self.transform.c:.2f}, {self.transform.f:.2f}), "
            f"pixel {self.transform.a:g} m"
        )


def aoi_grid(aoi: AOI, max_size_km: float | None = None, resolution: float = RESOLUTION_M) -> Grid:
    """The AOI's 10 m UTM grid, optionally capped to ``max_size_km`` on each side.

    A capped grid is centred on a point inside the AOI polygon (its centroid, or a
    representative point for odd shapes), so it always covers assessed ground.
    """
    epsg = aoi.utm_epsg
    geom = aoi.geometry_in(epsg)
    left, bottom, right, top = geom.bounds
    if max_size_km is not None:
        if max_size_km <= 0:
            raise PipelineUsageError(f"max size must be positive, got {max_size_km} km")
        half = max_size_km * 500.0
        centre = geom.centroid if geom.contains(geom.centroid) else geom.representative_point()
        cx = round(centre.x / resolution) * resolution
        cy = round(centre.y / resolution) * resolution
        left, right = max(left, cx - half), min(right, cx + half)
        bottom, top = max(bottom, cy - half), min(top, cy + half)
    left = math.floor(left / resolution) * resolution
    bottom = math.floor(bottom / resolution) * resolution
    right = math.ceil(right / resolution) * resolution
    top = math.ceil(top / resolution) * resolution
    width = round((right - left) / resolution)
    height = round((top - bottom) / resolution)
    return Grid(
        CRS.from_epsg(epsg), Affine(resolution, 0, left, 0, -resolution, top), width, height
    )


def grid_of(path: str | Path) -> Grid:
    """The grid of an existing raster file."""
    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise InputFileError(f"{path}: raster has no CRS")
            return Grid(src.crs, src.transform, src.width, src.height)
    except rasterio.errors.RasterioIOError as exc:
        raise InputFileError(f"{path}: cannot open raster ({exc})") from exc


def require_same_grid(paths: dict[str, str | Path]) -> Grid:
    """Check that all named rasters share one grid; return it or explain the mismatch."""
    grids = {name: grid_of(p) for name, p in paths.items()}
    names = list(grids)
    ref = grids[names[0]]
    for name in names[1:]:
        g = grids[name]
        if not ref.same_as(g):
            raise GridMismatchError(
                f"{paths[name]} ({name}) is not on the grid of {paths[names[0]]} "
                f"({names[0]}): {g.describe()} vs {ref.describe()}"
            )
    return ref
