"""``damagenet predict``: slide the model over a scene pair and write damage maps.

Windows of the checkpoint's patch size are taken every ``stride`` px (plus one flush with the
right and bottom edges), windows holding nodata in either epoch are skipped, and each pixel gets
the mean probability of the valid windows covering it. The scenes are read in row strips sized
to a memory budget; overlapping windows are summed per strip with sparse coverage matrices
(pixel = rows-coverage x window grid x columns-coverage), and finished rows are streamed to
disk, so memory stays bounded whatever the scene size.

Outputs (beside ``--out``, all written to a temporary folder and moved in place at the end):
the float32 probability COG, the uint8 class COG with colour table and category names, a QGIS
``.qml`` per raster, a GeoPackage of damaged windows, a JSON summary, and with ``--labels`` an
agreement raster and patch-level metrics.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyogrio
import rasterio
import scipy.sparse as sp
import torch
from numpy.lib.stride_tricks import sliding_window_view
from rasterio.windows import Window
from shapely.geometry import box
from tqdm import tqdm

from contract.options import threshold_or_auto
from damagenet.checkpoint import load_checkpoint, norm_of
from damagenet.data import symmetry
from damagenet.errors import DamagenetError
from damagenet.inference import resolve_device
from damagenet.maps import RowWriter
from damagenet.metrics import ranking_metrics, report
from damagenet.scene_checks import check_scene_scale
from damagenet.styles import (
    AGREEMENT_COLOURS,
    AGREEMENT_LABELS,
    CLASS_COLOURS,
    CLASS_LABELS,
    paletted_qml,
    probability_qml,
    write_qml,
)

log = logging.getLogger(__name__)
PROB_NODATA = -9999.0
CLASS_NODATA = 255
Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class PredictOptions:
    stride: int = 8
    batch_size: int = 256
    tta: bool = False
    threshold: str | float = "auto"
    device: str = "auto"
    memory_mb: float = 256.0
    progress: bool = True


def output_paths(prob: str | Path) -> dict[str, Path]:
    """Sibling outputs of ``<aoi>_damage_prob.tif``."""
    prob = Path(prob)
    stem = prob.stem[: -len("_prob")] if prob.stem.endswith("_prob") else prob.stem
    return {"prob": prob, "class": prob.with_name(f"{stem}_class.tif"),
            "agreement": prob.with_name(f"{stem}_agreement.tif"),
            "patches": prob.with_name(f"{stem}_patches.gpkg"),
            "summary": prob.with_name(f"{stem}_summary.json")}


def window_positions(length: int, size: int, stride: int) -> np.ndarray:
    """Window origins every ``stride`` px, plus one flush with the far edge."""
    pos = list(range(0, length - size + 1, stride))
    if pos[-1] != length - size:
        pos.append(length - size)
    return np.array(pos)


def coverage(positions: np.ndarray, size: int, length: int) -> sp.csr_matrix:
    """(length x windows) 0/1 matrix: pixel i is covered by window j."""
    rows = (positions[:, None] + np.arange(size)[None, :]).ravel()
    cols = np.repeat(np.arange(len(positions)), size)
    return sp.csr_matrix((np.ones(len(rows), dtype=np.float64), (rows, cols)),
                         shape=(length, len(positions)))


class ModelScorer:
    """Probabilities for batches of raw DN windows from a checkpoint (optionally with TTA)."""

    def __init__(self, model, norm, device: torch.device, batch_size: int, tta: bool) -> None:
        self.model, self.norm, self.device = model.to(device).eval(), norm, device
        self.batch_size, self.tta = batch_size, tta

    @torch.no_grad()
    def __call__(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        out = []
        syms = range(8) if self.tta else (0,)
        for start in range(0, len(before), self.batch_size):
            b = self.norm.apply(before[start:start + self.batch_size]).to(self.device)
            a = self.norm.apply(after[start:start + self.batch_size]).to(self.device)
            prob = torch.zeros(len(b), device=self.device)
            for s in syms:
                with torch.autocast(device_type=self.device.type, dtype=torch.float16,
                                    enabled=self.device.type == "cuda"):
                    logits = self.model(symmetry(b, s), symmetry(a, s))
                prob += torch.sigmoid(logits.float())
            out.append((prob / len(syms)).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def _check_inputs(before: Path, after: Path, labels: Path | None, bands: list[str],
                  size: int) -> dict:
    profiles = {}
    for name, path in (("before", before), ("after", after)) + (
            (("labels", labels),) if labels else ()):
        try:
            with rasterio.open(path) as src:
                profiles[name] = {"crs": src.crs, "transform": src.transform,
                                  "width": src.width, "height": src.height,
                                  "count": src.count, "descriptions": src.descriptions}
        except rasterio.errors.RasterioIOError as exc:
            raise DamagenetError(f"{path}: cannot open raster ({exc})") from exc
    ref = profiles["before"]
    for path in (before, after):
        check_scene_scale(path)
    for name, prof in profiles.items():
        if name == "before":
            continue
        for key in ("crs", "transform", "width", "height"):
            if prof[key] != ref[key]:
                raise DamagenetError(
                    f"{after if name == 'after' else labels} ({name}) is not on the grid of "
                    f"{before}: {key} {prof[key]} vs {ref[key]}")
    for name, path in (("before", before), ("after", after)):
        prof = profiles[name]
        if prof["count"] != len(bands):
            raise DamagenetError(f"{path}: {prof['count']} bands, the checkpoint needs "
                                 f"{len(bands)} ({', '.join(bands)})")
        desc = [d for d in prof["descriptions"] if d]
        if desc and list(prof["descriptions"]) != bands:
            raise DamagenetError(f"{path}: bands are {list(prof['descriptions'])}, the "
                                 f"checkpoint needs {bands} in that order")
    if ref["crs"] is None:
        raise DamagenetError(f"{before}: raster has no CRS")
    if size > ref["width"] or size > ref["height"]:
        raise DamagenetError(f"the checkpoint's patch size {size} px exceeds the scene "
                             f"{before} ({ref['width']} x {ref['height']} px)")
    return ref


def _writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise DamagenetError(f"output folder {folder} cannot be written ({exc})") from exc


def predict_map(before: str | Path, after: str | Path, ckpt: str | Path, out: str | Path,
                options: PredictOptions | None = None, labels: str | Path | None = None,
                scorer: Scorer | None = None) -> dict[str, Any]:
    """Write the damage maps for one scene pair; return the summary."""
    opts = options or PredictOptions()
    before, after, out = Path(before), Path(after), Path(out)
    labels = Path(labels) if labels else None
    if opts.stride < 1:
        raise DamagenetError("--stride must be at least 1")
    device = resolve_device(opts.device)
    model, payload = load_checkpoint(ckpt, map_location=device)
    size, bands = int(payload["patch_size"]), list(payload["bands"])
    grid = _check_inputs(before, after, labels, bands, size)
    threshold = float(payload["threshold"]["value"]) if opts.threshold == "auto" \
        else float(opts.threshold)
    if not 0 < threshold < 1:
        raise DamagenetError(f"--threshold must be between 0 and 1, got {threshold}")
    _writable(out.parent)
    scorer = scorer or ModelScorer(model, norm_of(payload), device, opts.batch_size, opts.tta)
    paths = output_paths(out)
    tmpdir = Path(tempfile.mkdtemp(prefix=".predict-", dir=out.parent))
    try:
        summary = _predict(before, after, labels, grid, size, threshold, opts, scorer,
                           paths, tmpdir, str(ckpt))
        for done in sorted(tmpdir.iterdir()):  # rasters, styles, sidecars, vectors, summary
            os.replace(done, out.parent / done.name)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return summary


def _predict(before, after, labels, grid, size, threshold, opts, scorer, paths, tmpdir,
             ckpt) -> dict[str, Any]:
    height, width = grid["height"], grid["width"]
    rpos = window_positions(height, size, opts.stride)
    cpos = window_positions(width, size, opts.stride)
    cov_cols = coverage(cpos, size, width)
    bytes_per_row = width * (4 * 2 * 2 + 8 * 3)
    per_strip = max(1, int(opts.memory_mb * 2**20 // (bytes_per_row * opts.stride * 2)))
    tags = {"CHECKPOINT": Path(ckpt).name, "PATCH_SIZE": size, "STRIDE": opts.stride,
            "TTA": opts.tta, "THRESHOLD": f"{threshold:.4f}", "BEFORE": before.name,
            "AFTER": after.name}
    prof = {"crs": grid["crs"], "transform": grid["transform"], "width": width,
            "height": height}
    w_prob = RowWriter(tmpdir / "prob.tmp.tif", prof, "float32", PROB_NODATA,
                       "damage_probability", tags)
    w_class = RowWriter(tmpdir / "class.tmp.tif", prof, "uint8", CLASS_NODATA, "damage_class",
                        {**tags, "VALUES": "0 no damage, 1 damage, 255 no data"}, CLASS_COLOURS)
    w_agree = RowWriter(tmpdir / "agree.tmp.tif", prof, "uint8", CLASS_NODATA, "agreement",
                        {**tags, "VALUES": "0 TN, 1 TP, 2 FP, 3 FN, 255 no data"},
                        AGREEMENT_COLOURS) if labels else None
    counts = {"windows": len(rpos) * len(cpos), "scored": 0, "skipped_nodata": 0,
              "valid_px": 0, "damage_px": 0}
    agree_counts = np.zeros(4, dtype=np.int64)
    n_damaged = 0
    patches_tmp = tmpdir / paths["patches"].name
    patch_prob: list[np.ndarray] = []
    patch_label: list[np.ndarray] = []
    pend_start, pend_sum, pend_cnt = 0, np.zeros((0, width)), np.zeros((0, width))
    t0 = time.perf_counter()
    with rasterio.open(before) as sb, rasterio.open(after) as sa, \
            (rasterio.open(labels) if labels else contextlib.nullcontext()) as sl, \
            rasterio.Env(GDAL_CACHEMAX=max(8, int(opts.memory_mb // 4))):
        bar = tqdm(total=len(rpos), desc="windows", unit="row", disable=not opts.progress)
        for i0 in range(0, len(rpos), per_strip):
            i1 = min(len(rpos), i0 + per_strip)
            rows = rpos[i0:i1]
            a, b = int(rows[0]), int(rows[-1]) + size
            win = Window(0, a, width, b - a)
            xb, xa = sb.read(window=win), sa.read(window=win)
            invalid = ((xb == 0).any(axis=0) | (xa == 0).any(axis=0)).astype(np.int32)
            bad = _window_any(invalid, rows - a, cpos, size)
            vb = sliding_window_view(xb, (size, size), axis=(1, 2))
            va = sliding_window_view(xa, (size, size), axis=(1, 2))
            ri, ci = np.nonzero(~bad)
            prob = np.zeros((len(rows), len(cpos)))
            valid = (~bad).astype(np.float64)
            if len(ri):
                wb = np.ascontiguousarray(np.moveaxis(vb[:, rows[ri] - a, cpos[ci]], 0, 1))
                wa = np.ascontiguousarray(np.moveaxis(va[:, rows[ri] - a, cpos[ci]], 0, 1))
                p = np.asarray(scorer(wb, wa), dtype=np.float64)
                prob[ri, ci] = p
                hot = p >= threshold
                n_damaged += int(hot.sum())
                _append_patches(patches_tmp, rows[ri[hot]], cpos[ci[hot]], p[hot], grid,
                                size)
                if sl is not None:
                    lab = sl.read(1, window=win)
                    unknown = _window_any((lab == 255).astype(np.int32), rows - a, cpos, size)
                    damage = _window_any((lab == 1).astype(np.int32), rows - a, cpos, size)
                    known = ~unknown[ri, ci]
                    patch_prob.append(p[known])
                    patch_label.append(damage[ri, ci][known].astype(np.int64))
            counts["scored"] += len(ri)
            counts["skipped_nodata"] += int(bad.sum())
            cov_rows = coverage(rows - a, size, b - a)
            strip_sum = _spread(cov_rows, prob, cov_cols)
            strip_cnt = _spread(cov_rows, valid, cov_cols)
            end = max(pend_start + len(pend_sum), b)
            acc_sum = np.zeros((end - pend_start, width))
            acc_cnt = np.zeros_like(acc_sum)
            acc_sum[: len(pend_sum)] += pend_sum
            acc_cnt[: len(pend_cnt)] += pend_cnt
            acc_sum[a - pend_start: b - pend_start] += strip_sum
            acc_cnt[a - pend_start: b - pend_start] += strip_cnt
            next_start = int(rpos[i1]) if i1 < len(rpos) else height
            done = next_start - pend_start
            _flush(pend_start, acc_sum[:done], acc_cnt[:done], threshold, w_prob, w_class,
                   w_agree, sl, counts, agree_counts)
            pend_sum, pend_cnt = acc_sum[done:], acc_cnt[done:]
            pend_start = next_start
            bar.update(i1 - i0)
        bar.close()
    seconds = time.perf_counter() - t0
    dest = {k: tmpdir / p.name for k, p in paths.items()}
    w_prob.to_cog(dest["prob"], "AVERAGE")
    w_class.to_cog(dest["class"], "NEAREST",
                   [CLASS_LABELS.get(i, "") for i in range(256)])
    write_qml(dest["prob"], probability_qml("damage_probability", threshold))
    write_qml(dest["class"], paletted_qml("damage_class", CLASS_COLOURS, CLASS_LABELS))
    if w_agree is not None:
        w_agree.to_cog(dest["agreement"], "NEAREST",
                       [AGREEMENT_LABELS.get(i, "") for i in range(256)])
        write_qml(dest["agreement"], paletted_qml("agreement", AGREEMENT_COLOURS,
                                                  AGREEMENT_LABELS))
    for w in (w_prob, w_class, w_agree):
        if w is not None:
            w.path.unlink(missing_ok=True)
    if not patches_tmp.exists():  # no damaged window: an empty layer, still valid to open
        _append_patches(patches_tmp, np.zeros(0, int), np.zeros(0, int), np.zeros(0), grid,
                        size, allow_empty=True)
    t = grid["transform"]
    px_km2 = abs(t.a * t.e) / 1e6 if grid["crs"].is_projected else math.nan
    summary: dict[str, Any] = {
        "before": str(before), "after": str(after), "checkpoint": ckpt,
        "threshold": threshold, "stride": opts.stride, "patch_size": size, "tta": opts.tta,
        "windows": counts["windows"], "windows_scored": counts["scored"],
        "windows_skipped_nodata": counts["skipped_nodata"],
        "valid_area_km2": counts["valid_px"] * px_km2,
        "damaged_area_km2": counts["damage_px"] * px_km2,
        "damaged_share_of_valid": counts["damage_px"] / max(counts["valid_px"], 1),
        "damaged_patches": n_damaged, "seconds": seconds,
        "km2_per_second": height * width * px_km2 / max(seconds, 1e-9),
        "outputs": {k: str(p) for k, p in paths.items() if (dest[k]).exists() or
                    k == "summary"},
    }
    if labels:
        y = np.concatenate(patch_label) if patch_label else np.zeros(0, np.int64)
        pr = np.concatenate(patch_prob) if patch_prob else np.zeros(0)
        tn, tp, fp, fn = (int(v) for v in agree_counts)
        summary["agreement_pixels"] = {"true_negative": tn, "true_positive": tp,
                                       "false_positive": fp, "false_negative": fn}
        if len(y) and len(np.unique(y)) == 2:
            rep = report(y, pr, threshold)
            summary["patch_metrics"] = {"windows": int(len(y)), "damaged": int(y.sum()),
                                        **ranking_metrics(y, pr),
                                        "accuracy": rep["accuracy"],
                                        "damage_precision": rep["Damage"]["precision"],
                                        "damage_recall": rep["Damage"]["recall"],
                                        "damage_f1": rep["Damage"]["f1-score"],
                                        "macro_f1": rep["macro_f1"]}
        else:
            summary["patch_metrics"] = None
    dest["summary"].write_text(json.dumps(summary, indent=2) + "\n")
    log.info("%s: %d of %d windows scored (%d skipped for nodata) in %.1f s; damaged %.3f km2 "
             "(%.1f%% of the valid area) at threshold %.3f -> %s", after.name,
             counts["scored"], counts["windows"], counts["skipped_nodata"], seconds,
             summary["damaged_area_km2"], 100 * summary["damaged_share_of_valid"], threshold,
             paths["prob"])
    return summary


def _append_patches(path: Path, rows: np.ndarray, cols: np.ndarray, probs: np.ndarray,
                    grid: dict, size: int, allow_empty: bool = False) -> None:
    """Append damaged windows as polygons to the GeoPackage, strip by strip (bounded memory)."""
    if len(rows) == 0 and not allow_empty:
        return
    t = grid["transform"]
    polys = [box(t.c + c * t.a, t.f + (r + size) * t.e, t.c + (c + size) * t.a, t.f + r * t.e)
             for r, c in zip(rows.tolist(), cols.tolist(), strict=True)]
    gdf = gpd.GeoDataFrame({"probability": np.asarray(probs, dtype=np.float64),
                            "row": np.asarray(rows, dtype=np.int64),
                            "col": np.asarray(cols, dtype=np.int64)},
                           geometry=gpd.GeoSeries(polys, crs=grid["crs"]), crs=grid["crs"])
    pyogrio.write_dataframe(gdf, path, layer="damaged_patches", driver="GPKG",
                            append=path.exists(), geometry_type="Polygon")


def _window_any(mask: np.ndarray, rows: np.ndarray, cols: np.ndarray, size: int) -> np.ndarray:
    """For each window (rows x cols origins), whether ``mask`` (0/1 ints) is set inside it."""
    integral = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    integral[1:, 1:] = mask.cumsum(0).cumsum(1)
    r, c = rows[:, None], cols[None, :]
    total = integral[r + size, c + size] - integral[r, c + size] - integral[r + size, c] \
        + integral[r, c]
    return total > 0


def _spread(cov_rows: sp.csr_matrix, grid_values: np.ndarray, cov_cols: sp.csr_matrix
            ) -> np.ndarray:
    """Sum of the window values covering each pixel: rows-coverage @ values @ cols-coverage^T.

    Both coverage matrices are sparse (``size`` ones per window), so this costs about
    ``size`` multiply-adds per pixel and window row, whatever the stride.
    """
    return np.asarray(cov_cols @ np.asarray(cov_rows @ grid_values).T).T


def _flush(row0, sums, cnts, threshold, w_prob, w_class, w_agree, sl, counts, agree_counts
           ) -> None:
    if len(sums) == 0:
        return
    covered = cnts > 0
    prob = np.where(covered, sums / np.maximum(cnts, 1), PROB_NODATA).astype(np.float32)
    cls = np.where(covered, (prob >= threshold).astype(np.uint8), CLASS_NODATA).astype(np.uint8)
    w_prob.write(row0, prob)
    w_class.write(row0, cls)
    counts["valid_px"] += int(covered.sum())
    counts["damage_px"] += int((cls == 1).sum())
    if w_agree is not None:
        lab = sl.read(1, window=Window(0, row0, sums.shape[1], sums.shape[0]))
        known = covered & (lab != 255)
        agree = np.full(cls.shape, CLASS_NODATA, dtype=np.uint8)
        truth, pred = lab == 1, cls == 1
        for code, m in ((0, ~truth & ~pred), (1, truth & pred), (2, ~truth & pred),
                        (3, truth & ~pred)):
            agree[known & m] = code
            agree_counts[code] += int((known & m).sum())
        w_agree.write(row0, agree)


def _run(args: argparse.Namespace) -> int:
    threshold = args.threshold if args.threshold == "auto" else float(args.threshold)
    predict_map(args.before, args.after, args.ckpt, args.out,
                PredictOptions(stride=args.stride, batch_size=args.batch_size, tta=args.tta,
                               threshold=threshold, device=args.device,
                               memory_mb=args.memory_mb, progress=not args.quiet),
                labels=args.labels)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict", help="write damage maps for a before/after scene pair",
        description="Slide the model over an aligned scene pair and write a float32 "
                    "probability COG (<aoi>_damage_prob.tif), a uint8 class COG with colour "
                    "table (<aoi>_damage_class.tif), QGIS styles (.qml), a GeoPackage of "
                    "damaged patches and a JSON summary; with --labels also an agreement "
                    "raster and patch-level metrics.")
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
    p.add_argument("--threshold", default="auto", type=threshold_or_auto,
                   help="probability for the class map: 'auto' = the checkpoint's "
                        "validation-chosen threshold, or a number in (0, 1) (%(default)s)")
    p.add_argument("--labels", help="label GeoTIFF (1/0/255) on the same grid for an "
                                    "agreement raster and patch-level metrics")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (%(default)s)")
    p.add_argument("--memory-mb", type=float, default=256.0,
                   help="memory budget for reading scenes, in MiB (%(default)s)")
    p.set_defaults(func=_run)
