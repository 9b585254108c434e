"""``damagenet predict``: slide the model over a scene pair and write damage maps.

Windows of the checkpoint's patch size are taken every ``stride`` px (plus one flush with the
right and bottom edges), windows holding nodata in either epoch are skipped, and each pixel gets
the mean probability of the valid windows covering it (:mod:`contract.windows`). The loop is
read -> score -> accumulate -> write, one row strip at a time, so memory stays bounded whatever
the scene size; the files are written by :class:`damagenet.maps.MapWriters` (all or none).

Outputs (beside ``--out``): the float32 probability COG, the uint8 class COG with colour table
and category names, a QGIS ``.qml`` per raster, a styled GeoPackage of damaged windows, a JSON
summary and a quick-look PNG; with ``--labels`` an agreement raster and window-level metrics;
over an AOI the checkpoint was trained on, a split raster (train / val / test ground). Several
checkpoints (``--ckpt`` repeated) are an ensemble: the map is their mean probability and
``<stem>_uncertainty.tif`` their standard deviation, both averaged over windows alike.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from tqdm import tqdm

from contract.cli import bar_disabled
from contract.processing_level import warn_if_mismatch
from contract.scene_scale import check_scene_scale
from contract.windows import window_positions
from damagenet.data.ground import training_ground
from damagenet.data.pairs import file_sha256
from damagenet.data.scene_pair import ScenePair, open_scene_pair
from damagenet.errors import CheckpointError, DamagenetError, DamagenetUsageError
from damagenet.inference.ensemble import EnsembleScorer
from damagenet.inference.map_scoring import MapBlock, MapScoring, PatchScoring, PixelScoring
from damagenet.inference.pixel import PixelEnsemble, PixelScorer, prepare_pixel_model
from damagenet.inference.scoring import (
    PairScorer,
    optimise_for_inference,
    resolve_device,
    wants_compile,
)
from damagenet.inference.tiles import MAP_CELL, network_reach, plan_tiles, widest
from damagenet.maps.quicklook import TRUE_COLOUR, quicklook_shape, write_quicklook
from damagenet.maps.tally import MapRun, map_summary
from damagenet.maps.writers import MapGrid, MapWriters
from damagenet.models.checkpoint import checkpoint_hash, load_checkpoint, norm_of
from damagenet.models.registry import PIXEL, output_of

log = logging.getLogger(__name__)
Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]
Members = list[tuple[torch.nn.Module, dict[str, Any]]]


@dataclass
class PredictOptions:
    stride: int = 8
    batch_size: int = 256
    tta: bool = False
    threshold: str | float = "auto"
    device: str = "auto"
    #: the patch path's strips of scene rows, or the pixel path's tile, in MiB
    memory_mb: float = 256.0
    progress: bool = True
    compile: str = "auto"
    #: address of a dask.distributed scheduler to score windows on (None: in this process)
    dask_scheduler: str | None = None
    #: accept a checkpoint of an unfinished training run
    allow_provisional: bool = False


def _writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise DamagenetError(f"output folder {folder} cannot be written ({exc})") from exc


def _threshold(opts: PredictOptions, payloads: list[dict[str, Any]]) -> float:
    """``--threshold``, else the checkpoint's (an ensemble: the members' mean)."""
    value = (
        float(np.mean([p["threshold"]["value"] for p in payloads]))
        if opts.threshold == "auto"
        else float(opts.threshold)
    )
    if not 0 < value < 1:
        raise DamagenetUsageError(f"--threshold must be between 0 and 1, got {value}")
    return value


def _model_scorer(
    model: torch.nn.Module,
    payload: dict[str, Any],
    device: torch.device,
    opts: PredictOptions,
    size: int,
    windows: int,
) -> PairScorer:
    bands = payload["input"]["bands"]
    example = torch.zeros(2, len(bands), size, size)
    compile = wants_compile(opts.compile, device, windows * (8 if opts.tta else 1))
    fast = optimise_for_inference(model, device, compile, (example, example), opts.batch_size)
    return PairScorer(
        fast, norm_of(payload), device, opts.batch_size, opts.tta, bands, payload.get("calibration")
    )


def _load_members(ckpts: list[Path], device: torch.device, opts: PredictOptions) -> Members:
    """Every checkpoint's model and payload: one kind of model, and patch models of one size."""
    members: Members = [
        load_checkpoint(c, map_location=device, allow_provisional=opts.allow_provisional)
        for c in ckpts
    ]
    kinds = [output_of(payload["architecture"]) for _, payload in members]
    if len(set(kinds)) > 1:
        detail = ", ".join(f"{c}: {k} model" for c, k in zip(ckpts, kinds, strict=True))
        raise CheckpointError(
            f"ensemble checkpoints mix pixel and patch models ({detail}); "
            "pass checkpoints of one kind"
        )
    sizes = [int(payload["patch_size"]) for _, payload in members]
    if kinds[0] != PIXEL and len(set(sizes)) > 1:
        detail = ", ".join(f"{c}: {s} px" for c, s in zip(ckpts, sizes, strict=True))
        raise CheckpointError(
            f"ensemble checkpoints differ in patch size ({detail}); "
            "pass checkpoints trained on one patch size"
        )
    return members


def _is_pixel(members: Members) -> bool:
    return output_of(members[0][1]["architecture"]) == PIXEL


def _patch_scoring(
    members: Members,
    grid: MapGrid,
    device: torch.device,
    opts: PredictOptions,
    scorer: Scorer | None,
) -> PatchScoring:
    """The patch model (or an ensemble, or a stand-in ``scorer``) slid every ``--stride`` px."""
    size = int(members[0][1]["patch_size"])
    if scorer is None:
        windows = len(window_positions(grid.height, size, opts.stride, flush=True)) * len(
            window_positions(grid.width, size, opts.stride, flush=True)
        )
        scorers = [_model_scorer(m, p, device, opts, size, windows) for m, p in members]
        scorer = scorers[0] if len(scorers) == 1 else EnsembleScorer(scorers)
    return PatchScoring(
        scorer, size, opts.stride, grid.height, grid.width, opts.memory_mb, opts.dask_scheduler
    )


def _pixel_scoring(
    members: Members, grid: MapGrid, device: torch.device, opts: PredictOptions
) -> PixelScoring:
    """The pixel model (or an ensemble) over tiles as large as ``--memory-mb`` allows."""
    scorers = []
    for model, payload in members:
        fast = prepare_pixel_model(model, device)
        scorers.append(
            PixelScorer(
                fast,
                norm_of(payload),
                device,
                opts.tta,
                payload["input"]["bands"],
                payload.get("calibration"),
            )
        )
    reach = widest([network_reach(s.model, len(s.index), device) for s in scorers])
    plan = plan_tiles(grid.height, grid.width, reach, opts.memory_mb)
    scorer = scorers[0] if len(scorers) == 1 else PixelEnsemble(scorers)
    return PixelScoring(scorer, plan, opts.dask_scheduler)


def _ensemble_tags(ckpts: list[Path]) -> dict[str, Any]:
    """Each member of an ensemble by path and checkpoint hash (none for a single model)."""
    if len(ckpts) == 1:
        return {}
    tags: dict[str, Any] = {"ENSEMBLE_MEMBERS": len(ckpts)}
    for i, c in enumerate(ckpts, 1):
        tags[f"MEMBER_{i}"] = str(c)
        tags[f"MEMBER_{i}_CHECKPOINT_HASH"] = checkpoint_hash(c)
    return tags


def _ensemble_summary(
    ckpts: list[Path], payloads: list[dict[str, Any]], opts: PredictOptions
) -> dict[str, Any]:
    return {
        "checkpoint": [str(c) for c in ckpts],
        "checkpoint_sha256": [checkpoint_hash(c) for c in ckpts],
        "ensemble": {
            "members": [
                {
                    "checkpoint": str(c),
                    "checkpoint_sha256": checkpoint_hash(c),
                    "threshold": float(p["threshold"]["value"]),
                    "calibration": p.get("calibration"),
                }
                for c, p in zip(ckpts, payloads, strict=True)
            ],
            "probability": "mean of the members' (calibrated) probabilities",
            "uncertainty": "members' standard deviation (population), averaged over "
            "overlapping windows like the probability",
            "threshold_rule": "members' mean threshold"
            if opts.threshold == "auto"
            else "--threshold",
        },
    }


def _tags(
    scenes: ScenePair,
    labels: Path | None,
    ckpt: Path,
    scoring: MapScoring,
    threshold: float,
    opts: PredictOptions,
) -> dict[str, Any]:
    """Raster tags: the settings, and every input by path (as given) and content hash."""
    tags: dict[str, Any] = {
        **scoring.tags(),
        "TTA": opts.tta,
        "THRESHOLD": f"{threshold:.4f}",
    }
    for name, src in (
        ("CHECKPOINT", ckpt),
        ("BEFORE", scenes.before_source),
        ("AFTER", scenes.after_source),
        ("LABELS", labels),
    ):
        if src is not None:
            tags[name] = str(src)
            tags[f"{name}_SHA256"] = file_sha256(src)[:16] if Path(src).is_file() else "not a file"
    if scenes.aoi:
        tags["AOI"] = scenes.aoi
    return tags


def processing_levels(payloads: list[dict[str, Any]], scenes: ScenePair) -> dict[str, Any]:
    """The model's and the scenes' processing levels, warned about and recorded when they differ.

    The model's level comes from its checkpoint, the scenes' from their ``PROCESSING_LEVEL`` tags;
    an unknown level on either side is no mismatch.
    """
    models = sorted({lvl for p in payloads if (lvl := model_level(p)) is not None})
    model = models[0] if len(models) == 1 else None
    names = (str(scenes.before_source), str(scenes.after_source))
    mismatch = [
        warn_if_mismatch(model, level, name)
        for level, name in zip(scenes.levels, names, strict=True)
    ]
    return {
        "model": model if len(models) < 2 else models,
        "before": scenes.levels[0],
        "after": scenes.levels[1],
        "mismatch": any(mismatch),
    }


def model_level(payload: dict[str, Any]) -> str | None:
    """The processing level a checkpoint's training scenes had (None: not recorded); its model
    card shows the same value."""
    level = payload.get("processing_level")
    return None if level is None else str(level)


def predict_map(
    before: str | Path | Any,
    after: str | Path | Any,
    ckpt: str | Path | Sequence[str | Path],
    out: str | Path,
    options: PredictOptions | None = None,
    labels: str | Path | None = None,
    scorer: Scorer | None = None,
) -> dict[str, Any]:
    """Write the damage maps for one scene pair; return the summary.

    ``before`` and ``after`` are GeoTIFF paths or dask-backed ``xarray.DataArray`` scenes
    (bands B02, B03, B04, B08, as ``rioxarray.open_rasterio(..., chunks=...)`` gives them).
    ``ckpt`` is one checkpoint or several (an ensemble: mean probability, and its spread in
    ``<stem>_uncertainty.tif``). A pixel model's checkpoint is scored over tiles
    (:class:`~damagenet.inference.map_scoring.PixelScoring`), a patch model's by windows every
    ``stride`` px; ``scorer`` stands in for a patch model in tests.
    """
    opts = options or PredictOptions()
    ckpts = [Path(c) for c in ([ckpt] if isinstance(ckpt, str | Path) else ckpt)]
    out, labels = Path(out), Path(labels) if labels else None
    if opts.stride < 1:
        raise DamagenetUsageError("--stride must be at least 1")
    job = _prepare(before, after, ckpts, out, labels, opts, scorer)
    summary = _write_maps(job, out, labels, opts)
    _log_summary(summary, job.scenes)
    return summary


@dataclass
class _Job:
    """What one map is drawn from: the checkpoints, the scene pair and how it is scored."""

    ckpts: list[Path]
    payloads: list[dict[str, Any]]
    pixel: bool
    scenes: ScenePair
    threshold: float
    scoring: MapScoring


def _prepare(
    before: str | Path | Any,
    after: str | Path | Any,
    ckpts: list[Path],
    out: Path,
    labels: Path | None,
    opts: PredictOptions,
    scorer: Scorer | None,
) -> _Job:
    """Checks, the models and the scenes, before any output is opened."""
    device = resolve_device(opts.device)
    for scene in (before, after):
        if isinstance(scene, str | Path):  # a dask-backed xarray scene is checked by its maker
            check_scene_scale(scene)
    members = _load_members(ckpts, device, opts)
    payloads = [payload for _, payload in members]
    pixel = scorer is None and _is_pixel(members)
    size = MAP_CELL if pixel else int(payloads[0]["patch_size"])
    scenes = open_scene_pair(before, after, labels, size, opts.dask_scheduler is not None)
    threshold = _threshold(opts, payloads)
    _writable(out.parent)
    scoring: MapScoring = (
        _pixel_scoring(members, scenes.grid, device, opts)
        if pixel
        else _patch_scoring(members, scenes.grid, device, opts, scorer)
    )
    return _Job(ckpts, payloads, pixel, scenes, threshold, scoring)


def _write_maps(job: _Job, out: Path, labels: Path | None, opts: PredictOptions) -> dict[str, Any]:
    """Score strip by strip into the staged map set; the summary and quick-look complete it."""
    scenes, scoring, threshold, ckpts = job.scenes, job.scoring, job.threshold, job.ckpts
    levels = processing_levels(job.payloads, scenes)
    ground, ground_note = training_ground(job.payloads[0], scenes.aoi)
    tags = {**_tags(scenes, labels, ckpts[0], scoring, threshold, opts), **_ensemble_tags(ckpts)}
    with (
        MapWriters(
            out,
            scenes.grid,
            tags,
            threshold,
            scoring.size,
            agreement=labels is not None,
            split=ground is not None,
            uncertainty=scoring.layers > 1,
        ) as maps,
        rasterio.open(labels) if labels else contextlib.nullcontext() as lab_src,
        rasterio.Env(GDAL_CACHEMAX=max(8, int(opts.memory_mb // 4))),
    ):
        run = MapRun(scenes, scoring.size, scoring.stride, threshold, scoring.cols, lab_src, ground)
        run.tally.windows = len(scoring.rows) * len(scoring.cols)
        t0 = time.perf_counter()
        _draw(run, maps, scoring.blocks(scenes), opts.progress, len(scoring.rows))
        seconds = time.perf_counter() - t0
        summary = map_summary(run, maps, ckpts[0], opts.tta, seconds, ground_note)
        summary["processing_level"] = levels
        if job.pixel:
            summary["model"] = _pixel_note(scoring)
        if len(ckpts) > 1:
            summary.update(_ensemble_summary(ckpts, job.payloads, opts))
        maps.finish(summary)
        rgb = scenes.after_rgb(quicklook_shape(maps.staged("prob")), TRUE_COLOUR)
        write_quicklook(
            maps.staged("prob"),
            rgb,
            maps.staged("quicklook"),
            threshold,
            labels,
            title=f"{scenes.aoi or out.stem}: damage probability",
        )
    return summary


def _pixel_note(scoring: MapScoring) -> dict[str, Any]:
    """How a pixel model's map was drawn, for its summary."""
    return {
        "kind": "pixel",
        "tiles": {k.lower(): v for k, v in scoring.tags().items()},
        "windows": f"cells of {MAP_CELL} px on the patch maps' grid, each its pixels' "
        "maximum (the GeoPackage and the window metrics); stride and patch size are the cell's",
    }


def _draw(
    run: MapRun, maps: MapWriters, blocks: Iterator[MapBlock], progress: bool, n_rows: int
) -> None:
    """Tally each block's windows and write the rows it finishes."""
    with tqdm(total=n_rows, desc="windows", unit="row", disable=bar_disabled(progress)) as bar:
        for block in blocks:
            lab = run.read_labels(block.strip, block.next_top)
            run.count_windows(block.strip, block.windows, lab, maps)
            if len(block.sums):
                maps.write_rows(
                    block.row0,
                    run.finished_rows(block.row0, block.sums, block.counts, lab, block.strip.top),
                )
            bar.update(block.strip.last - block.strip.first)


def _log_summary(s: dict[str, Any], scenes: ScenePair) -> None:
    log.info(
        "%s: %d of %d windows scored (%d skipped for nodata) in %.1f s; damaged %.3f km2 "
        "(%.1f%% of the valid area) at threshold %.3f -> %s",
        scenes.after_source,
        s["windows_scored"],
        s["windows"],
        s["windows_skipped_nodata"],
        s["seconds"],
        s["damaged_area_km2"],
        100 * s["damaged_share_of_valid"],
        s["threshold"],
        s["outputs"]["prob"],
    )
    if s["training_ground"]["status"] != "unknown":
        log.info("%s", s["training_ground"]["note"])
