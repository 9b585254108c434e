"""Zones that buildings are counted in (districts from a file, or a square grid) and their totals.

A building belongs to the zone containing its representative point (a point on its surface),
so every building counts once even where it straddles a boundary. Zone totals are running
sums, so buildings can be streamed through in batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS, Transformer

from damagenet.buildings.footprints import open_vector
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


class GridZones:
    """Square cells of ``size`` map units from the map's top-left corner."""

    kind = "grid"

    def __init__(
        self, x0: float, y0: float, width: float, height: float, size: float, crs: CRS
    ) -> None:
        self.x0, self.y0, self.size, self.crs = x0, y0, size, crs
        self.nx = max(1, int(np.ceil(width / size - 1e-9)))
        self.ny = max(1, int(np.ceil(height / size - 1e-9)))
        self.n = self.nx * self.ny

    def assign(self, points: np.ndarray) -> np.ndarray:
        x, y = shapely.get_x(points), shapely.get_y(points)
        col = np.floor((x - self.x0) / self.size)
        row = np.floor((self.y0 - y) / self.size)
        inside = (col >= 0) & (col < self.nx) & (row >= 0) & (row < self.ny)
        inside &= np.isfinite(x)
        zone = np.full(len(points), -1, dtype=np.int64)
        zone[inside] = (row[inside] * self.nx + col[inside]).astype(np.int64)
        return zone

    def ids(self, zone: np.ndarray) -> np.ndarray:
        """Zone ids ("r<row>c<col>", None outside the grid) of zone indices."""
        return np.array(
            [f"r{z // self.nx:04d}c{z % self.nx:04d}" if z >= 0 else None for z in zone.tolist()],
            dtype=object,
        )

    def frame(self, totals: ZoneTotals, spread: bool) -> gpd.GeoDataFrame:
        """Cells holding at least one building (an empty cell says nothing)."""
        table = totals.frame(spread)
        keep = np.flatnonzero(totals.buildings > 0)
        row, col = keep // self.nx, keep % self.nx
        x = self.x0 + col * self.size
        y = self.y0 - row * self.size
        table = table.iloc[keep].reset_index(drop=True)
        table.insert(0, "zone_id", [f"r{r:04d}c{c:04d}" for r, c in zip(row, col, strict=True)])
        table.insert(1, "zone_name", None)
        geom = shapely.box(x, y - self.size, x + self.size, y)
        return gpd.GeoDataFrame(table, geometry=geom, crs=self.crs)


class DistrictZones:
    """Polygons from a zones file (districts, neighbourhoods), reprojected to the map's CRS."""

    kind = "districts"

    def __init__(self, path: str | Path, crs: CRS, zones_crs: str | None = None) -> None:
        src = open_vector(path, zones_crs, what="zones")
        src.id_column = next((c for c in ZONE_ID_COLUMNS if c in src.columns), None)
        name = next((c for c in ZONE_NAME_COLUMNS if c in src.columns), None)
        src.kept, src.truth, src.number_name = ([name] if name else []), None, "zone_id"
        geoms, frames = [], []
        for batch in src.batches(10_000):
            geoms.append(batch.geometry)
            frames.append(batch.attributes)
        geom = np.concatenate(geoms) if geoms else np.zeros(0, dtype=object)
        if not (shapely.get_type_id(geom) >= 3).any():  # 3 Polygon, 6 MultiPolygon
            raise InputFileError(f"{path}: no polygon zones")
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
        return np.where(zone >= 0, ids[np.maximum(zone, 0)], None)

    def frame(self, totals: ZoneTotals, spread: bool) -> gpd.GeoDataFrame:
        table = pd.concat([self.table, totals.frame(spread)], axis=1)
        return gpd.GeoDataFrame(table, geometry=self.geom, crs=self.crs)


def to_crs(geoms: np.ndarray, src: CRS, dst: CRS) -> np.ndarray:
    """Reproject shapely geometries (vectorised); lon/lat axis order whatever the CRS says."""
    if src == dst:
        return geoms
    tf = Transformer.from_crs(src, dst, always_xy=True)

    def move(xy: np.ndarray) -> np.ndarray:
        x, y = tf.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geoms, move)
