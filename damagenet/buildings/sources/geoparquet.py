"""Row-group pruning on a GeoParquet ``bbox`` covering column (Overture's layout, GeoParquet 1.1).

Overture writes every feature's bounding box as a struct column ``bbox`` (``xmin``, ``xmax``,
``ymin``, ``ymax``) and sorts features spatially, so each row group's column statistics bound
its features: the groups whose statistics miss the box are never read.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

Box = tuple[float, float, float, float]


def covering(pf: pq.ParquetFile) -> dict[str, str] | None:
    """Column paths of the bbox covering (``{"xmin": "bbox.xmin", ...}``), or None."""
    geo_raw = (pf.schema_arrow.metadata or {}).get(b"geo")
    names = set(pf.schema.names) if pf.schema else set()
    paths = {pf.schema.column(i).path for i in range(len(pf.schema))}
    if geo_raw is not None:
        geo = json.loads(geo_raw)
        cov = geo.get("columns", {}).get(geo.get("primary_column", "geometry"), {}).get("covering")
        if cov and "bbox" in cov:
            return {k: ".".join(v) for k, v in cov["bbox"].items()}
    if "bbox" in names or {"bbox.xmin", "bbox.ymax"} <= paths:
        return {k: f"bbox.{k}" for k in ("xmin", "ymin", "xmax", "ymax")}
    return None


def row_groups_in(pf: pq.ParquetFile, box: Box, cov: dict[str, str]) -> list[int]:
    """Row groups whose bbox statistics intersect ``box`` (all of them where stats are missing)."""
    index = {pf.metadata.schema.column(i).path: i for i in range(pf.metadata.num_columns)}
    west, south, east, north = box
    keep = []
    for g in range(pf.metadata.num_row_groups):
        rg = pf.metadata.row_group(g)
        stats = [rg.column(index[cov[k]]).statistics for k in ("xmin", "xmax", "ymin", "ymax")]
        if any(st is None or not st.has_min_max for st in stats):
            keep.append(g)  # no statistics: the group cannot be ruled out
            continue
        lo_x, hi_x = float(stats[0].min), float(stats[1].max)
        lo_y, hi_y = float(stats[2].min), float(stats[3].max)
        if lo_x <= east and hi_x >= west and lo_y <= north and hi_y >= south:
            keep.append(g)
    return keep


def file_extent(pf: pq.ParquetFile, cov: dict[str, str]) -> Box | None:
    """The box of all row groups' bbox statistics (None when any group has none)."""
    index = {pf.metadata.schema.column(i).path: i for i in range(pf.metadata.num_columns)}
    lo_x = lo_y = float("inf")
    hi_x = hi_y = float("-inf")
    for g in range(pf.metadata.num_row_groups):
        rg = pf.metadata.row_group(g)
        stats = [rg.column(index[cov[k]]).statistics for k in ("xmin", "xmax", "ymin", "ymax")]
        if any(st is None or not st.has_min_max for st in stats):
            return None
        lo_x, hi_x = min(lo_x, float(stats[0].min)), max(hi_x, float(stats[1].max))
        lo_y, hi_y = min(lo_y, float(stats[2].min)), max(hi_y, float(stats[3].max))
    return (lo_x, lo_y, hi_x, hi_y)


def boxes_meet(a: Box, b: Box) -> bool:
    return a[0] <= b[2] and a[2] >= b[0] and a[1] <= b[3] and a[3] >= b[1]


def rows_in(table: pa.Table, box: Box, cov: dict[str, str]) -> pa.Table:
    """The rows of ``table`` whose bbox intersects ``box``."""

    def col(key: str) -> pa.ChunkedArray:
        parts = cov[key].split(".")
        arr = table.column(parts[0])
        for p in parts[1:]:
            arr = pc.struct_field(arr, p)
        return arr

    west, south, east, north = box
    mask = pc.and_(
        pc.and_(pc.less_equal(col("xmin"), east), pc.greater_equal(col("xmax"), west)),
        pc.and_(pc.less_equal(col("ymin"), north), pc.greater_equal(col("ymax"), south)),
    )
    return table.filter(pc.fill_null(mask, False))


def bounds_mask(bounds: np.ndarray, box: Box) -> np.ndarray:
    """Rows of shapely ``bounds`` (n x 4) that intersect ``box``; NaN bounds never do."""
    west, south, east, north = box
    with np.errstate(invalid="ignore"):
        return (
            (bounds[:, 0] <= east)
            & (bounds[:, 2] >= west)
            & (bounds[:, 1] <= north)
            & (bounds[:, 3] >= south)
        )
