"""``damagenet aggregate``: damage per building footprint and per district (or grid cell).

People ask how many buildings in a district are damaged, not what a 160 m window scores. For
each footprint this takes the damage map's area-weighted mean (exact fractional pixel coverage)
and max probability, flags it at the map's threshold, and counts buildings per zone with an
interval. Footprints stream through in batches and only the raster blocks each batch touches
are read, so a country-sized footprint file runs in bounded memory.

Outputs (all written into a temporary folder beside ``--out`` and moved in place at the end):
``OUT.gpkg`` (layers ``buildings`` and ``zones``, styles in ``layer_styles``),
``OUT_buildings.csv``, ``OUT_zones.csv``, ``OUT_buildings.qml``, ``OUT_zones.qml`` and
``OUT_summary.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
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

from contract.cli import bar_disabled
from contract.gpkg import pinned_ogr_time
from damagenet.buildings.footprints import VectorSource, open_vector
from damagenet.buildings.zonal import MapGrid, check_same_grid, footprint_stats
from damagenet.buildings.zones import Z95, DistrictZones, GridZones, ZoneTotals, to_crs, wilson
from damagenet.errors import DamagenetUsageError, InputFileError
from damagenet.outputs import aggregate_outputs, map_outputs
from damagenet.qgis.vector_styles import buildings_qml, store_styles, zones_qml

log = logging.getLogger(__name__)
WGS84 = CRS.from_epsg(4326)
COVERAGE_METHOD = "exact fractional pixel coverage (area of footprint and pixel in common)"
#: GeoPackage 1.2: the version QGIS 3.22 and GDAL < 3.7 open without a warning.
GPKG_OPTIONS = {"VERSION": "1.2"}
#: gpkg_contents timestamps: fixed so the same inputs give the same GeoPackage.
GDAL_CACHE_MB = 64


@dataclass
class AggregateOptions:
    zones: Path | None = None
    grid_m: float = 500.0
    threshold: str | float = "auto"
    uncertainty: Path | None = None
    buildings_crs: str | None = None
    zones_crs: str | None = None
    batch_size: int = 20_000
    progress: bool = True


def map_threshold(map_path: Path, src: rasterio.DatasetReader) -> tuple[float, str]:
    """The threshold the map was classified at: its THRESHOLD tag, else its summary JSON."""
    tag = src.tags().get("THRESHOLD")
    if tag is not None:
        return float(tag), f"{map_path.name} tag THRESHOLD"
    summary = map_outputs(map_path)["summary"]
    if summary.exists():
        try:
            value = json.loads(summary.read_text(encoding="utf-8")).get("threshold")
        except (OSError, json.JSONDecodeError) as exc:
            raise InputFileError(f"{summary}: cannot read the map's summary ({exc})") from exc
        if value is not None:
            return float(value), f"{summary.name} threshold"
    raise InputFileError(
        f"{map_path}: the map's threshold is unknown (no THRESHOLD tag, no "
        f"{summary.name}); pass --threshold 0.5 (or another value)"
    )


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


class Aggregation:
    """One run: the opened inputs, running totals and the temporary outputs."""

    def __init__(
        self,
        map_path: Path,
        prob,
        threshold: float,
        unc,
        source: VectorSource,
        zones,
        tmp: dict[str, Path],
    ) -> None:
        self.map_path, self.prob, self.threshold, self.unc = map_path, prob, threshold, unc
        self.source, self.zones, self.tmp = source, zones, tmp
        self.grid = MapGrid.of(prob)
        self.totals = ZoneTotals(zones.n)
        self.counts = Counts()

    def run_batch(self, geometry: np.ndarray, attributes: pd.DataFrame) -> None:
        geoms = to_crs(_polygons(geometry), self.source.crs, self.prob.crs)
        stats = footprint_stats(geoms, self.prob, self.grid, self.unc)
        p, t = stats.prob_mean, self.threshold
        assessed = ~np.isnan(p)
        damaged = assessed & (p >= t)
        if stats.unc_mean is not None:
            u = np.nan_to_num(stats.unc_mean, nan=0.0)
            low, high = assessed & (p - Z95 * u >= t), assessed & (p + Z95 * u >= t)
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
        id_col = self.source.id_column
        if id_col and id_col != "building_id":
            table = table.rename(columns={id_col: "building_id"})
        if self.source.truth:
            table = table.rename(columns={self.source.truth: "truth_damaged"})
        table["area_m2"] = stats.area
        table["probability_mean"] = stats.prob_mean
        table["probability_max"] = stats.prob_max
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
        )
        table.to_csv(
            self.tmp["buildings.csv"], mode="w" if first else "a", header=first, index=False
        )

    def finish(self) -> gpd.GeoDataFrame:
        """Write the zones layer, styles and zone CSV; return the zones."""
        zones = self.zones.frame(self.totals, spread=self.unc is not None)
        pyogrio.write_dataframe(
            zones,
            self.tmp["gpkg"],
            layer="zones",
            driver="GPKG",
            promote_to_multi=True,
            geometry_type="MultiPolygon",
        )
        store_styles(self.tmp["gpkg"], {"buildings": buildings_qml(), "zones": zones_qml()})
        self.tmp["buildings.qml"].write_text(buildings_qml(), encoding="utf-8")
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
    """Aggregate a damage map to footprints and zones; write the outputs; return the summary."""
    opts = options or AggregateOptions()
    map_path, out = Path(map_path), Path(out)
    if out.suffix.lower() != ".gpkg":
        raise DamagenetUsageError(f"--out {out}: must end in .gpkg")
    if opts.grid_m <= 0 or opts.batch_size < 1:
        raise DamagenetUsageError("--grid-m must be positive and the batch size at least 1")
    # GDAL's block cache defaults to 5 % of RAM; a small one keeps memory flat over big maps
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), _open_raster(map_path, "damage map") as prob:
        _check_map(map_path, prob)
        if opts.threshold == "auto":
            threshold, origin = map_threshold(map_path, prob)
        else:
            threshold, origin = float(opts.threshold), "--threshold"
        source = open_vector(buildings, opts.buildings_crs, what="buildings")
        if opts.zones:
            zones = DistrictZones(opts.zones, prob.crs, opts.zones_crs)
        else:
            b = prob.bounds
            zones = GridZones(
                b.left, b.top, b.right - b.left, b.top - b.bottom, opts.grid_m, prob.crs
            )
        unc = (
            _open_raster(Path(opts.uncertainty), "uncertainty raster") if opts.uncertainty else None
        )
        try:
            if unc is not None:
                check_same_grid(prob, unc)
            return _run(map_path, prob, threshold, origin, unc, source, zones, out, opts)
        finally:
            if unc is not None:
                unc.close()


def _run(map_path, prob, threshold, origin, unc, source, zones, out, opts) -> dict[str, Any]:
    paths = aggregate_outputs(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=".aggregate-", dir=out.parent))
    tmp = {k: tmpdir / p.name for k, p in paths.items()}
    run = Aggregation(map_path, prob, threshold, unc, source, zones, tmp)
    t0 = time.perf_counter()
    try:
        with pinned_ogr_time():  # GeoPackage time stamps pinned: reproducible bytes
            with tqdm(
                total=source.count,
                desc="buildings",
                unit="bldg",
                disable=bar_disabled(opts.progress),
            ) as bar:
                for batch in source.batches(opts.batch_size):
                    run.run_batch(batch.geometry, batch.attributes)
                    bar.update(len(batch.attributes))
            if run.counts.buildings == 0:
                raise InputFileError(f"{source.path}: no features")
            zone_frame = run.finish()
        seconds = time.perf_counter() - t0
        summary = _summary(
            map_path, threshold, origin, unc, source, zones, zone_frame, run, seconds, paths
        )
        tmp["summary.json"].write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        for key in sorted(tmp):
            os.replace(tmp[key], out.parent / tmp[key].name)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    _log(summary)
    return summary


def _summary(
    map_path, threshold, origin, unc, source, zones, zone_frame, run, seconds, paths
) -> dict[str, Any]:
    c = run.counts
    return {
        "map": str(map_path),
        "buildings_file": str(source.path),
        "buildings_crs": source.crs.to_string(),
        "map_crs": run.prob.crs.to_string(),
        "id_column": source.id_column,
        "truth_column": source.truth,
        "threshold": threshold,
        "threshold_from": origin,
        "damaged_rule": "area-weighted mean probability >= threshold",
        "coverage": COVERAGE_METHOD,
        "uncertainty": str(unc.name) if unc is not None else None,
        "buildings": c.buildings,
        "buildings_assessed": c.assessed,
        "buildings_damaged": c.damaged,
        "buildings_outside_map": c.outside_map,
        "buildings_on_nodata": c.nodata,
        "buildings_without_polygon": c.no_geometry,
        "buildings_outside_zones": c.outside_zones,
        "damaged_share_of_assessed": c.damaged / c.assessed if c.assessed else None,
        "zones": {
            "kind": zones.kind,
            "count": len(zone_frame),
            "grid_m": zones.size if zones.kind == "grid" else None,
            "interval": zone_frame["interval"].iloc[0] if len(zone_frame) else None,
        },
        "truth_metrics": truth_metrics(c.confusion) if source.truth else None,
        "seconds": seconds,
        "buildings_per_second": c.buildings / max(seconds, 1e-9),
        "outputs": {k: str(p) for k, p in paths.items()},
    }


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
