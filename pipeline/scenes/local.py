"""Scenes the user downloaded, read right or refused.

``--input`` may be:

- a multi-band GeoTIFF in any CRS and resolution (bands found as :mod:`.band_order` says; an
  optional SCL band, ``--scl`` or a ``<name>_scl.tif`` beside it masks clouds);
- a folder or zip of one file per band (Copernicus Browser, Earth Search/STAC, GEE exports;
  :mod:`.band_files`), each band reprojected onto the AOI grid on its own, so mixed CRSs and
  resolutions within one download are fine;
- a Sentinel-2 L2A SAFE product, folder or zip (:mod:`.safe`).

The value scale is decided by :mod:`.harmonise` and the acquisition date comes from ``--date``,
the file's tags, a STAC item beside the files, the file names, or a SAFE's metadata. Both are
stated in the log and in the product's JSON record; so is the processing level (L1C or L2A)
when the names (Copernicus Browser ``..._Sentinel-2_L1C_B02_(Raw).tiff``), tags or a STAC item
state it.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from contract.bands import BANDS
from contract.processing_level import L2A
from pipeline.errors import InputFileError
from pipeline.grid import Grid
from pipeline.scenes.band_files import (
    LEVEL_KEYS,
    Download,
    assign_bands,
    band_of,
    baseline_from_names,
    date_from_names,
    is_browser_name,
    level_from,
    open_download,
    stac_item,
)
from pipeline.scenes.band_order import band_order, check_order
from pipeline.scenes.harmonise import (
    Scale,
    ScaleEvidence,
    detect_scale,
    forced_scale,
    offset_scale,
    to_dn,
)
from pipeline.scenes.onto_grid import (
    as_float,
    check_covers,
    classes_onto_grid,
    float_onto_grid,
    read_scl,
    read_window,
    to_uint16,
)
from pipeline.scenes.product import RawScene
from pipeline.scenes.safe import is_safe, open_safe

log = logging.getLogger(__name__)

DATE_TAGS = (
    "ACQUISITION_DATE",
    "DATATAKE_1_DATATAKE_SENSING_START",
    "PRODUCT_START_TIME",
    "SENSING_TIME",
    "DATE_ACQUIRED",
)
SAMPLE_SIZE = 200_000


@dataclass(frozen=True)
class LocalOptions:
    """What the user says about a local input (each overrides what the files say)."""

    date: str | None = None
    bands: tuple[str, ...] | None = None
    scale: str | None = None
    scl_path: str | Path | None = None
    boa_offset: int | None = None


@dataclass
class Layer:
    """One band's values read around the AOI, before resampling."""

    values: np.ndarray  # (h, w) float32, NaN = no data
    transform: Any
    crs: Any
    dtype: str


def read_local(
    path: str | Path, grid: Grid, aoi_slug: str, options: LocalOptions | None = None
) -> RawScene:
    """Any supported local input onto the AOI grid, as digital numbers with their offsets."""
    path, options = Path(path), options or LocalOptions()
    if not path.exists():
        raise InputFileError(f"{path}: input for AOI {aoi_slug} not found")
    if not (path.is_dir() or path.suffix.lower() == ".zip"):
        return read_geotiff(path, grid, aoi_slug, options)
    download = open_download(path)
    if is_safe(download):
        return read_safe(download, grid, aoi_slug, options)
    unnamed = [n for n in download.rasters if band_of(n) is None]
    scl = [n for n in download.rasters if band_of(n) == "SCL"]
    if len(unnamed) == 1 and len(unnamed) + len(scl) == len(download.rasters):
        if scl and options.scl_path is None:  # a stack and its SCL, zipped or in a folder
            options = replace(options, scl_path=download.rasters[scl[0]])
        return read_geotiff(download.rasters[unnamed[0]], grid, aoi_slug, options)
    return read_band_files(download, grid, aoi_slug, options)


def _sample(values: np.ndarray) -> np.ndarray:
    flat = values[np.isfinite(values)]
    return flat[:: max(1, flat.size // SAMPLE_SIZE)]


def _tag_offsets(tag_sets: list[dict[str, str]], dataset_tags: dict[str, str]) -> list[int] | None:
    values = [t.get("BOA_ADD_OFFSET", dataset_tags.get("BOA_ADD_OFFSET")) for t in tag_sets]
    found = [v for v in values if v is not None]
    if len(found) < len(values):
        return None
    return [int(float(v)) for v in found]


def _gdal_scale_offset(src, indexes: list[int]) -> tuple[float, float] | None:
    pairs = {(src.scales[i - 1], src.offsets[i - 1]) for i in indexes}
    if len(pairs) != 1:
        return None
    pair = pairs.pop()
    return None if pair == (1.0, 0.0) else pair


def acquisition_date(
    source: str, given: str | None, tags: dict[str, str], names: list[str], stac: dict[str, object]
) -> str:
    """``--date``, else a date tag, the STAC item, or the file names; else refuse."""
    if given:
        return given
    for key in DATE_TAGS:
        if tags.get(key):
            return str(tags[key]).strip()[:10].replace(":", "-")
    if isinstance(stac.get("datetime"), str):
        return str(stac["datetime"])[:10]
    from_names = date_from_names(names, source)
    if from_names:
        return from_names
    raise InputFileError(
        f"{source}: no acquisition date found (no ACQUISITION_DATE tag, no STAC item, no date "
        "in the file names); give it with --date YYYY-MM-DD (workflow: "
        "scenes.local.<aoi>.<epoch>.date)"
    )


def _decide_scale(options: LocalOptions, evidence: ScaleEvidence) -> Scale:
    scale = forced_scale(options.scale or "", options.boa_offset) or detect_scale(evidence)
    log.info(
        "%s: value scale %s (%s) -> digital numbers x %.6g, BOA offset %s",
        evidence.source,
        scale.name,
        scale.reason,
        scale.factor,
        list(scale.offsets),
    )
    return scale


def _to_raw(
    layers: list[Layer],
    scale: Scale,
    grid: Grid,
    scl: np.ndarray | None,
    date: str,
    source: str,
    metadata: dict[str, Any],
    level: str | None = None,
) -> RawScene:
    _check_date(date, metadata["input"])
    dn = np.stack(
        [
            float_onto_grid(to_dn(layer.values, scale)[None], layer.transform, layer.crs, grid)[0]
            for layer in layers
        ]
    )
    return RawScene(
        dn=to_uint16(dn),
        scl=scl,
        offsets=list(scale.offsets),
        dates=[date[:10]],
        source=source,
        metadata={**metadata, "scale": scale.record()},
        level=level,
    )


def _check_date(date: str, source: str) -> None:
    try:
        dt.date.fromisoformat(date[:10])
    except ValueError as exc:
        raise InputFileError(
            f"{source}: acquisition date {date!r} is not YYYY-MM-DD; give it with --date YYYY-MM-DD"
        ) from exc


def read_geotiff(
    path: str | Path,
    grid: Grid,
    aoi_slug: str,
    options: LocalOptions | None = None,
    source: str = "local",
) -> RawScene:
    """A multi-band GeoTIFF (any CRS and resolution) onto the AOI grid."""
    gdal_path, options = str(path), options or LocalOptions()
    path = Path(gdal_path)  # for its name only: a /vsizip/ path must reach GDAL unchanged
    scl_path = options.scl_path
    if scl_path is None and path.with_name(path.stem + "_scl.tif").exists():
        scl_path = path.with_name(path.stem + "_scl.tif")
    try:
        with rasterio.open(gdal_path) as src:
            check_covers(gdal_path, src, grid, aoi_slug)
            order = band_order(gdal_path, src.descriptions, options.bands)
            indexes = list(order.indexes)
            data, transform = read_window(src, grid, indexes)
            values = as_float(data, src.nodata)
            check_order(gdal_path, order, values)
            tags = src.tags()
            date = acquisition_date(gdal_path, options.date, tags, [path.name], {})
            level = level_from([path.name, *(tags.get(k, "") for k in LEVEL_KEYS)], gdal_path)
            evidence = ScaleEvidence(
                source=gdal_path,
                dtype=src.dtypes[indexes[0] - 1],
                values=_sample(values),
                browser_name=is_browser_name(path.name),
                tag_offsets=_tag_offsets([src.tags(i) for i in indexes], tags),
                gdal_scale_offset=_gdal_scale_offset(src, indexes),
                baseline=tags.get("PROCESSING_BASELINE") or baseline_from_names([path.name]),
                date=date,
            )
            scl = None
            if order.scl is not None and scl_path is None:
                sdata, stransform = read_window(src, grid, [order.scl])
                scl = classes_onto_grid(sdata[0], stransform, src.crs, grid)
            layers = [Layer(values[i], transform, src.crs, evidence.dtype) for i in range(4)]
    except rasterio.errors.RasterioIOError as exc:
        raise InputFileError(
            f"{gdal_path}: cannot read the scene for AOI {aoi_slug} ({exc})"
        ) from exc
    scale = _decide_scale(options, evidence)
    if scl_path is not None:
        scl = read_scl(str(scl_path), grid)
    log.info("%s: bands %s (%s)", gdal_path, ",".join(order.names), order.evidence)
    record: dict[str, Any] = {"input": gdal_path, "band_order": order.record()}
    record["scl_input"] = str(scl_path) if scl_path else None
    return _to_raw(layers, scale, grid, scl, date, source, record, level)


def _read_layers(
    files: dict[str, str], grid: Grid, aoi_slug: str
) -> tuple[list[Layer], list[dict[str, str]], list[tuple[float, float]]]:
    """Each band file's values around the AOI, its tags and its GDAL scale/offset."""
    layers, tags, scales = [], [], []
    for band in BANDS:
        path = files[band]
        try:
            with rasterio.open(path) as src:
                check_covers(path, src, grid, aoi_slug)
                data, transform = read_window(src, grid, [1])
                layers.append(
                    Layer(as_float(data[0], src.nodata), transform, src.crs, src.dtypes[0])
                )
                tags.append({**src.tags(), **src.tags(1)})
                scales.append((src.scales[0], src.offsets[0]))
        except rasterio.errors.RasterioIOError as exc:
            raise InputFileError(f"{path}: cannot read band file {band} ({exc})") from exc
    dtypes = {layer.dtype for layer in layers}
    if len(dtypes) > 1:
        raise InputFileError(
            f"{files['B02']}: the band files have different data types "
            f"{dict(zip(BANDS, (layer.dtype for layer in layers), strict=True))}, so no one "
            "value scale fits them; download all bands in one format"
        )
    return layers, tags, scales


def read_band_files(
    download: Download, grid: Grid, aoi_slug: str, options: LocalOptions
) -> RawScene:
    """A folder or zip of one file per band, each band reprojected onto the grid on its own."""
    files, scl_file = assign_bands(download)
    layers, tags, scales = _read_layers(files, grid, aoi_slug)
    stac = stac_item(download)
    names = [download.source.name, *download.rasters]
    source = str(download.source)
    date = acquisition_date(source, options.date, tags[0], names, stac)
    stated = [*names, *(str(t.get(k, "")) for t in tags for k in LEVEL_KEYS)]
    level = level_from([*stated, *(str(stac.get(k, "")) for k in LEVEL_KEYS)], source)
    gdal_pairs = set(scales)
    evidence = ScaleEvidence(
        source=source,
        dtype=layers[0].dtype,
        values=_sample(np.concatenate([_sample(layer.values) for layer in layers])),
        browser_name=all(is_browser_name(f) for f in files.values()),
        tag_offsets=_tag_offsets(tags, {}),
        gdal_scale_offset=gdal_pairs.pop()
        if len(gdal_pairs) == 1 and (1.0, 0.0) not in gdal_pairs
        else None,
        stac=stac,
        baseline=tags[0].get("PROCESSING_BASELINE") or baseline_from_names(names),
        date=date,
    )
    scale = _decide_scale(options, evidence)
    scl = (
        read_scl(str(options.scl_path or scl_file), grid)
        if (options.scl_path or scl_file)
        else None
    )
    log.info("%s: band files %s", source, files)
    return _to_raw(
        layers,
        scale,
        grid,
        scl,
        date,
        "local",
        {
            "input": source,
            "band_files": files,
            "scl_input": scl_file,
            **({"stac_item": stac.get("item")} if stac else {}),
        },
        level,
    )


def read_safe(download: Download, grid: Grid, aoi_slug: str, options: LocalOptions) -> RawScene:
    """An L2A SAFE product onto the AOI grid, with its own offsets, date and SCL."""
    product = open_safe(download)
    layers, _, _ = _read_layers(product.bands, grid, aoi_slug)
    scale = forced_scale(options.scale or "", options.boa_offset) or offset_scale(
        product.offsets, f"{download.source.name} MTD_MSIL2A.xml BOA_ADD_OFFSET"
    )
    log.info("%s: value scale %s (%s)", download.source, scale.name, scale.reason)
    if options.date and options.date[:10] != product.date:
        log.warning(
            "%s: --date %s differs from the product's sensing date %s; using --date",
            download.source,
            options.date,
            product.date,
        )
    scl = read_scl(product.scl, grid)
    return _to_raw(
        layers,
        scale,
        grid,
        scl,
        options.date or product.date,
        "local-safe",
        {
            "input": str(download.source),
            "product": download.source.name,
            "processing_baseline": product.baseline,
        },
        L2A,  # only MTD_MSIL2A.xml products are read
    )
