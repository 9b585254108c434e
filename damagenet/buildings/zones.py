"""Zones that buildings are counted in (districts from a file, or a square grid) and their totals.

A building belongs to the zone containing its representative point (a point on its surface),
so every building counts once even where it straddles a boundary. Zone totals are running
sums, so buildings can be streamed through in batches. Grids are aligned on multiples of their
cell size (:class:`GridZones`), so their cells do not depend on the map's extent; district
files are read only where they meet the map.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS, Transformer

from damagenet.buildings.footprints import open_vector
from damagenet.buildings.sources.geoparquet import Box
from damagenet.errors import InputFileError

#: Id and name columns of common district layouts (ours, OSM, geoBoundaries, HDX COD-AB).
ZONE_ID_COLUMNS = (
    "zone_id",
    "id",
    "osm_id",
    "shapeID",
    "ADM4_PCODE",
    "ADM3_PCODE",
    "ADM2_PCODE",
    "ADM1_PCODE",
    "code",
)
ZONE_NAME_COLUMNS = (
    "name",
    "NAME",
    "name_en",
    "shapeName",
    "ADM4_EN",
    "ADM3_EN",
    "ADM2_EN",
    "ADM1_EN",
)
Z95 = 1.959963984540054
#: The CRS of PWTT's grid (Earth Engine's ``coveringGrid('EPSG:3857', 500)``).
PWTT_GRID_CRS = CRS.from_epsg(3857)


def wilson(k: np.ndarray, n: np.ndarray, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of the proportion k/n (NaN where n == 0).

    Unlike the normal approximation it stays inside [0, 1] and is sensible for zones of a few
    buildings or shares near 0 or 1, which is most zones.
    """
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1 + z**2 / n
        centre = (p + z**2 / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    # exact ends for 0 and n (the formula gives them up to rounding)
    lo = np.where(k == 0, 0.0, np.clip(centre - half, 0, 1))
    hi = np.where(k == n, 1.0, np.clip(centre + half, 0, 1))
    return np.where(n > 0, lo, np.nan), np.where(n > 0, hi, np.nan)


@dataclass
class ZoneTotals:
    """Running sums per zone."""

    n: int
    buildings: np.ndarray = field(init=False)
    assessed: np.ndarray = field(init=False)
    damaged: np.ndarray = field(init=False)
    damaged_low: np.ndarray = field(init=False)
    damaged_high: np.ndarray = field(init=False)
    area: np.ndarray = field(init=False)
    damaged_area: np.ndarray = field(init=False)
    prob_sum: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        for name in ("buildings", "assessed", "damaged", "damaged_low", "damaged_high"):
            setattr(self, name, np.zeros(self.n, dtype=np.int64))
        for name in ("area", "damaged_area", "prob_sum"):
            setattr(self, name, np.zeros(self.n))

    def add(
        self,
        zone: np.ndarray,
        area: np.ndarray,
        prob: np.ndarray,
        damaged: np.ndarray,
        low: np.ndarray,
        high: np.ndarray,
    ) -> None:
        """Add a batch: zone index per building (-1 none), its area, probability and flags."""
        inz = zone >= 0
        z, n = zone[inz], self.n
        assessed = ~np.isnan(prob[inz])
        self.buildings += np.bincount(z, minlength=n)
        self.assessed += np.bincount(z[assessed], minlength=n)
        for name, flag in (("damaged", damaged), ("damaged_low", low), ("damaged_high", high)):
            getattr(self, name)[:] += np.bincount(z[flag[inz]], minlength=n)
        self.area += np.bincount(z, area[inz], minlength=n)
        self.damaged_area += np.bincount(z[damaged[inz]], area[inz][damaged[inz]], minlength=n)
        self.prob_sum += np.bincount(z[assessed], prob[inz][assessed], minlength=n)

    def frame(self, spread: bool) -> pd.DataFrame:
        """Zone table; the interval is from the map's spread if given, else Wilson 95 %."""
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(self.assessed > 0, self.damaged / self.assessed, np.nan)
            mean = np.where(self.assessed > 0, self.prob_sum / self.assessed, np.nan)
            if spread:
                lo = np.where(self.assessed > 0, self.damaged_low / self.assessed, np.nan)
                hi = np.where(self.assessed > 0, self.damaged_high / self.assessed, np.nan)
            else:
                lo, hi = wilson(self.damaged, self.assessed)
        return pd.DataFrame(
            {
                "buildings": self.buildings,
                "buildings_assessed": self.assessed,
                "buildings_no_data": self.buildings - self.assessed,
                "damaged": self.damaged,
                "damaged_share": share,
                "damaged_share_low": lo,
                "damaged_share_high": hi,
                "interval": "ensemble spread 95%" if spread else "Wilson 95%",
                "footprint_area_m2": self.area,
                "damaged_area_m2": self.damaged_area,
                "probability_mean": mean,
            }
        )


class Zones(Protocol):
    """What the aggregation asks of a zone layer (grid cells or district polygons)."""

    kind: str
    n: int
    crs: CRS

    def assign(self, points: np.ndarray) -> np.ndarray:
        """Zone index of each representative point (map CRS), -1 for none."""
        ...

    def ids(self, zone: np.ndarray) -> np.ndarray:
        """Zone ids (None for -1) of zone indices."""
        ...

    def frame(self, totals: ZoneTotals, spread: bool) -> gpd.GeoDataFrame:
        """The zone layer with its totals, in the map's CRS."""
        ...

    def describe(self) -> dict[str, Any]:
        """What the zones are, for the summary."""
        ...


class GridZones:
    """Square cells of ``size`` whose edges lie on multiples of ``size`` in ``grid_crs``.

    The cells depend only on the size and the grid's CRS, never on the map's extent, so two
    maps of one place (a PWTT map and a Sentinel-2 map, this month's and last month's) share
    their cells and their ``zone_id``s, which name the cell's south-west corner
    (``500mE612500N5598000``). The cells are those that meet the map; a building counts in the
    cell holding its representative point. In the map's own (UTM) CRS the cells are ``size``
    metres on the ground; :data:`PWTT_GRID_CRS` gives PWTT's cells (see :func:`pwtt_grid`).
    """

    def __init__(
        self,
        bounds: Box,
        size: float,
        crs: CRS,
        grid_crs: CRS | None = None,
        kind: str = "grid",
    ) -> None:
        self.size, self.crs, self.kind = size, crs, kind
        self.grid_crs = grid_crs if grid_crs is not None else crs
        left, bottom, right, top = box_in(bounds, crs, self.grid_crs)
        self.ix0, self.iy1 = _cell(left, size), _cell(top, size, up=True)
        self.nx = max(1, _cell(right, size, up=True) - self.ix0)
        self.ny = max(1, self.iy1 - _cell(bottom, size))
        self.n = self.nx * self.ny

    def assign(self, points: np.ndarray) -> np.ndarray:
        gx, gy = shapely.get_x(points), shapely.get_y(points)
        if self.grid_crs != self.crs:
            moved = to_crs(points, self.crs, self.grid_crs)
            gx, gy = shapely.get_x(moved), shapely.get_y(moved)
        with np.errstate(invalid="ignore"):
            col = np.floor(gx / self.size) - self.ix0
            row = self.iy1 - 1 - np.floor(gy / self.size)
            inside = (col >= 0) & (col < self.nx) & (row >= 0) & (row < self.ny)
        zone = np.full(len(points), -1, dtype=np.int64)
        zone[inside] = (row[inside] * self.nx + col[inside]).astype(np.int64)
        return zone

    def _corners(self, zone: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """South-west corners (grid CRS) of the cells ``zone``."""
        col, row = zone % self.nx, zone // self.nx
        return (self.ix0 + col) * self.size, (self.iy1 - 1 - row) * self.size

    def _names(self, zone: np.ndarray) -> list[str]:
        x, y = self._corners(zone)
        return [f"{self.size:g}mE{a:.0f}N{b:.0f}" for a, b in zip(x, y, strict=True)]

    def ids(self, zone: np.ndarray) -> np.ndarray:
        """Zone ids (the cell's size and south-west corner; None outside the grid)."""
        out = np.full(len(zone), None, dtype=object)
        hit = zone >= 0
        out[hit] = self._names(zone[hit])
        return out

    def frame(self, totals: ZoneTotals, spread: bool) -> gpd.GeoDataFrame:
        """Cells holding at least one building (an empty cell says nothing), in the map CRS."""
        table = totals.frame(spread)
        keep = np.flatnonzero(totals.buildings > 0)
        x, y = self._corners(keep)
        table = table.iloc[keep].reset_index(drop=True)
        table.insert(0, "zone_id", self._names(keep))
        table.insert(1, "zone_name", None)
        geom = to_crs(shapely.box(x, y, x + self.size, y + self.size), self.grid_crs, self.crs)
        return gpd.GeoDataFrame(table, geometry=geom, crs=self.crs)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "grid_m": self.size,
            "grid_crs": self.grid_crs.to_string(),
            "alignment": f"cell edges on multiples of {self.size:g} in {self.grid_crs.to_string()}",
        }


def _cell(value: float, size: float, up: bool = False) -> int:
    """The grid line at or below (``up``: at or above) ``value``, as a multiple of ``size``;
    values within a micrometre of a line are on it (reprojection rounding)."""
    q = value / size
    near = round(q)
    if abs(q - near) * size < 1e-6:
        return int(near)
    return int(np.ceil(q)) if up else int(np.floor(q))


def pwtt_grid(bounds: Box, size: float, crs: CRS) -> GridZones:
    """PWTT's grid: Earth Engine's ``coveringGrid('EPSG:3857', 500)`` as ``detect_damage``
    exports it, i.e. cells of ``size`` Web Mercator units on multiples of ``size``. Mercator
    units shrink on the ground with the cosine of the latitude: at 50 N a 500-unit cell is
    about 321 m on a side."""
    return GridZones(bounds, size, crs, PWTT_GRID_CRS, kind="pwtt grid")


class DistrictZones:
    """Polygons from a zones file (districts, neighbourhoods), reprojected to the map's CRS."""

    kind = "districts"

    def __init__(
        self,
        path: str | Path,
        crs: CRS,
        zones_crs: str | None = None,
        bounds: Box | None = None,
    ) -> None:
        """``bounds`` (map CRS): read only the zones meeting them (a country file, one city)."""
        self.path = Path(path)
        src = open_vector(path, zones_crs, what="zones")
        if bounds is not None:
            src.bbox = box_in(bounds, crs, src.crs)
        src.id_column = next((c for c in ZONE_ID_COLUMNS if c in src.columns), None)
        name = next((c for c in ZONE_NAME_COLUMNS if c in src.columns), None)
        src.kept, src.truth, src.number_name = ([name] if name else []), None, "zone_id"
        geoms, frames = [], []
        for batch in src.batches(10_000):
            geoms.append(batch.geometry)
            frames.append(batch.attributes)
        geom = np.concatenate(geoms) if geoms else np.zeros(0, dtype=object)
        if not (shapely.get_type_id(geom) >= 3).any():  # 3 Polygon, 6 MultiPolygon
            where = " meeting the map" if bounds is not None else ""
            raise InputFileError(f"{path}: no polygon zones{where}")
        attrs = pd.concat(frames, ignore_index=True)
        ids = attrs[src.id_column or "zone_id"].astype(str)
        names = attrs[name].astype(str) if name else pd.Series([None] * len(attrs))
        self.table = pd.DataFrame({"zone_id": ids, "zone_name": names})
        self.geom = to_crs(geom, src.crs, crs)
        self.crs = crs
        self.n = len(self.geom)
        self.tree = shapely.STRtree(self.geom)

    def assign(self, points: np.ndarray) -> np.ndarray:
        """First zone (file order) containing each point, -1 for none."""
        zone = np.full(len(points), -1, dtype=np.int64)
        ok = ~shapely.is_missing(points)
        pi, zi = self.tree.query(points[ok], predicate="intersects")
        first = np.full(int(ok.sum()), np.iinfo(np.int64).max)
        np.minimum.at(first, pi, zi)
        hit = first != np.iinfo(np.int64).max
        sub = zone[ok]
        sub[hit] = first[hit]
        zone[ok] = sub
        return zone

    def ids(self, zone: np.ndarray) -> np.ndarray:
        """Zone ids (None outside every zone) of zone indices."""
        ids = self.table["zone_id"].to_numpy(dtype=object)
        out = np.full(len(zone), None, dtype=object)
        out[zone >= 0] = ids[zone[zone >= 0]]
        return out

    def frame(self, totals: ZoneTotals, spread: bool) -> gpd.GeoDataFrame:
        table = pd.concat([self.table, totals.frame(spread)], axis=1)
        return gpd.GeoDataFrame(table, geometry=self.geom, crs=self.crs)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "file": str(self.path), "districts_read": self.n}


def box_in(bounds: Box, src: CRS, dst: CRS) -> Box:
    """``bounds`` (``src``) as a box in ``dst``, edges densified so none of it is cut off."""
    from rasterio.warp import transform_bounds

    if src == dst:
        return bounds
    west, south, east, north = transform_bounds(src, dst, *bounds, densify_pts=21)
    return (west, south, east, north)


def to_crs(geoms: np.ndarray, src: CRS, dst: CRS) -> np.ndarray:
    """Reproject shapely geometries (vectorised); lon/lat axis order whatever the CRS says."""
    if src == dst:
        return geoms
    tf = Transformer.from_crs(src, dst, always_xy=True)

    def move(xy: np.ndarray) -> np.ndarray:
        x, y = tf.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geoms, move)
