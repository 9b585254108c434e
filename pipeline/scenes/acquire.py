"""One AOI, one epoch: ask the source's reader for raw numbers, then write the product."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.aoi import AOI
from pipeline.errors import PipelineUsageError
from pipeline.grid import aoi_grid
from pipeline.scenes.defaults import (
    DEFAULT_MASK_CLASSES,
    DEFAULT_MIN_VALID_FRACTION,
    DEFAULT_SOURCE,
    EPOCHS,
)
from pipeline.scenes.local import LocalOptions
from pipeline.scenes.product import finalise_scene
from pipeline.scenes.sentinelhub_source import SentinelHubOptions
from pipeline.scenes.sources import READERS, SceneRequest
from pipeline.scenes.stac_source import StacOptions


def acquire_scene(
    aoi: AOI,
    epoch: str,
    out: str | Path,
    source: str = DEFAULT_SOURCE,
    input_path: str | Path | None = None,
    *,
    max_size_km: float | None = None,
    min_valid_fraction: float = DEFAULT_MIN_VALID_FRACTION,
    mask_classes: Sequence[int] = DEFAULT_MASK_CLASSES,
    seed: int = 0,
    local: LocalOptions | None = None,
    sentinelhub: SentinelHubOptions | None = None,
    stac: StacOptions | None = None,
) -> dict[str, Any]:
    """Produce ``out`` for one AOI and epoch; return the acquisition summary.

    ``local`` carries what the user says about a local input (date, band order, scale, SCL).

    ``max_size_km`` caps the AOI grid (the same cap must be used for both epochs; the grid is a
    pure function of AOI and cap, so both land on exactly the same grid).
    """
    if epoch not in EPOCHS:
        raise PipelineUsageError(f"epoch must be one of {EPOCHS}, got {epoch!r}")
    if source not in READERS:
        raise PipelineUsageError(f"unknown source {source!r}; choose one of {', '.join(READERS)}")
    grid = aoi_grid(aoi, max_size_km)
    request = SceneRequest(
        aoi=aoi,
        epoch=epoch,
        grid=grid,
        input_path=Path(input_path) if input_path is not None else None,
        max_size_km=max_size_km,
        seed=seed,
        local=local,
        sentinelhub=sentinelhub,
        stac=stac,
    )
    raw = READERS[source](request)
    return finalise_scene(
        raw, aoi, grid, out, epoch, mask_classes=mask_classes, min_valid_fraction=min_valid_fraction
    )
