"""``damagenet predict``: slide the model over a scene pair and write damage maps.

Windows of the checkpoint's patch size are taken every ``stride`` px (plus one flush with the
right and bottom edges), windows holding nodata in either epoch are skipped, and each pixel gets
the mean probability of the valid windows covering it (:mod:`contract.windows`). The loop is
read -> score -> accumulate -> write, one row strip at a time, so memory stays bounded whatever
the scene size; the files are written by :class:`damagenet.maps.MapWriters` (all or none).

Outputs (beside ``--out``): the float32 probability COG, the uint8 class COG with colour table
and category names, a QGIS ``.qml`` per raster, a styled GeoPackage of damaged windows, a JSON
summary and a quick-look PNG; with ``--labels`` an agreement raster and window-level metrics;
over an AOI the checkpoint was trained on, a split raster (train / val / test ground).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.windows import Window
from tqdm import tqdm

from contract.labels import DAMAGE, UNKNOWN
from contract.windows import (
    OverlapAccumulator,
    Strip,
    rows_per_strip,
    window_any,
    window_positions,
)
from damagenet.checkpoint import load_checkpoint
from damagenet.data import Normalisation, file_sha256
from damagenet.errors import DamagenetError, DamagenetUsageError
from damagenet.ground import PART_NAMES, TEST, UNSEEN, TrainingGround, training_ground
from damagenet.ground import window_parts as ground_window_parts
from damagenet.inference import (
    COMPILE_CHOICES,
    PairScorer,
    optimise_for_inference,
    resolve_device,
)
from damagenet.maps import CLASS_NODATA, PROB_NODATA, MapGrid, MapWriters, output_paths
from damagenet.metrics import ranking_metrics, report
from damagenet.quicklook import TRUE_COLOUR, quicklook_shape, write_quicklook
from damagenet.scene_pair import ScenePair, open_scene_pair, strip_probabilities

log = logging.getLogger(__name__)
Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]
#: bytes per scene pixel of one strip: two uint16 scenes, window copies, float64 accumulators
STRIP_BYTES_PER_PX = 2 * (4 * 2 * 2 + 8 * 3)

__all__ = ["PredictOptions", "output_paths", "predict_map", "model_input", "PROB_NODATA"]


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


def model_input(payload: dict[str, Any]) -> tuple[list[str], Normalisation]:
    """The band order the network expects and its normalisation, from a checkpoint payload.

    Checkpoints with an ``input`` record (imported models) state both there; older ones carry
    ``bands`` and ``normalisation``.
    """
    spec = payload.get("input")
    if spec:
        return list(spec["bands"]), Normalisation(mean=list(spec["mean"]),
                                                  std=list(spec["std"]),
                                                  scale=float(spec["scale"]))
    n = payload["normalisation"]
    return list(payload["bands"]), Normalisation(mean=list(n["mean"]), std=list(n["std"]),
                                                 scale=float(n["scale"]))


def _writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise DamagenetError(f"output folder {folder} cannot be written ({exc})") from exc


def _threshold(opts: PredictOptions, payload: dict[str, Any]) -> float:
    value = float(payload["threshold"]["value"]) if opts.threshold == "auto" \
        else float(opts.threshold)
    if not 0 < value < 1:
        raise DamagenetUsageError(f"--threshold must be between 0 and 1, got {value}")
    return value


def _model_scorer(model: torch.nn.Module, payload: dict[str, Any], device: torch.device,
                  opts: PredictOptions, size: int) -> PairScorer:
    bands, norm = model_input(payload)
    example = torch.zeros(2, len(bands), size, size)
    fast = optimise_for_inference(model, device, opts.compile, (example, example))
    return PairScorer(fast, norm, device, opts.batch_size, opts.tta, bands)


def _source_tag(path: Path | str, hashed: bool) -> dict[str, str]:
    return {"": str(path), "_SHA256": file_sha256(path)[:16] if hashed else "not a file"}


def _tags(scenes: ScenePair, labels: Path | None, ckpt: Path, size: int, threshold: float,
          opts: PredictOptions) -> dict[str, Any]:
    """Raster tags: the settings, and every input by path (as given) and content hash."""
    tags: dict[str, Any] = {"PATCH_SIZE": size, "STRIDE": opts.stride, "TTA": opts.tta,
                            "THRESHOLD": f"{threshold:.4f}"}
    for name, src in (("CHECKPOINT", ckpt), ("BEFORE", scenes.before_source),
                      ("AFTER", scenes.after_source), ("LABELS", labels)):
        if src is not None:
            for suffix, value in _source_tag(src, Path(str(src)).is_file()).items():
                tags[name + suffix] = value
    if scenes.aoi:
        tags["AOI"] = scenes.aoi
    return tags


@dataclass
class Tally:
    """What the map holds: windows, pixels, agreement per part and window-level labels."""

    windows: int = 0
    scored: int = 0
    skipped_nodata: int = 0
    valid_px: int = 0
    damage_px: int = 0
    damaged_patches: int = 0
    #: agreement pixels [part, code]: part 0-3 (see damagenet.ground), code TN, TP, FP, FN
    agreement: np.ndarray = field(default_factory=lambda: np.zeros((4, 4), dtype=np.int64))
    probs: list[np.ndarray] = field(default_factory=list)
    truth: list[np.ndarray] = field(default_factory=list)
    parts: list[np.ndarray] = field(default_factory=list)


@dataclass
class MapRun:
    """One map in progress: its grid, settings and optional labels and training ground."""

    scenes: ScenePair
    size: int
    stride: int
    threshold: float
    cols: np.ndarray
    labels: rasterio.DatasetReader | None
    ground: TrainingGround | None
    tally: Tally = field(default_factory=Tally)

    def read_labels(self, strip: Strip, next_top: int) -> np.ndarray | None:
        """Label rows of the strip and of its finished rows, read once."""
        if self.labels is None:
            return None
        bottom = max(strip.bottom, next_top)
        return self.labels.read(1, window=Window(0, strip.top, self.scenes.grid.width,
                                                 bottom - strip.top))

    def split_rows(self, row0: int, n_rows: int) -> np.ndarray | None:
        if self.ground is None:
            return None
        return self.ground.rows(row0, n_rows, self.scenes.grid.width)

    def count_windows(self, strip: Strip, prob: np.ndarray, lab: np.ndarray | None,
                      maps: MapWriters) -> None:
        """Tally one strip's windows; damaged ones go to the GeoPackage."""
        t, valid = self.tally, ~np.isnan(prob)
        t.scored += int(valid.sum())
        t.skipped_nodata += int((~valid).sum())
        ri, ci = np.nonzero(valid)
        p = prob[ri, ci]
        hot = p >= self.threshold
        t.damaged_patches += int(hot.sum())
        maps.add_patches(strip.rows[ri[hot]], self.cols[ci[hot]], p[hot])
        if lab is None:
            return
        rows = strip.local_rows
        unknown = window_any(lab == UNKNOWN, rows, self.cols, self.size)[ri, ci]
        damage = window_any(lab == DAMAGE, rows, self.cols, self.size)[ri, ci]
        split = self.split_rows(strip.top, lab.shape[0])
        part = ground_window_parts(split, rows, self.cols, self.size)[ri, ci] \
            if split is not None else np.full(len(ri), UNSEEN, dtype=np.uint8)
        t.probs.append(p[~unknown])
        t.truth.append(damage[~unknown].astype(np.int64))
        t.parts.append(part[~unknown])

    def finished_rows(self, row0: int, sums: np.ndarray, counts: np.ndarray,
                      lab: np.ndarray | None, lab_top: int) -> dict[str, np.ndarray]:
        """The raster blocks of finished rows, tallied."""
        covered = counts > 0
        prob = np.where(covered, sums / np.maximum(counts, 1), PROB_NODATA).astype(np.float32)
        cls = np.where(covered, (prob >= self.threshold).astype(np.uint8),
                       CLASS_NODATA).astype(np.uint8)
        self.tally.valid_px += int(covered.sum())
        self.tally.damage_px += int((cls == 1).sum())
        blocks = {"prob": prob, "class": cls}
        split = self.split_rows(row0, len(sums))
        if split is not None:
            blocks["split"] = np.where(covered, split, CLASS_NODATA).astype(np.uint8)
        if lab is not None:
            rows = lab[row0 - lab_top: row0 - lab_top + len(sums)]
            blocks["agreement"] = self._agreement(rows, covered, cls, split)
        return blocks

    def _agreement(self, lab: np.ndarray, covered: np.ndarray, cls: np.ndarray,
                   split: np.ndarray | None) -> np.ndarray:
        known = covered & (lab != UNKNOWN)
        agree = np.full(cls.shape, CLASS_NODATA, dtype=np.uint8)
        truth, pred = lab == DAMAGE, cls == 1
        part = split if split is not None else np.zeros(cls.shape, dtype=np.uint8)
        for code, m in ((0, ~truth & ~pred), (1, truth & pred), (2, ~truth & pred),
                        (3, truth & ~pred)):
            agree[known & m] = code
            self.tally.agreement[:, code] += np.bincount(part[known & m], minlength=4)[:4]
        return agree


def predict_map(before: str | Path | Any, after: str | Path | Any, ckpt: str | Path,
                out: str | Path, options: PredictOptions | None = None,
                labels: str | Path | None = None, scorer: Scorer | None = None
                ) -> dict[str, Any]:
    """Write the damage maps for one scene pair; return the summary.

    ``before`` and ``after`` are GeoTIFF paths or dask-backed ``xarray.DataArray`` scenes
    (bands B02, B03, B04, B08, as ``rioxarray.open_rasterio(..., chunks=...)`` gives them).
    """
    opts = options or PredictOptions()
    out, ckpt = Path(out), Path(ckpt)
    labels = Path(labels) if labels else None
    if opts.stride < 1:
        raise DamagenetUsageError("--stride must be at least 1")
    device = resolve_device(opts.device)
    model, payload = load_checkpoint(ckpt, map_location=device)
    size = int(payload["patch_size"])
    scenes = open_scene_pair(before, after, labels, size, opts.dask_scheduler is not None)
    threshold = _threshold(opts, payload)
    _writable(out.parent)
    scorer = scorer or _model_scorer(model, payload, device, opts, size)
    ground, ground_note = training_ground(payload, scenes.aoi)
    grid = scenes.grid
    rpos = window_positions(grid.height, size, opts.stride, flush=True)
    cpos = window_positions(grid.width, size, opts.stride, flush=True)
    with MapWriters(out, grid, _tags(scenes, labels, ckpt, size, threshold, opts), threshold,
                    size, agreement=labels is not None, split=ground is not None) as maps, \
            (rasterio.open(labels) if labels else contextlib.nullcontext()) as lab_src, \
            rasterio.Env(GDAL_CACHEMAX=max(8, int(opts.memory_mb // 4))):
        run = MapRun(scenes, size, opts.stride, threshold, cpos, lab_src, ground)
        run.tally.windows = len(rpos) * len(cpos)
        t0 = time.perf_counter()
        _draw(run, maps, strip_probabilities(scenes, rpos, cpos, size, scorer,
                                             _per_strip(grid, size, opts), opts.dask_scheduler),
              opts.progress, len(rpos))
        seconds = time.perf_counter() - t0
        summary = _summary(run, maps, ckpt, opts, seconds, ground_note)
        maps.finish(summary)
        rgb = scenes.after_rgb(quicklook_shape(maps.staged("prob")), TRUE_COLOUR)
        write_quicklook(maps.staged("prob"), rgb, maps.staged("quicklook"), threshold, labels,
                        title=f"{scenes.aoi or out.stem}: damage probability")
    _log_summary(summary, scenes)
    return summary


def _per_strip(grid: MapGrid, size: int, opts: PredictOptions) -> int:
    return rows_per_strip(grid.width, size, opts.stride, opts.memory_mb, STRIP_BYTES_PER_PX)


def _draw(run: MapRun, maps: MapWriters, strips: Iterator[tuple[Strip, int, np.ndarray]],
          progress: bool, n_rows: int) -> None:
    """Accumulate each scored strip and write the rows it finishes."""
    acc = OverlapAccumulator(run.scenes.grid.width, run.cols, run.size)
    with tqdm(total=n_rows, desc="windows", unit="row", disable=not progress) as bar:
        for strip, next_top, prob in strips:
            lab = run.read_labels(strip, next_top)
            run.count_windows(strip, prob, lab, maps)
            valid = ~np.isnan(prob)
            row0, sums, counts = acc.add(strip, np.where(valid, prob, 0.0),
                                         valid.astype(np.float64), next_top)
            if len(sums):
                maps.write_rows(row0, run.finished_rows(row0, sums, counts, lab, strip.top))
            bar.update(strip.last - strip.first)


def _window_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any] | None:
    """Window-level metrics at the map's threshold; None unless both classes are present."""
    if len(y) == 0 or len(np.unique(y)) < 2:
        return None
    rep = report(y, p, threshold)
    return {"windows": int(len(y)), "damaged": int(y.sum()), **ranking_metrics(y, p),
            "accuracy": rep["accuracy"], "damage_precision": rep["Damage"]["precision"],
            "damage_recall": rep["Damage"]["recall"], "damage_f1": rep["Damage"]["f1-score"],
            "macro_f1": rep["macro_f1"]}


def _agreement_dict(counts: np.ndarray) -> dict[str, int]:
    tn, tp, fp, fn = (int(v) for v in counts)
    return {"true_negative": tn, "true_positive": tp, "false_positive": fp,
            "false_negative": fn}


def _label_metrics(run: MapRun) -> dict[str, Any]:
    """Metrics against labels: on held-out ground only, other parts apart and labelled."""
    t = run.tally
    y = np.concatenate(t.truth) if t.truth else np.zeros(0, np.int64)
    p = np.concatenate(t.probs) if t.probs else np.zeros(0)
    part = np.concatenate(t.parts) if t.parts else np.zeros(0, np.uint8)
    out: dict[str, Any] = {"agreement_pixels": _agreement_dict(t.agreement.sum(axis=0))}
    if run.ground is None:
        out["patch_metrics"] = _window_metrics(y, p, run.threshold)
        out["patch_metrics_ground"] = "all labelled windows (none is training ground "\
            "recorded in the checkpoint for this AOI)"
        return out
    held = part == TEST
    out["patch_metrics"] = _window_metrics(y[held], p[held], run.threshold)
    out["patch_metrics_ground"] = "test part only: windows touching no train or validation "\
        "patch of this AOI"
    out["patch_metrics_by_part"] = {
        PART_NAMES[c] + (" (seen in training, optimistic)" if c in (1, 2) else ""):
            _window_metrics(y[part == c], p[part == c], run.threshold) for c in PART_NAMES}
    out["agreement_pixels_by_part"] = {PART_NAMES[c]: _agreement_dict(t.agreement[c])
                                       for c in PART_NAMES}
    return out


def _summary(run: MapRun, maps: MapWriters, ckpt: Path, opts: PredictOptions, seconds: float,
             ground_note: dict[str, Any]) -> dict[str, Any]:
    t, grid = run.tally, run.scenes.grid
    tr = grid.transform
    px_km2 = abs(tr.a * tr.e) / 1e6 if grid.crs.is_projected else math.nan
    outputs = [k for k in maps.paths if k not in ("agreement", "split")] + \
        [layer.key for layer in maps.layers if layer.key in ("agreement", "split")]
    summary: dict[str, Any] = {
        "before": str(run.scenes.before_source), "after": str(run.scenes.after_source),
        "aoi": run.scenes.aoi, "checkpoint": str(ckpt),
        "checkpoint_sha256": file_sha256(ckpt)[:16], "threshold": run.threshold,
        "stride": run.stride, "patch_size": run.size, "tta": opts.tta,
        "windows": t.windows, "windows_scored": t.scored,
        "windows_skipped_nodata": t.skipped_nodata,
        "valid_area_km2": t.valid_px * px_km2, "damaged_area_km2": t.damage_px * px_km2,
        "damaged_share_of_valid": t.damage_px / max(t.valid_px, 1),
        "damaged_patches": t.damaged_patches, "seconds": seconds,
        "km2_per_second": grid.height * grid.width * px_km2 / max(seconds, 1e-9),
        "training_ground": ground_note,
        "outputs": {k: str(maps.paths[k]) for k in sorted(outputs, key=list(maps.paths).index)},
    }
    if run.labels is not None:
        summary.update(_label_metrics(run))
    return summary


def _log_summary(s: dict[str, Any], scenes: ScenePair) -> None:
    log.info("%s: %d of %d windows scored (%d skipped for nodata) in %.1f s; damaged %.3f km2 "
             "(%.1f%% of the valid area) at threshold %.3f -> %s", scenes.after_source,
             s["windows_scored"], s["windows"], s["windows_skipped_nodata"], s["seconds"],
             s["damaged_area_km2"], 100 * s["damaged_share_of_valid"], s["threshold"],
             s["outputs"]["prob"])
    if s["training_ground"]["status"] != "unknown":
        log.info("%s", s["training_ground"]["note"])


def _run(args: argparse.Namespace) -> int:
    threshold = args.threshold if args.threshold == "auto" else float(args.threshold)
    predict_map(args.before, args.after, args.ckpt, args.out,
                PredictOptions(stride=args.stride, batch_size=args.batch_size, tta=args.tta,
                               threshold=threshold, device=args.device,
                               memory_mb=args.memory_mb, progress=not args.quiet,
                               compile=args.compile, dask_scheduler=args.dask_scheduler),
                labels=args.labels)
    return 0


def _threshold_arg(text: str) -> str:
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be 'auto' or a number in (0, 1), got {text!r}")
    return text


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict", help="write damage maps for a before/after scene pair",
        description="Slide the model over an aligned scene pair and write a float32 "
                    "probability COG (<aoi>_damage_prob.tif), a uint8 class COG with colour "
                    "table (<aoi>_damage_class.tif), QGIS styles (.qml), a styled GeoPackage "
                    "of damaged patches, a JSON summary and a quick-look PNG; with --labels "
                    "also an agreement raster and patch-level metrics; over an AOI the model "
                    "was trained on, a split raster (<aoi>_damage_split.tif).")
    p.add_argument("--before", required=True, help="before scene GeoTIFF (B02, B03, B04, B08)")
    p.add_argument("--after", required=True, help="after scene GeoTIFF on the same grid")
    p.add_argument("--ckpt", required=True, help="checkpoint from 'damagenet train'")
    p.add_argument("--out", required=True,
                   help="probability GeoTIFF path, e.g. results/maps/bucha_damage_prob.tif; "
                        "the other outputs go beside it")
    p.add_argument("--stride", type=int, default=8,
                   help="step between windows in px; smaller = smoother, slower (%(default)s)")
    p.add_argument("--batch-size", type=int, default=256,
                   help="windows per model call (%(default)s)")
    p.add_argument("--tta", action="store_true",
                   help="average over the 8 symmetries of the square (8x slower)")
    p.add_argument("--threshold", default="auto", type=_threshold_arg,
                   help="probability for the class map: 'auto' = the checkpoint's "
                        "validation-chosen threshold, or a number in (0, 1) (%(default)s)")
    p.add_argument("--labels", help="label GeoTIFF (1/0/255) on the same grid for an "
                                    "agreement raster and patch-level metrics")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (%(default)s)")
    p.add_argument("--compile", default="auto", choices=COMPILE_CHOICES,
                   help="torch.compile the model: auto = on CUDA only, where it pays; falls "
                        "back to the uncompiled model when no compiler works (%(default)s)")
    p.add_argument("--memory-mb", type=float, default=256.0,
                   help="memory budget for reading scenes, in MiB (%(default)s)")
    p.add_argument("--dask-scheduler", metavar="ADDRESS",
                   help="score windows as tasks on this dask.distributed scheduler (e.g. "
                        "tcp://10.0.0.5:8786); the scenes are read there in chunks")
    p.set_defaults(func=_run)
