"""Scene sources: a mapping from source name to the reader that delivers its raw scene.

Every reader takes one :class:`SceneRequest` and returns digital numbers on the AOI grid
(:class:`~pipeline.scenes.product.RawScene`); :mod:`pipeline.scenes.acquire` hands the result to
the one product writer. A new source is a reader function and one entry in :data:`READERS`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from contract.processing_level import L2A
from pipeline.aoi import AOI
from pipeline.errors import InputFileError, PipelineUsageError
from pipeline.grid import Grid
from pipeline.scenes.local import LocalOptions, read_geotiff, read_local
from pipeline.scenes.product import RawScene
from pipeline.scenes.sentinelhub_source import SentinelHubOptions, download_scene
from pipeline.scenes.stac_source import StacOptions, read_stac_scene
from pipeline.synthetic import generate_synthetic


@dataclass(frozen=True)
class SceneRequest:
    """What a reader needs: the AOI, epoch and grid, and the source-specific options."""

    aoi: AOI
    epoch: str
    grid: Grid
    input_path: Path | None = None
    max_size_km: float | None = None
    seed: int = 0
    local: LocalOptions | None = None
    sentinelhub: SentinelHubOptions | None = None
    stac: StacOptions | None = None


def read_sentinelhub(req: SceneRequest) -> RawScene:
    return download_scene(req.aoi, req.epoch, req.grid, req.sentinelhub or SentinelHubOptions())


def read_stac(req: SceneRequest) -> RawScene:
    return read_stac_scene(req.aoi, req.epoch, req.grid, req.stac or StacOptions())


def read_user_download(req: SceneRequest) -> RawScene:
    """A GeoTIFF, a folder or zip of band files, or an L2A SAFE product the user downloaded."""
    if req.input_path is None:
        raise PipelineUsageError(
            f"{req.aoi.slug}: --source local needs --input (a GeoTIFF, a "
            "folder or zip of band files, or an L2A SAFE folder or zip)"
        )
    if not req.input_path.exists():
        raise PipelineUsageError(f"{req.input_path}: --input for AOI {req.aoi.slug} not found")
    return read_local(req.input_path, req.grid, req.aoi.slug, req.local)


def read_synthetic(req: SceneRequest) -> RawScene:
    """A folder written by ``pipeline synthetic``, or a town generated on the fly."""
    if req.input_path is not None:
        path = req.input_path / f"{req.epoch}.tif"
        if not path.exists():
            raise InputFileError(
                f"{path}: no synthetic {req.epoch} scene for AOI "
                f"{req.aoi.slug} (write it with: pipeline synthetic --out "
                f"{req.input_path})"
            )
        raw = read_geotiff(path, req.grid, req.aoi.slug, source="synthetic")
        raw.metadata = {"synthetic": True, "input": str(req.input_path)}
        raw.level = raw.level or L2A  # the synthetic towns model surface reflectance
        return raw
    with tempfile.TemporaryDirectory(prefix="synthetic-") as tmp:
        scenes = generate_synthetic(req.aoi, tmp, seed=req.seed, max_size_km=req.max_size_km)
        path = scenes.before if req.epoch == "before" else scenes.after
        raw = read_geotiff(path, req.grid, req.aoi.slug, source="synthetic")
        raw.metadata = {"seed": req.seed, "synthetic": True}
        raw.level = raw.level or L2A
        return raw


#: The reader of each of :data:`.defaults.SOURCES`.
READERS: dict[str, Callable[[SceneRequest], RawScene]] = {
    "stac": read_stac,
    "sentinelhub": read_sentinelhub,
    "local": read_user_download,
    "synthetic": read_synthetic,
}
