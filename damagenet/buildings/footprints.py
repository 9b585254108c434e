"""Building footprints (and district polygons) read in batches from any common vector layout.

Footprint files are large (a city has hundreds of thousands of buildings, a country millions),
so they are streamed: OGR formats (GeoPackage, FlatGeobuf, shapefile, GeoJSON) through
pyogrio's Arrow stream, GeoParquet through pyarrow's row batches, CSV with a WKT geometry
column (Google Open Buildings) through pandas chunks. Every attribute is kept (nested Parquet
values as JSON text), so results join back to the data they came from. With a bounding box
only what meets it is read: OGR's spatial filter (and the file's spatial index), GeoParquet
row groups pruned on the ``bbox`` covering statistics, so a country file costs what a city
needs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyogrio
import shapely
from pyproj import CRS

from damagenet.buildings.sources.geoparquet import Box, bounds_mask, covering, row_groups_in
from damagenet.errors import DamagenetUsageError, InputFileError

#: Id columns of the known layouts, most specific first (ours, OSM, Overture/Microsoft, Google).
ID_COLUMNS = ("building_id", "osm_id", "osm_way_id", "@id", "id", "full_plus_code")
#: Ground truth (0/1) of the synthetic towns or a user's own assessment.
TRUTH_COLUMN = "damaged"
WKT_COLUMNS = ("geometry", "wkt", "WKT", "geom", "the_geom")
#: Google Open Buildings columns: its CSVs are WGS 84 lon/lat without saying so.
GOOGLE_COLUMNS = {"full_plus_code", "area_in_meters", "latitude", "longitude"}
OGR_SUFFIXES = {
    ".gpkg",
    ".fgb",
    ".shp",
    ".geojson",
    ".json",
    ".geojsonl",
    ".geojsons",
    ".zip",
    ".gml",
    ".kml",
}
PARQUET_SUFFIXES = {".parquet", ".geoparquet"}


@dataclass
class Batch:
    """One batch of features: geometries (source CRS, None where missing) and kept columns."""

    start: int
    geometry: np.ndarray
    attributes: pd.DataFrame


@dataclass
class VectorSource:
    """An opened vector file: where it is, its CRS, its layout and how to read it in batches."""

    path: Path
    kind: str  # "ogr", "parquet" or "csv"
    crs: CRS
    columns: list[str]
    id_column: str | None
    kept: list[str] = field(default_factory=list)
    truth: str | None = None
    layer: str | None = None
    count: int | None = None
    geometry_column: str | None = None
    #: name of the 1-based feature number added when the file has no id column
    number_name: str = "building_id"
    #: only features meeting this box (west, south, east, north in the file's CRS) are read
    bbox: Box | None = None
    #: row groups read and in the file (GeoParquet with a bbox covering)
    row_groups: tuple[int, int] | None = None

    def batches(self, size: int) -> Iterator[Batch]:
        """Yield batches of ``size`` features in file order."""
        read = {"ogr": self._ogr, "parquet": self._parquet, "csv": self._csv}[self.kind]
        start = 0
        for geoms, frame in read(size):
            if self.bbox is not None and self.kind != "ogr":  # OGR filtered already
                keep = bounds_mask(shapely.bounds(geoms), self.bbox) | shapely.is_missing(geoms)
                geoms, frame = geoms[keep], frame[keep]
            if not len(frame):
                continue
            frame = flat_frame(frame.reset_index(drop=True))
            if self.id_column is None:
                frame.insert(0, self.number_name, np.arange(start + 1, start + len(frame) + 1))
            yield Batch(start, geoms, frame)
            start += len(frame)

    def _wanted(self) -> list[str]:
        return [c for c in [self.id_column, *self.kept, self.truth] if c]

    def _ogr(self, size: int) -> Iterator[tuple[np.ndarray, pd.DataFrame]]:
        with pyogrio.open_arrow(
            self.path,
            layer=self.layer,
            columns=self._wanted(),
            batch_size=size,
            use_pyarrow=True,
            bbox=self.bbox,
        ) as (_meta, reader):
            for rb in reader:
                frame = rb.to_pandas()
                geom_col = frame.columns[-1]
                yield (
                    shapely.from_wkb(frame[geom_col].to_numpy(), on_invalid="ignore"),
                    frame.drop(columns=geom_col),
                )

    def _parquet(self, size: int) -> Iterator[tuple[np.ndarray, pd.DataFrame]]:
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(self.path)
        groups = None
        cov = covering(pf) if self.bbox is not None else None
        if cov is not None and self.bbox is not None:
            groups = row_groups_in(pf, self.bbox, cov)
            self.row_groups = (len(groups), pf.metadata.num_row_groups)
            if not groups:
                return
        columns = [*self._wanted(), self.geometry_column]
        for rb in pf.iter_batches(batch_size=size, row_groups=groups, columns=columns):
            frame = rb.to_pandas()
            wkb = frame.pop(self.geometry_column).to_numpy()
            yield shapely.from_wkb(wkb, on_invalid="ignore"), frame

    def _csv(self, size: int) -> Iterator[tuple[np.ndarray, pd.DataFrame]]:
        wanted = [*self._wanted(), self.geometry_column]
        for chunk in pd.read_csv(self.path, usecols=wanted, chunksize=size):
            wkt = chunk.pop(self.geometry_column).astype(object)
            wkt = wkt.where(wkt.notna(), None).to_numpy()
            yield shapely.from_wkt(wkt, on_invalid="ignore"), chunk[self._wanted()]


def open_vector(path: str | Path, crs: str | None = None, what: str = "buildings") -> VectorSource:
    """Open a footprint or zone file, detect its layout and CRS, or refuse naming the problem.

    ``crs`` overrides (or supplies) the CRS for files that do not declare one.
    """
    path = Path(path)
    if not path.exists():
        raise DamagenetUsageError(f"{path}: {what} file not found")
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        src = _open_parquet(path, what, crs)
    elif suffix in (".csv", ".txt"):
        src = _open_csv(path, what, crs)
    elif suffix in OGR_SUFFIXES or path.is_dir():
        src = _open_ogr(path, what, crs)
    else:
        raise InputFileError(
            f"{path}: unknown {what} format '{suffix}'; use GeoPackage, GeoParquet, "
            "FlatGeobuf, shapefile, GeoJSON or CSV with a WKT geometry column"
        )
    src.id_column = next((c for c in ID_COLUMNS if c in src.columns), None)
    src.truth = TRUTH_COLUMN if TRUTH_COLUMN in src.columns else None
    src.kept = [c for c in src.columns if c not in (src.id_column, src.truth)]
    return src


def flat_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Nested values (Parquet lists and structs) as JSON text: GeoPackage and CSV hold scalars."""
    for col in frame.columns:
        if frame[col].dtype == object and frame[col].map(_nested).any():
            frame[col] = frame[col].map(_as_json)
    return frame


def _nested(v: Any) -> bool:
    return isinstance(v, dict | list | tuple | np.ndarray)


def _as_json(v: Any) -> Any:
    if not _nested(v):
        return v
    return json.dumps(_plain(v), sort_keys=True, ensure_ascii=False, default=str)


def _plain(v: Any) -> Any:
    if isinstance(v, np.ndarray | list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, np.generic):
        return v.item()
    return None if isinstance(v, float) and np.isnan(v) else v


def _resolve_crs(found: CRS | None, given: str | None, path: Path, what: str) -> CRS:
    """The CRS given on the command line, else the file's own; refuse a file with neither."""
    if given is not None:
        try:
            return CRS.from_user_input(given)
        except Exception as exc:  # pyproj raises its own CRSError for any unparsable text
            raise InputFileError(f"{path}: CRS '{given}' is not understood ({exc})") from exc
    if found is None:
        raise InputFileError(
            f"{path}: the {what} file does not declare its CRS; pass it with "
            f"--{what}-crs (e.g. EPSG:4326)"
        )
    return found


def _open_ogr(path: Path, what: str, given: str | None) -> VectorSource:
    try:
        layers = pyogrio.list_layers(path)
    except Exception as exc:  # pyogrio's DataSourceError and GDAL errors alike
        raise InputFileError(f"{path}: cannot open the {what} file ({exc})") from exc
    spatial = [str(name) for name, gtype in layers if gtype is not None]
    if not spatial:
        raise InputFileError(f"{path}: no layer with a geometry column; {what} must be polygons")
    # one layer, or the one named for what we read (Geofabrik: gis_osm_buildings_a_free_1)
    named = [name for name in spatial if what.rstrip("s") in name.lower()]
    if len(spatial) == 1 or len(named) == 1:
        layer = spatial[0] if len(spatial) == 1 else named[0]
    else:
        raise InputFileError(
            f"{path}: {len(spatial)} geometry layers ({', '.join(spatial)}) "
            f"and not one named for {what}; keep one layer or name it "
            f"'{what}'"
        )
    info = pyogrio.read_info(path, layer=layer)
    crs = CRS.from_user_input(info["crs"]) if info["crs"] else None
    return VectorSource(
        path,
        "ogr",
        _resolve_crs(crs, given, path, what),
        [str(f) for f in info["fields"]],
        None,
        layer=layer,
        count=int(info["features"]) if info["features"] >= 0 else None,
    )


def _open_parquet(path: Path, what: str, given: str | None) -> VectorSource:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow's ArrowInvalid and OSError alike
        raise InputFileError(f"{path}: cannot read the Parquet file ({exc})") from exc
    geo_raw = (pf.schema_arrow.metadata or {}).get(b"geo")
    if geo_raw is None:
        raise InputFileError(
            f"{path}: not GeoParquet (no 'geo' metadata), so no geometry "
            f"column; {what} must be polygons"
        )
    geo = json.loads(geo_raw)
    column = geo.get("primary_column", "geometry")
    meta = geo.get("columns", {}).get(column, {})
    if meta.get("encoding", "WKB").upper() != "WKB":
        raise InputFileError(
            f"{path}: geometry encoding '{meta['encoding']}' is not "
            "supported; write the GeoParquet with WKB geometries"
        )
    # GeoParquet: a missing "crs" means OGC:CRS84 (lon/lat); null means unknown
    crs_meta = meta.get("crs", "OGC:CRS84")
    crs = CRS.from_user_input(crs_meta) if crs_meta is not None else None
    cover = covering(pf)
    skip = {column, cover["xmin"].split(".")[0] if cover else None}
    names = [n for n in pf.schema_arrow.names if n not in skip]
    return VectorSource(
        path,
        "parquet",
        _resolve_crs(crs, given, path, what),
        names,
        None,
        count=pf.metadata.num_rows,
        geometry_column=column,
    )


def _open_csv(path: Path, what: str, given: str | None) -> VectorSource:
    try:
        header = pd.read_csv(path, nrows=0)
    except Exception as exc:  # pandas' ParserError, UnicodeDecodeError, EmptyDataError
        raise InputFileError(f"{path}: cannot read the CSV file ({exc})") from exc
    columns = [str(c) for c in header.columns]
    geom = next((c for c in WKT_COLUMNS if c in columns), None)
    if geom is None:
        raise InputFileError(
            f"{path}: no WKT geometry column (looked for "
            f"{', '.join(WKT_COLUMNS)}); {what} must be polygons"
        )
    # Google Open Buildings CSVs hold WGS 84 lon/lat polygons and do not say so
    crs = CRS.from_epsg(4326) if GOOGLE_COLUMNS & set(columns) else None
    return VectorSource(
        path,
        "csv",
        _resolve_crs(crs, given, path, what),
        [c for c in columns if c != geom],
        None,
        geometry_column=geom,
    )
