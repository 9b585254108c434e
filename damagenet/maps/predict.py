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
from contract.scene_scale import check_scene_scale
from contract.windows import (
    OverlapAccumulator,
    Strip,
    rows_per_strip,
    window_positions,
)
from damagenet.data.ground import training_ground
from damagenet.data.pairs import Normalisation, file_sha256
from damagenet.data.scene_pair import ScenePair, open_scene_pair, strip_probabilities
from damagenet.errors import CheckpointError, DamagenetError, DamagenetUsageError
from damagenet.inference.ensemble import EnsembleScorer
from damagenet.inference.scoring import (
    PairScorer,
    optimise_for_inference,
    resolve_device,
    wants_compile,
)
from damagenet.maps.quicklook import TRUE_COLOUR, quicklook_shape, write_quicklook
from damagenet.maps.tally import MapRun, map_summary
from damagenet.maps.writers import MapGrid, MapWriters
from damagenet.models.checkpoint import checkpoint_hash, load_checkpoint

log = logging.getLogger(__name__)
Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]
#: bytes per scene pixel of one strip: two uint16 scenes, window copies, float64 accumulators
STRIP_BYTES_PER_PX = 2 * (4 * 2 * 2 + 8 * 3)


@dataclass
class PredictOptions:
    stride: int = 8
    batch_size: int = 256
    tta: bool = False
    threshold: str | float = "auto"
    device: str = "auto"
    memory_mb: float = 256.0
    progress: bool = True
    compile: str = "auto"
    #: address of a dask.distributed scheduler to score windows on (None: in this process)
    dask_scheduler: str | None = None
    #: accept a checkpoint of an unfinished training run
    allow_provisional: bool = False


def model_input(payload: dict[str, Any]) -> tuple[list[str], Normalisation]:
    """The band order the network expects and its normalisation, from a checkpoint payload.

    Checkpoints with an ``input`` record (imported models) state both there; older ones carry
    ``bands`` and ``normalisation``.
    """
    spec = payload.get("input")
    if spec:
        return list(spec["bands"]), Normalisation(
            mean=list(spec["mean"]), std=list(spec["std"]), scale=float(spec["scale"])
        )
    n = payload["normalisation"]
    return list(payload["bands"]), Normalisation(
        mean=list(n["mean"]), std=list(n["std"]), scale=float(n["scale"])
    )


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
    bands, norm = model_input(payload)
    example = torch.zeros(2, len(bands), size, size)
    compile = wants_compile(opts.compile, device, windows * (8 if opts.tta else 1))
    fast = optimise_for_inference(model, device, compile, (example, example), opts.batch_size)
    return PairScorer(
        fast, norm, device, opts.batch_size, opts.tta, bands, payload.get("calibration")
    )


def _load_members(
    ckpts: list[Path], device: torch.device, opts: PredictOptions
) -> tuple[list[tuple[torch.nn.Module, dict[str, Any]]], int]:
    """Every checkpoint's model and payload, and their common patch size (refused if not)."""
    members = [
        load_checkpoint(c, map_location=device, allow_provisional=opts.allow_provisional)
        for c in ckpts
    ]
    sizes = [int(payload["patch_size"]) for _, payload in members]
    if len(set(sizes)) > 1:
        detail = ", ".join(f"{c}: {s} px" for c, s in zip(ckpts, sizes, strict=True))
        raise CheckpointError(
            f"ensemble checkpoints differ in patch size ({detail}); "
            "pass checkpoints trained on one patch size"
        )
    return members, sizes[0]


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
    size: int,
    threshold: float,
    opts: PredictOptions,
) -> dict[str, Any]:
    """Raster tags: the settings, and every input by path (as given) and content hash."""
    tags: dict[str, Any] = {
        "PATCH_SIZE": size,
        "STRIDE": opts.stride,
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
    ``<stem>_uncertainty.tif``).
    """
    opts = options or PredictOptions()
    ckpts = [Path(c) for c in ([ckpt] if isinstance(ckpt, str | Path) else ckpt)]
    out, labels = Path(out), Path(labels) if labels else None
    if opts.stride < 1:
        raise DamagenetUsageError("--stride must be at least 1")
    device = resolve_device(opts.device)
    for scene in (before, after):
        if isinstance(scene, str | Path):  # a dask-backed xarray scene is checked by its maker
            check_scene_scale(scene)
    members, size = _load_members(ckpts, device, opts)
    payloads = [payload for _, payload in members]
    scenes = open_scene_pair(before, after, labels, size, opts.dask_scheduler is not None)
    threshold = _threshold(opts, payloads)
    _writable(out.parent)
    grid = scenes.grid
    rpos = window_positions(grid.height, size, opts.stride, flush=True)
    cpos = window_positions(grid.width, size, opts.stride, flush=True)
    scorers = (
        [_model_scorer(m, p, device, opts, size, len(rpos) * len(cpos)) for m, p in members]
        if scorer is None
        else [scorer]
    )
    scorer = scorers[0] if len(scorers) == 1 else EnsembleScorer(scorers)
    layers = getattr(scorer, "layers", 1)
    ground, ground_note = training_ground(payloads[0], scenes.aoi)
    tags = {**_tags(scenes, labels, ckpts[0], size, threshold, opts), **_ensemble_tags(ckpts)}
    with (
        MapWriters(
            out,
            grid,
            tags,
            threshold,
            size,
            agreement=labels is not None,
            split=ground is not None,
            uncertainty=layers > 1,
        ) as maps,
        rasterio.open(labels) if labels else contextlib.nullcontext() as lab_src,
        rasterio.Env(GDAL_CACHEMAX=max(8, int(opts.memory_mb // 4))),
    ):
        run = MapRun(scenes, size, opts.stride, threshold, cpos, lab_src, ground)
        run.tally.windows = len(rpos) * len(cpos)
        t0 = time.perf_counter()
        _draw(
            run,
            maps,
            strip_probabilities(
                scenes, rpos, cpos, size, scorer, _per_strip(grid, size, opts), opts.dask_scheduler
            ),
            opts.progress,
            len(rpos),
            layers,
        )
        seconds = time.perf_counter() - t0
        summary = map_summary(run, maps, ckpts[0], opts.tta, seconds, ground_note)
        if len(ckpts) > 1:
            summary.update(_ensemble_summary(ckpts, payloads, opts))
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
    _log_summary(summary, scenes)
    return summary


def _per_strip(grid: MapGrid, size: int, opts: PredictOptions) -> int:
    return rows_per_strip(grid.width, size, opts.stride, opts.memory_mb, STRIP_BYTES_PER_PX)


def _draw(
    run: MapRun,
    maps: MapWriters,
    strips: Iterator[tuple[Strip, int, np.ndarray]],
    progress: bool,
    n_rows: int,
    layers: int = 1,
) -> None:
    """Accumulate each scored strip and write the rows it finishes.

    An ensemble's strips carry (mean, std) per window; each layer has its own accumulator over
    the same windows, so the uncertainty is averaged exactly like the probability.
    """
    accs = [OverlapAccumulator(run.scenes.grid.width, run.cols, run.size) for _ in range(layers)]
    with tqdm(total=n_rows, desc="windows", unit="row", disable=bar_disabled(progress)) as bar:
        for strip, next_top, scores in strips:
            values = [scores] if layers == 1 else list(np.moveaxis(scores, -1, 0))
            lab = run.read_labels(strip, next_top)
            run.count_windows(strip, values[0], lab, maps)
            valid = ~np.isnan(values[0])
            added = [
                acc.add(strip, np.where(valid, v, 0.0), valid.astype(np.float64), next_top)
                for acc, v in zip(accs, values, strict=True)
            ]
            row0, sums, counts = added[0]
            if layers > 1:
                sums = np.stack([a[1] for a in added], axis=-1)
            if len(sums):
                maps.write_rows(row0, run.finished_rows(row0, sums, counts, lab, strip.top))
            bar.update(strip.last - strip.first)


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
