"""Scenes the user downloaded: a GeoTIFF in any CRS and resolution, or a Sentinel-2 L2A SAFE.

GeoTIFF bands are found by description (``B02``/``B2``/``blue``...) or, without descriptions, in
the documented order B02, B03, B04, B08 (an optional fifth band described ``SCL``). A scene
classification can also come from ``--scl`` or a ``<name>_scl.tif`` beside the scene. The offset
comes from band tags ``BOA_ADD_OFFSET`` (as this project and GDAL's SENTINEL2 driver record it),
from ``--boa-offset``, or, for a SAFE, from the product's own ``MTD_MSIL2A.xml``.

SAFE products (folder or .zip) are read through their band files: ``R10m/*_B0{2,3,4,8}_10m.jp2``
and ``R20m/*_SCL_20m.jp2`` of the granule, reprojected with bilinear (reflectance) and nearest
(SCL) resampling onto the AOI grid.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import reproject, transform_bounds

from contract.bands import BANDS
from pipeline.errors import PipelineError
from pipeline.grid import Grid
from pipeline.scenes.product import RawScene

log = logging.getLogger(__name__)

BAND_ALIASES = {
    "B02": {"b02", "b2", "blue", "band2"},
    "B03": {"b03", "b3", "green", "band3"},
    "B04": {"b04", "b4", "red", "band4"},
    "B08": {"b08", "b8", "nir", "near infrared", "band8"},
}
#: ESA's physical band ids in MTD_MSIL2A.xml (B01=0, B02=1, ..., B08=7).
SAFE_BAND_IDS = {"B02": 1, "B03": 2, "B04": 3, "B08": 7}
OFFSET_EPOCH = dt.date(2022, 1, 25)


def _normalise(desc: str | None) -> str:
    return re.sub(r"\s+", " ", (desc or "").strip().lower())


def band_indexes(path: str | Path, descriptions: tuple[str | None, ...]) -> tuple[list[int],
                                                                                     int | None]:
    """1-based indexes of B02, B03, B04, B08 (and SCL, if present) in a GeoTIFF."""
    names = [_normalise(d).split(" ")[0] if d else "" for d in descriptions]
    full = [_normalise(d) for d in descriptions]
    found: list[int] = []
    for band in BANDS:
        aliases = BAND_ALIASES[band]
        idx = next((i + 1 for i, (n, f) in enumerate(zip(names, full, strict=True))
                    if n in aliases or f in aliases), None)
        if idx is None:
            break
        found.append(idx)
    scl = next((i + 1 for i, n in enumerate(names) if n == "scl"), None)
    if len(found) == 4:
        return found, scl
    if len(descriptions) in (4, 5) and not any(names[:4]):
        return [1, 2, 3, 4], (5 if len(descriptions) == 5 else None)
    raise PipelineError(
        f"{path}: cannot find bands B02, B03, B04, B08: {len(descriptions)} band(s) described "
        f"{list(descriptions)}; name the bands (B02, B03, B04, B08) or give exactly 4 bands "
        "in that order")


def _reproject(src_array: np.ndarray, src_transform, src_crs, grid: Grid, resampling: Resampling,
               nodata: int) -> np.ndarray:
    out = np.zeros((src_array.shape[0], *grid.shape), dtype=src_array.dtype)
    reproject(src_array, out, src_transform=src_transform, src_crs=src_crs, src_nodata=nodata,
              dst_transform=grid.transform, dst_crs=grid.crs, dst_nodata=nodata,
              resampling=resampling)
    return out


def _check_covers(path: str, src, grid: Grid, aoi_slug: str) -> None:
    left, bottom, right, top = transform_bounds(src.crs, grid.crs, *src.bounds, densify_pts=21)
    g_left, g_bottom, g_right, g_top = grid.bounds
    if right <= g_left or left >= g_right or top <= g_bottom or bottom >= g_top:
        raise PipelineError(f"{path} does not cover AOI {aoi_slug}: its footprint "
                            f"({left:.0f}, {bottom:.0f}, {right:.0f}, {top:.0f}) misses the AOI "
                            f"grid {grid.bounds} in {grid.crs}")


def _read_window_for(src, grid: Grid, indexes: list[int]):
    """Read only the part of a (possibly huge) source raster that the AOI grid needs."""
    left, bottom, right, top = transform_bounds(grid.crs, src.crs, *grid.bounds, densify_pts=21)
    pad = 2 * max(abs(src.transform.a), abs(src.transform.e))
    window = src.window(left - pad, bottom - pad, right + pad, top + pad)
    window = window.round_offsets().round_lengths().intersection(
        rasterio.windows.Window(0, 0, src.width, src.height))
    data = src.read(indexes, window=window)
    return data, src.window_transform(window)


def _offsets_from_tags(src, indexes: list[int]) -> list[int] | None:
    offsets = []
    for i in indexes:
        value = src.tags(i).get("BOA_ADD_OFFSET")
        if value is None:
            return None
        offsets.append(int(float(value)))
    return offsets


def read_geotiff(path: str | Path, grid: Grid, aoi_slug: str, scl_path: str | Path | None = None,
                 boa_offset: int | None = None, date: str | None = None,
                 source: str = "local") -> RawScene:
    """A 4-band GeoTIFF (any CRS and resolution) onto the AOI grid."""
    path = Path(path)
    if scl_path is None and path.with_name(path.stem + "_scl.tif").exists():
        scl_path = path.with_name(path.stem + "_scl.tif")
    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise PipelineError(f"{path}: raster has no CRS")
            indexes, scl_index = band_indexes(path, src.descriptions)
            _check_covers(str(path), src, grid, aoi_slug)
            data, transform = _read_window_for(src, grid, indexes)
            nodata = int(src.nodata) if src.nodata is not None else 0
            if nodata != 0:
                data = np.where(data == nodata, 0, data)
            dn = _reproject(data.astype(np.uint16), transform, src.crs, grid, Resampling.bilinear,
                            0)
            offsets = _offsets_from_tags(src, indexes)
            tags = src.tags()
            scl = None
            if scl_index is not None:
                sdata, stransform = _read_window_for(src, grid, [scl_index])
                scl = _reproject(sdata.astype(np.uint8), stransform, src.crs, grid,
                                 Resampling.nearest, 0)[0]
    except rasterio.errors.RasterioIOError as exc:
        raise PipelineError(f"{path}: cannot read the scene for AOI {aoi_slug} ({exc})") from exc
    if scl_path is not None:
        scl = read_scl(scl_path, grid)
    date = date or tags.get("ACQUISITION_DATE") or tags.get("DATATAKE_1_DATATAKE_SENSING_START",
                                                            "")[:10]
    if not date:
        raise PipelineError(f"{path}: no acquisition date in its tags (ACQUISITION_DATE); give "
                            "it with --date YYYY-MM-DD")
    if boa_offset is not None:
        offsets = [boa_offset] * 4
    elif offsets is None:
        offsets = [0] * 4
        if dt.date.fromisoformat(date[:10]) >= OFFSET_EPOCH:
            log.warning("%s: acquired %s but carries no BOA_ADD_OFFSET tags; assuming the "
                        "values are already harmonised (set --boa-offset -1000 if not)", path,
                        date)
    return RawScene(dn=dn, scl=scl, offsets=offsets, dates=[date[:10]], source=source,
                    metadata={"input": str(path), "scl_input": str(scl_path) if scl_path
                              else None})


def read_scl(path: str | Path, grid: Grid) -> np.ndarray:
    """A scene classification raster onto the AOI grid with nearest-neighbour resampling."""
    try:
        with rasterio.open(path) as src:
            data, transform = _read_window_for(src, grid, [1])
            return _reproject(data.astype(np.uint8), transform, src.crs, grid,
                              Resampling.nearest, 0)[0]
    except rasterio.errors.RasterioIOError as exc:
        raise PipelineError(f"{path}: cannot read the SCL raster ({exc})") from exc


@dataclass
class SafeProduct:
    """The parts of an L2A SAFE product this project needs."""

    bands: dict[str, str]     # band -> GDAL path of its 10 m file
    scl: str                  # GDAL path of the 20 m SCL file
    offsets: list[int]        # BOA_ADD_OFFSET of B02, B03, B04, B08
    date: str
    name: str


def open_safe(path: str | Path) -> SafeProduct:
    """Locate band files and metadata in a SAFE folder or zip."""
    path = Path(path)
    if path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as zf:
                members = zf.namelist()
                mtd_name = next((m for m in members if m.endswith("MTD_MSIL2A.xml")), None)
                mtd = zf.read(mtd_name) if mtd_name else None
        except zipfile.BadZipFile as exc:
            raise PipelineError(f"{path}: not a readable zip file ({exc})") from exc
        prefix = f"/vsizip/{path.resolve()}/"
    else:
        members = [str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()]
        mtd_path = next((path / m for m in members if m.endswith("MTD_MSIL2A.xml")), None)
        mtd = mtd_path.read_bytes() if mtd_path else None
        prefix = f"{path.resolve()}/"
    if mtd is None:
        raise PipelineError(f"{path}: no MTD_MSIL2A.xml; not a Sentinel-2 L2A SAFE product")

    def find(pattern: str) -> str:
        hits = sorted(m for m in members if re.search(pattern, m))
        if not hits:
            raise PipelineError(f"{path}: SAFE product has no file matching {pattern}")
        return prefix + hits[0]

    bands = {b: find(rf"R10m/[^/]*_{b}_10m\.(jp2|tif)$") for b in BANDS}
    scl = find(r"R20m/[^/]*_SCL_20m\.(jp2|tif)$")
    try:
        root = ET.fromstring(mtd)
    except ET.ParseError as exc:
        raise PipelineError(f"{path}: MTD_MSIL2A.xml is not valid XML ({exc})") from exc
    by_id = {el.get("band_id"): int(float(el.text or 0)) for el in root.iter("BOA_ADD_OFFSET")}
    offsets = [by_id.get(str(SAFE_BAND_IDS[b]), 0) for b in BANDS]
    start = next((el.text for el in root.iter("PRODUCT_START_TIME")), None)
    if not start:
        raise PipelineError(f"{path}: MTD_MSIL2A.xml has no PRODUCT_START_TIME")
    return SafeProduct(bands=bands, scl=scl, offsets=offsets, date=start[:10], name=path.name)


def read_safe(path: str | Path, grid: Grid, aoi_slug: str) -> RawScene:
    """An L2A SAFE product onto the AOI grid, with its own offsets and SCL."""
    product = open_safe(path)
    layers = []
    try:
        for band in BANDS:
            with rasterio.open(product.bands[band]) as src:
                _check_covers(str(path), src, grid, aoi_slug)
                data, transform = _read_window_for(src, grid, [1])
                layers.append(_reproject(data.astype(np.uint16), transform, src.crs, grid,
                                         Resampling.bilinear, 0)[0])
        scl = read_scl(product.scl, grid)
    except rasterio.errors.RasterioIOError as exc:
        raise PipelineError(f"{path}: cannot read a band file of the SAFE product ({exc})"
                            ) from exc
    return RawScene(dn=np.stack(layers), scl=scl, offsets=product.offsets, dates=[product.date],
                    source="local-safe", metadata={"input": str(path), "product": product.name})


def is_safe(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() or p.suffix.lower() == ".zip" or p.name.upper().endswith(".SAFE")
