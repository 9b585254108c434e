"""``damagenet aggregate``: damage per building footprint and per district (or grid cell).

People ask how many buildings in a district are damaged, not what a 160 m window scores. For
each footprint this takes the damage map's area-weighted mean (exact fractional pixel coverage)
and max probability, flags it at the map's threshold, and counts buildings per zone with an
interval. Footprints stream through in batches and only the raster blocks each batch touches
are read, so a country-sized footprint file runs in bounded memory.

The map is a damage probability (``damagenet predict``) or PWTT's T (``damagenet pwtt``),
told apart by its tags (:mod:`damagenet.buildings.map_kind`). Footprints are a file (read only
where it meets the map) or a named open source (``osm``, ``overture``) fetched for the map's box
and cached under ``data/``; zones a square grid from the map's corner, PWTT's grid aligned on
multiples of 500 m, a district file, or geoBoundaries' administrative units. Every footprint
attribute comes through; the sources' licences and attribution go into the summary and the
GeoPackage layer's description.

Outputs (all written into a staged folder beside ``--out`` and published as one set at the end):
``OUT.gpkg`` (layers ``buildings`` and ``zones``, styles in ``layer_styles``),
``OUT_buildings.csv``, ``OUT_zones.csv``, ``OUT_buildings.qml``, ``OUT_zones.qml`` and
``OUT_summary.json``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import rasterio
import shapely
from pyproj import CRS
from tqdm import tqdm

from contract.atomic import staged_folder
from contract.cli import bar_disabled
from contract.gpkg import pinned_ogr_time
from damagenet.buildings.fetch import SourceOptions
from damagenet.buildings.footprints import VectorSource
from damagenet.buildings.inputs import attribution, licence_metadata, open_buildings, open_zones
from damagenet.buildings.map_kind import (
    STAT_COLUMNS,
    MapKind,
    buildings_qml,
    detect,
    threshold_of,
)
from damagenet.buildings.zonal import MapGrid, check_same_grid, footprint_stats
from damagenet.buildings.zones import Z95, Zones, ZoneTotals, to_crs, wilson
from damagenet.errors import DamagenetUsageError, InputFileError
from damagenet.outputs import aggregate_outputs
from damagenet.qgis.vector_styles import store_styles, zones_qml

log = logging.getLogger(__name__)
WGS84 = CRS.from_epsg(4326)
COVERAGE_METHOD = "exact fractional pixel coverage (area of footprint and pixel in common)"
#: GeoPackage 1.2: the version QGIS 3.22 and GDAL < 3.7 open without a warning.
GPKG_OPTIONS = {"VERSION": "1.2"}
#: GDAL's raster block cache (MB); its default, 5 % of RAM, grows with big maps
GDAL_CACHE_MB = 64
#: GeoPackage layer descriptions are free text; keep them to a readable length
_MAX_DESCRIPTION = 2000


#: our per-building columns: an input attribute of the same name is written as src_<name>
OUR_COLUMNS = frozenset(
    {"building_id", "truth_damaged", "area_m2", "valid_share", "damaged", "status", "zone_id"}
    | STAT_COLUMNS
    | {"uncertainty_mean", "lon", "lat"}
)
CLASH_PREFIX = "src_"


@dataclass
class AggregateOptions:
    #: a zones file, or "grid" (aligned on multiples of grid_m), "pwtt-grid", "geoboundaries"
    zones: str | Path | None = None
    grid_m: float = 500.0
    #: named sources (osm, overture, geoboundaries): addresses, cache folder, retries
    sources: SourceOptions = field(default_factory=SourceOptions)
    threshold: str | float = "auto"
    uncertainty: Path | None = None
    buildings_crs: str | None = None
    zones_crs: str | None = None
    batch_size: int = 20_000
    progress: bool = True


def _open_raster(path: Path, what: str) -> rasterio.DatasetReader:
    if not path.exists():
        raise DamagenetUsageError(f"{path}: {what} not found")
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise InputFileError(f"{path}: cannot open the {what} ({exc})") from exc


def _check_map(path: Path, src: rasterio.DatasetReader) -> None:
    if src.crs is None:
        raise InputFileError(f"{path}: the map has no CRS")
    if not src.crs.is_projected:
        raise InputFileError(
            f"{path}: the map is in geographic CRS {src.crs}; areas and the "
            "grid need a projected CRS (damagenet predict writes UTM)"
        )


@dataclass
class Counts:
    """Running totals over all buildings, and the confusion counts against the truth."""

    buildings: int = 0
    assessed: int = 0
    damaged: int = 0
    outside_map: int = 0
    nodata: int = 0
    no_geometry: int = 0
    outside_zones: int = 0
    confusion: dict[str, int] = field(
        default_factory=lambda: {"tp": 0, "fp": 0, "fn": 0, "tn": 0, "no_data": 0}
    )


def _polygons(geoms: np.ndarray) -> np.ndarray:
    """Valid polygonal geometries; None for missing, empty or non-polygon features."""
    geoms = geoms.copy()
    bad = ~shapely.is_missing(geoms) & ~shapely.is_valid(geoms)
    if bad.any():
        geoms[bad] = shapely.make_valid(geoms[bad])
    kind = shapely.get_type_id(geoms)
    for i in np.flatnonzero(kind == 7):  # GeometryCollection from make_valid: keep polygons
        parts = [p for p in shapely.get_parts(geoms[i]) if shapely.get_type_id(p) in (3, 6)]
        geoms[i] = shapely.union_all(parts) if parts else None
    kind = shapely.get_type_id(geoms)
    geoms[~np.isin(kind, (3, 6)) | shapely.is_empty(geoms)] = None
    return geoms


@dataclass
class Inputs:
    """The opened map, its kind and threshold, and what is counted over it."""

    map_path: Path
    prob: rasterio.DatasetReader
    kind: MapKind
    threshold: float
    threshold_from: str
    unc: rasterio.DatasetReader | None
    source: VectorSource
    zones: Zones
    #: per role ("buildings", "zones"): source, release, query, licence, attribution
    provenance: dict[str, dict[str, Any]]


class Aggregation:
    """One run: the opened inputs, running totals and the temporary outputs."""

    def __init__(self, inputs: Inputs, tmp: dict[str, Path]) -> None:
        self.map_path, self.prob, self.unc = inputs.map_path, inputs.prob, inputs.unc
        self.threshold, self.kind = inputs.threshold, inputs.kind
        self.source, self.zones, self.tmp = inputs.source, inputs.zones, tmp
        self.description = attribution(inputs.provenance)
        self.metadata = licence_metadata(inputs.provenance)
        self.grid = MapGrid.of(self.prob)
        self.totals = ZoneTotals(self.zones.n)
        self.counts = Counts()

    def run_batch(self, geometry: np.ndarray, attributes: pd.DataFrame) -> None:
        geoms = to_crs(_polygons(geometry), self.source.crs, self.prob.crs)
        stats = footprint_stats(geoms, self.prob, self.grid, self.unc)
        p = stats.prob_mean
        assessed = ~np.isnan(p)
        damaged = assessed & self._above(p)
        if stats.unc_mean is not None:
            u = np.nan_to_num(stats.unc_mean, nan=0.0)
            low, high = assessed & self._above(p - Z95 * u), assessed & self._above(p + Z95 * u)
        else:
            low = high = damaged
        points = shapely.point_on_surface(geoms)
        zone = self.zones.assign(points)
        self.totals.add(zone, stats.area, p, damaged, low, high)
        status = np.where(
            assessed,
            np.where(stats.valid_share < 0.999, "partial", "ok"),
            np.where(stats.in_map, "nodata", "outside map"),
        )
        missing = shapely.is_missing(geoms)
        status = np.where(missing, "no polygon", status)
        self._count(assessed, damaged, status, zone, attributes)
        table = self._table(attributes, stats, damaged, assessed, status, zone, points)
        self._write(table, geoms)

    def _above(self, value: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            if self.kind.strict:
                return np.asarray(value > self.threshold)
            return np.asarray(value >= self.threshold)

    def _count(self, assessed, damaged, status, zone, attributes) -> None:
        c = self.counts
        c.buildings += len(status)
        c.assessed += int(assessed.sum())
        c.damaged += int(damaged.sum())
        c.outside_map += int((status == "outside map").sum())
        c.nodata += int((status == "nodata").sum())
        c.no_geometry += int((status == "no polygon").sum())
        c.outside_zones += int((zone < 0).sum())
        if self.source.truth:
            truth = pd.to_numeric(attributes[self.source.truth], errors="coerce").to_numpy()
            known = ~np.isnan(truth)
            c.confusion["no_data"] += int((known & ~assessed).sum())
            k = known & assessed
            yes, pred = truth[k] == 1, damaged[k]
            for key, m in (
                ("tp", yes & pred),
                ("fp", ~yes & pred),
                ("fn", yes & ~pred),
                ("tn", ~yes & ~pred),
            ):
                c.confusion[key] += int(m.sum())

    def _table(self, attributes, stats, damaged, assessed, status, zone, points) -> pd.DataFrame:
        table = attributes.copy()
        id_col, truth = self.source.id_column, self.source.truth
        roles = {id_col or self.source.number_name: "building_id"}
        if truth:
            roles[truth] = "truth_damaged"
        clash = {c: CLASH_PREFIX + c for c in table.columns if c not in roles and c in OUR_COLUMNS}
        table = table.rename(columns={**clash, **roles})
        table["area_m2"] = stats.area
        table[f"{self.kind.column}_mean"] = stats.prob_mean
        table[f"{self.kind.column}_max"] = stats.prob_max
        table["valid_share"] = stats.valid_share
        if stats.unc_mean is not None:
            table["uncertainty_mean"] = stats.unc_mean
        table["damaged"] = pd.array(np.where(assessed, damaged.astype(int), 0), dtype="Int8")
        table.loc[~assessed, "damaged"] = pd.NA
        table["status"] = status
        table["zone_id"] = self.zones.ids(zone)
        ll = to_crs(points, self.prob.crs, WGS84)
        table["lon"], table["lat"] = shapely.get_x(ll), shapely.get_y(ll)
        return table

    def _write(self, table: pd.DataFrame, geoms: np.ndarray) -> None:
        first = not self.tmp["gpkg"].exists()
        gdf = gpd.GeoDataFrame(
            table.drop(columns=["lon", "lat"]), geometry=geoms, crs=self.prob.crs
        )
        pyogrio.write_dataframe(
            gdf,
            self.tmp["gpkg"],
            layer="buildings",
            driver="GPKG",
            append=not first,
            promote_to_multi=True,
            geometry_type="MultiPolygon",
            dataset_options=GPKG_OPTIONS if first else None,
            **(self._described() if first else {}),
        )
        table.to_csv(
            self.tmp["buildings.csv"], mode="w" if first else "a", header=first, index=False
        )

    def _described(self) -> dict[str, Any]:
        """A layer's description (QGIS shows it as the layer's abstract) and metadata items:
        the sources, their releases, licences and attribution."""
        if not self.description:
            return {}
        return {
            "layer_options": {"DESCRIPTION": self.description[:_MAX_DESCRIPTION]},
            "layer_metadata": self.metadata,
        }

    def finish(self) -> gpd.GeoDataFrame:
        """Write the zones layer, styles and zone CSV; return the zones."""
        zones = self.zones.frame(self.totals, spread=self.unc is not None)
        zones = zones.rename(columns={"probability_mean": f"{self.kind.column}_mean"})
        pyogrio.write_dataframe(
            zones,
            self.tmp["gpkg"],
            layer="zones",
            driver="GPKG",
            promote_to_multi=True,
            geometry_type="MultiPolygon",
            **self._described(),
        )
        buildings_style = buildings_qml(self.kind, self.threshold)
        store_styles(self.tmp["gpkg"], {"buildings": buildings_style, "zones": zones_qml()})
        self.tmp["buildings.qml"].write_text(buildings_style, encoding="utf-8")
        self.tmp["zones.qml"].write_text(zones_qml(), encoding="utf-8")
        centre = to_crs(shapely.centroid(zones.geometry.to_numpy()), self.prob.crs, WGS84)
        table = pd.DataFrame(zones.drop(columns="geometry"))
        table["lon"], table["lat"] = shapely.get_x(centre), shapely.get_y(centre)
        table.to_csv(self.tmp["zones.csv"], index=False)
        return zones


def truth_metrics(confusion: dict[str, int]) -> dict[str, Any] | None:
    """Per-building precision and recall with Wilson 95 % intervals, beside flag-everything."""
    tp, fp, fn, tn = (confusion[k] for k in ("tp", "fp", "fn", "tn"))
    n = tp + fp + fn + tn
    if n == 0:
        return None
    plo, phi = wilson(np.array([tp]), np.array([tp + fp]))
    rlo, rhi = wilson(np.array([tp]), np.array([tp + fn]))

    def ratio(a: int, b: int) -> float | None:
        return a / b if b else None

    def num(x: float) -> float | None:
        return None if math.isnan(x) else float(x)

    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else None
    return {
        "buildings_scored": n,
        **{k: confusion[k] for k in ("tp", "fp", "fn", "tn")},
        "buildings_with_truth_but_no_data": confusion["no_data"],
        "precision": precision,
        "precision_95ci": [num(plo[0]), num(phi[0])],
        "recall": recall,
        "recall_95ci": [num(rlo[0]), num(rhi[0])],
        "f1": f1,
        "baseline_flag_all_precision": ratio(tp + fn, n),
        "interval": "Wilson 95%",
    }


def aggregate(
    map_path: str | Path,
    buildings: str | Path,
    out: str | Path,
    options: AggregateOptions | None = None,
) -> dict[str, Any]:
    """Aggregate a damage map to footprints and zones; write the outputs; return the summary.

    ``map_path`` is a probability map (``damagenet predict``) or a T map (``damagenet pwtt``);
    ``buildings`` a footprint file or a named source (``osm``, ``overture``).
    """
    opts = options or AggregateOptions()
    map_path, out = Path(map_path), Path(out)
    if out.suffix.lower() != ".gpkg":
        raise DamagenetUsageError(f"--out {out}: must end in .gpkg")
    if opts.grid_m <= 0 or opts.batch_size < 1:
        raise DamagenetUsageError("--grid-m must be positive and the batch size at least 1")
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), _open_raster(map_path, "damage map") as prob:
        _check_map(map_path, prob)
        kind = detect(map_path, prob)
        threshold, origin = threshold_of(map_path, prob, kind, opts.threshold)
        source, building_prov = open_buildings(
            map_path, prob, buildings, opts.buildings_crs, opts.sources
        )
        zones, zone_prov = open_zones(prob, opts.zones, opts.grid_m, opts.zones_crs, opts.sources)
        unc = (
            _open_raster(Path(opts.uncertainty), "uncertainty raster") if opts.uncertainty else None
        )
        try:
            if unc is not None:
                check_same_grid(prob, unc)
            provenance = {"buildings": building_prov, "zones": zone_prov}
            inputs = Inputs(map_path, prob, kind, threshold, origin, unc, source, zones, provenance)
            return Run(inputs, out, opts).execute()
        finally:
            if unc is not None:
                unc.close()


class Run:
    """One aggregation from opened inputs to the outputs moved into place."""

    def __init__(self, inputs: Inputs, out: Path, opts: AggregateOptions) -> None:
        self.inputs, self.out, self.opts = inputs, out, opts

    def execute(self) -> dict[str, Any]:
        paths = aggregate_outputs(self.out)
        t0 = time.perf_counter()
        # every output in one staged folder, published as one set (all or none, under signals)
        with staged_folder(self.out.parent) as stage:
            tmp = {k: stage / p.name for k, p in paths.items()}
            run = Aggregation(self.inputs, tmp)
            with pinned_ogr_time():  # GeoPackage time stamps pinned: reproducible bytes
                self._stream(run)
                zone_frame = run.finish()
            summary = self._summary(run, zone_frame, time.perf_counter() - t0, paths)
            tmp["summary.json"].write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        _log(summary)
        return summary

    def _stream(self, run: Aggregation) -> None:
        source = self.inputs.source
        with tqdm(
            total=source.count if source.bbox is None else None,
            desc="buildings",
            unit="bldg",
            disable=bar_disabled(self.opts.progress),
        ) as bar:
            for batch in source.batches(self.opts.batch_size):
                run.run_batch(batch.geometry, batch.attributes)
                bar.update(len(batch.attributes))
        c, name = run.counts, self.inputs.map_path.name
        if c.buildings == 0:
            raise InputFileError(
                f"{source.path}: no footprints meet the map {name} (its box in the footprints' "
                f"CRS is {_box_text(source.bbox)}); footprints and map cover different places"
            )
        if c.outside_map == c.buildings:
            raise InputFileError(
                f"{source.path}: all {c.buildings} footprints near the map {name} lie outside it"
            )

    def _summary(self, run, zone_frame, seconds, paths) -> dict[str, Any]:
        c, inp, source = run.counts, self.inputs, self.inputs.source
        return {
            "map": str(inp.map_path),
            "map_kind": inp.kind.name,
            "buildings_file": str(source.path),
            "buildings_crs": source.crs.to_string(),
            "map_crs": inp.prob.crs.to_string(),
            "id_column": source.id_column,
            "truth_column": source.truth,
            "threshold": inp.threshold,
            "threshold_from": inp.threshold_from,
            "damaged_rule": inp.kind.rule,
            "coverage": COVERAGE_METHOD,
            "uncertainty": str(inp.unc.name) if inp.unc is not None else None,
            "buildings": c.buildings,
            "buildings_assessed": c.assessed,
            "buildings_damaged": c.damaged,
            "buildings_outside_map": c.outside_map,
            "buildings_on_nodata": c.nodata,
            "buildings_without_polygon": c.no_geometry,
            "buildings_outside_zones": c.outside_zones,
            "damaged_share_of_assessed": c.damaged / c.assessed if c.assessed else None,
            "buildings_read_box": list(source.bbox) if source.bbox else None,
            "row_groups_read": list(source.row_groups) if source.row_groups else None,
            "zones": {
                **inp.zones.describe(),
                "count": len(zone_frame),
                "interval": zone_frame["interval"].iloc[0] if len(zone_frame) else None,
            },
            "sources": inp.provenance,
            "truth_metrics": truth_metrics(c.confusion) if source.truth else None,
            "seconds": seconds,
            "buildings_per_second": c.buildings / max(seconds, 1e-9),
            "outputs": {k: str(p) for k, p in paths.items()},
        }


def _box_text(box: tuple[float, float, float, float] | None) -> str:
    return "unknown" if box is None else "(" + ", ".join(f"{v:.6g}" for v in box) + ")"


def _log(summary: dict[str, Any]) -> None:
    log.info(
        "%d buildings: %d assessed, %d damaged at threshold %.3f, %d outside the map, "
        "%d on nodata; %d %s zones -> %s",
        summary["buildings"],
        summary["buildings_assessed"],
        summary["buildings_damaged"],
        summary["threshold"],
        summary["buildings_outside_map"],
        summary["buildings_on_nodata"],
        summary["zones"]["count"],
        summary["zones"]["kind"],
        summary["outputs"]["gpkg"],
    )
    m = summary["truth_metrics"]
    if m and m["precision"] is not None and m["recall"] is not None:
        log.info(
            "against the truth column: precision %.3f [%.3f, %.3f], recall %.3f "
            "[%.3f, %.3f] over %d buildings (flag-all precision %.3f)",
            m["precision"],
            *m["precision_95ci"],
            m["recall"],
            *m["recall_95ci"],
            m["buildings_scored"],
            m["baseline_flag_all_precision"],
        )
