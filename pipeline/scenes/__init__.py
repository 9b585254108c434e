"""Scene acquisition: one cloud-masked, harmonised 4-band scene per AOI and epoch.

Four sources deliver digital numbers on the AOI grid (:class:`~pipeline.scenes.product.RawScene`)
and one finaliser writes the product, so every source's output passes the same checks:

- ``stac``: Cloud Optimized GeoTIFFs from a public STAC API (Earth Search, Planetary Computer),
  no account needed;
- ``sentinelhub`` (default): the Process and Catalog APIs of the Copernicus Data Space Ecosystem;
- ``local``: a GeoTIFF or an L2A SAFE product the user downloaded;
- ``synthetic``: the synthetic generator, passed through the same harmonisation and masking.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.aoi import AOI
from pipeline.errors import PipelineError
from pipeline.grid import aoi_grid
from pipeline.scenes.local import is_safe, read_geotiff, read_safe
from pipeline.scenes.product import (
    DEFAULT_MASK_CLASSES,
    DEFAULT_MIN_VALID_FRACTION,
    RawScene,
    finalise_scene,
)
from pipeline.scenes.sentinelhub_source import SentinelHubOptions, download_scene
from pipeline.scenes.stac_source import StacOptions, read_stac_scene
from pipeline.synthetic import generate_synthetic

log = logging.getLogger(__name__)
SOURCES = ("sentinelhub", "stac", "local", "synthetic")
EPOCHS = ("before", "after")


def acquire_scene(aoi: AOI, epoch: str, out: str | Path, source: str = "sentinelhub",
                  input_path: str | Path | None = None, *, max_size_km: float | None = None,
                  min_valid_fraction: float = DEFAULT_MIN_VALID_FRACTION,
                  mask_classes: Sequence[int] = DEFAULT_MASK_CLASSES, seed: int = 0,
                  scl_path: str | Path | None = None, boa_offset: int | None = None,
                  sentinelhub: SentinelHubOptions | None = None,
                  stac: StacOptions | None = None) -> dict[str, Any]:
    """Produce ``out`` for one AOI and epoch; return the acquisition summary.

    ``max_size_km`` caps the AOI grid (the same cap must be used for both epochs; the grid is a
    pure function of AOI and cap, so both land on exactly the same grid).
    """
    if epoch not in EPOCHS:
        raise PipelineError(f"epoch must be one of {EPOCHS}, got {epoch!r}")
    grid = aoi_grid(aoi, max_size_km)
    if source == "stac":
        raw = read_stac_scene(aoi, epoch, grid, stac or StacOptions())
    else:
        raw = _raw_scene(aoi, epoch, grid, source, input_path, max_size_km, seed, scl_path,
                         boa_offset, sentinelhub)
    return finalise_scene(raw, aoi, grid, out, epoch, mask_classes=mask_classes,
                          min_valid_fraction=min_valid_fraction)


def _raw_scene(aoi, epoch, grid, source, input_path, max_size_km, seed, scl_path, boa_offset,
               sentinelhub) -> RawScene:
    if source == "sentinelhub":
        return download_scene(aoi, epoch, grid, sentinelhub or SentinelHubOptions())
    if source == "local":
        if input_path is None:
            raise PipelineError(f"{aoi.slug}: --source local needs --input (a GeoTIFF or an "
                                "L2A SAFE folder or zip)")
        if not Path(input_path).exists():
            raise PipelineError(f"{input_path}: input for AOI {aoi.slug} not found")
        if is_safe(input_path):
            return read_safe(input_path, grid, aoi.slug)
        return read_geotiff(input_path, grid, aoi.slug, scl_path=scl_path, boa_offset=boa_offset)
    if source == "synthetic":
        if input_path is not None:  # a folder already written by `pipeline synthetic`
            path = Path(input_path) / f"{epoch}.tif"
            if not path.exists():
                raise PipelineError(f"{path}: no synthetic {epoch} scene for AOI {aoi.slug} "
                                    f"(write it with: pipeline synthetic --out {input_path})")
            raw = read_geotiff(path, grid, aoi.slug, source="synthetic")
            raw.metadata = {"synthetic": True, "input": str(input_path)}
            return raw
        with tempfile.TemporaryDirectory(prefix="synthetic-") as tmp:
            scenes = generate_synthetic(aoi, tmp, seed=seed, max_size_km=max_size_km)
            path = scenes.before if epoch == "before" else scenes.after
            raw = read_geotiff(path, grid, aoi.slug, source="synthetic")
            raw.metadata = {"seed": seed, "synthetic": True}
            return raw
    raise PipelineError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
