"""Reading and writing the project's GeoTIFFs.

Every raster the pipeline writes is a Cloud Optimized GeoTIFF with CRS, transform, nodata and
band descriptions, so QGIS and GDAL tools show band names and browse it quickly from overviews.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.io import MemoryFile

from contract.atomic import atomic_path
from contract.cog import cog_options
from contract.processing_level import TAG as LEVEL_TAG
from pipeline.errors import InputFileError
from pipeline.grid import Grid

log = logging.getLogger(__name__)


def write_cog(
    path: str | os.PathLike[str],
    data: np.ndarray,
    grid: Grid,
    *,
    nodata: float | int | None,
    descriptions: Sequence[str],
    tags: Mapping[str, str] | None = None,
    band_tags: Sequence[Mapping[str, str]] | None = None,
    resampling: str = "AVERAGE",
) -> None:
    """Write ``data`` (bands, rows, cols) as a COG on ``grid``, atomically."""
    if data.ndim == 2:
        data = data[np.newaxis]
    if data.shape[1:] != grid.shape:
        raise ValueError(f"array shape {data.shape[1:]} does not match grid {grid.shape}")
    if len(descriptions) != data.shape[0]:
        raise ValueError("one description per band is required")
    profile = {
        "driver": "GTiff",
        "count": data.shape[0],
        "dtype": data.dtype.name,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        **grid.profile(),
    }
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(data)
            for i, desc in enumerate(descriptions, start=1):
                dst.set_band_description(i, desc)
            if tags:
                dst.update_tags(**{k: str(v) for k, v in tags.items()})
            for i, btags in enumerate(band_tags or [], start=1):
                dst.update_tags(i, **{k: str(v) for k, v in btags.items()})
        with mem.open() as src, atomic_path(path) as tmp:
            rasterio.shutil.copy(src, tmp, driver="COG", **cog_options(resampling, data.dtype.name))


def scene_level(before: str | os.PathLike[str], after: str | os.PathLike[str]) -> str | None:
    """The processing level both scenes record (tag ``PROCESSING_LEVEL``), or None.

    Two levels in one pair are refused: L1C and L2A differ by the atmosphere, which a model
    would learn as change. One scene without a level makes the pair's level unknown.
    """
    levels = {}
    for path in (before, after):
        with rasterio.open(path) as src:
            levels[str(path)] = src.tags().get(LEVEL_TAG)
    known = {v for v in levels.values() if v}
    if len(known) > 1:
        detail = ", ".join(f"{p}: {v}" for p, v in levels.items())
        raise InputFileError(f"the two scenes are of different processing levels ({detail})")
    if known and not all(levels.values()):
        log.warning(
            "only one of %s and %s records its processing level; recording none", before, after
        )
        return None
    return known.pop() if known else None
