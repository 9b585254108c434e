"""What a map holds, counted while it is drawn, and the summary written beside it.

:class:`MapRun` turns each scored strip into window tallies (damaged windows go to the
GeoPackage; windows with known labels are kept with their label and their part of the training
ground) and each finished row block into the probability, class, agreement and split rasters.
:func:`map_summary` then reports areas and, against labels, metrics on held-out ground only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from contract.labels import DAMAGE, UNKNOWN
from contract.windows import Strip, window_any
from damagenet.data.ground import PART_NAMES, TEST, UNSEEN, TrainingGround, window_parts
from damagenet.data.scene_pair import ScenePair
from damagenet.evaluation.metrics import ranking_metrics, report
from damagenet.maps.writers import CLASS_NODATA, PROB_NODATA, MapWriters
from damagenet.models.checkpoint import checkpoint_hash


@dataclass
class Tally:
    """What the map holds: windows, pixels, agreement per part and window-level labels."""

    windows: int = 0
    scored: int = 0
    skipped_nodata: int = 0
    valid_px: int = 0
    damage_px: int = 0
    damaged_patches: int = 0
    #: agreement pixels [part, code]: part 0-3 (see damagenet.data.ground), code TN, TP, FP, FN
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
        return self.labels.read(
            1, window=Window(0, strip.top, self.scenes.grid.width, bottom - strip.top)
        )

    def split_rows(self, row0: int, n_rows: int) -> np.ndarray | None:
        if self.ground is None:
            return None
        return self.ground.rows(row0, n_rows, self.scenes.grid.width)

    def count_windows(
        self, strip: Strip, prob: np.ndarray, lab: np.ndarray | None, maps: MapWriters
    ) -> None:
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
        part = (
            window_parts(split, rows, self.cols, self.size)[ri, ci]
            if split is not None
            else np.full(len(ri), UNSEEN, dtype=np.uint8)
        )
        t.probs.append(p[~unknown])
        t.truth.append(damage[~unknown].astype(np.int64))
        t.parts.append(part[~unknown])

    def finished_rows(
        self, row0: int, sums: np.ndarray, counts: np.ndarray, lab: np.ndarray | None, lab_top: int
    ) -> dict[str, np.ndarray]:
        """The raster blocks of finished rows, tallied.

        ``sums`` may carry a trailing axis (an ensemble: mean, std): the first layer is the
        probability, the second the uncertainty, both averaged over the same windows.
        """
        covered = counts > 0
        layers = sums if sums.ndim == 3 else sums[..., None]
        mean = [
            np.where(covered, layers[..., i] / np.maximum(counts, 1), PROB_NODATA).astype(
                np.float32
            )
            for i in range(layers.shape[-1])
        ]
        prob = mean[0]
        cls = np.where(covered, (prob >= self.threshold).astype(np.uint8), CLASS_NODATA).astype(
            np.uint8
        )
        self.tally.valid_px += int(covered.sum())
        self.tally.damage_px += int((cls == 1).sum())
        blocks: dict[str, np.ndarray] = {"prob": prob, "class": cls}
        if len(mean) > 1:
            blocks["uncertainty"] = mean[1]
        split = self.split_rows(row0, len(sums))
        if split is not None:
            blocks["split"] = np.where(covered, split, CLASS_NODATA).astype(np.uint8)
        if lab is not None:
            rows = lab[row0 - lab_top : row0 - lab_top + len(sums)]
            blocks["agreement"] = self._agreement(rows, covered, cls, split)
        return blocks

    def _agreement(
        self, lab: np.ndarray, covered: np.ndarray, cls: np.ndarray, split: np.ndarray | None
    ) -> np.ndarray:
        known = covered & (lab != UNKNOWN)
        agree = np.full(cls.shape, CLASS_NODATA, dtype=np.uint8)
        truth, pred = lab == DAMAGE, cls == 1
        part = split if split is not None else np.zeros(cls.shape, dtype=np.uint8)
        for code, m in (
            (0, ~truth & ~pred),
            (1, truth & pred),
            (2, ~truth & pred),
            (3, truth & ~pred),
        ):
            agree[known & m] = code
            self.tally.agreement[:, code] += np.bincount(part[known & m], minlength=4)[:4]
        return agree


def _window_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any] | None:
    """Window-level metrics at the map's threshold; None unless both classes are present."""
    if len(y) == 0 or len(np.unique(y)) < 2:
        return None
    rep = report(y, p, threshold)
    return {
        "windows": int(len(y)),
        "damaged": int(y.sum()),
        **ranking_metrics(y, p),
        "accuracy": rep["accuracy"],
        "damage_precision": rep["Damage"]["precision"],
        "damage_recall": rep["Damage"]["recall"],
        "damage_f1": rep["Damage"]["f1-score"],
        "macro_f1": rep["macro_f1"],
    }


def _agreement_dict(counts: np.ndarray) -> dict[str, int]:
    tn, tp, fp, fn = (int(v) for v in counts)
    return {"true_negative": tn, "true_positive": tp, "false_positive": fp, "false_negative": fn}


def _label_metrics(run: MapRun) -> dict[str, Any]:
    """Metrics against labels: on held-out ground only, other parts apart and labelled."""
    t = run.tally
    y = np.concatenate(t.truth) if t.truth else np.zeros(0, np.int64)
    p = np.concatenate(t.probs) if t.probs else np.zeros(0)
    part = np.concatenate(t.parts) if t.parts else np.zeros(0, np.uint8)
    out: dict[str, Any] = {"agreement_pixels": _agreement_dict(t.agreement.sum(axis=0))}
    if run.ground is None:
        out["patch_metrics"] = _window_metrics(y, p, run.threshold)
        out["patch_metrics_ground"] = (
            "all labelled windows (none is training ground recorded in the checkpoint for this AOI)"
        )
        return out
    held = part == TEST
    out["patch_metrics"] = _window_metrics(y[held], p[held], run.threshold)
    out["patch_metrics_ground"] = (
        "test part only: windows touching no train or validation patch of this AOI"
    )
    out["patch_metrics_by_part"] = {
        PART_NAMES[c] + (" (seen in training, optimistic)" if c in (1, 2) else ""): _window_metrics(
            y[part == c], p[part == c], run.threshold
        )
        for c in PART_NAMES
    }
    out["agreement_pixels_by_part"] = {
        PART_NAMES[c]: _agreement_dict(t.agreement[c]) for c in PART_NAMES
    }
    return out


def map_summary(
    run: MapRun,
    maps: MapWriters,
    ckpt: Path,
    tta: bool,
    seconds: float,
    ground_note: dict[str, Any],
) -> dict[str, Any]:
    """The JSON summary: areas, counts, settings, training ground and label metrics."""
    t, grid = run.tally, run.scenes.grid
    tr = grid.transform
    px_km2 = abs(tr.a * tr.e) / 1e6 if grid.crs.is_projected else math.nan
    optional = ("agreement", "split", "uncertainty")
    outputs = [k for k in maps.paths if k not in optional] + [
        layer.key for layer in maps.layers if layer.key in optional
    ]
    summary: dict[str, Any] = {
        "before": str(run.scenes.before_source),
        "after": str(run.scenes.after_source),
        "aoi": run.scenes.aoi,
        "checkpoint": str(ckpt),
        "checkpoint_sha256": checkpoint_hash(ckpt),
        "threshold": run.threshold,
        "stride": run.stride,
        "patch_size": run.size,
        "tta": tta,
        "windows": t.windows,
        "windows_scored": t.scored,
        "windows_skipped_nodata": t.skipped_nodata,
        "valid_area_km2": t.valid_px * px_km2,
        "damaged_area_km2": t.damage_px * px_km2,
        "damaged_share_of_valid": t.damage_px / max(t.valid_px, 1),
        "damaged_patches": t.damaged_patches,
        "seconds": seconds,
        "km2_per_second": grid.height * grid.width * px_km2 / max(seconds, 1e-9),
        "training_ground": ground_note,
        "outputs": {k: str(maps.paths[k]) for k in sorted(outputs, key=list(maps.paths).index)},
    }
    if run.labels is not None:
        summary.update(_label_metrics(run))
    return summary
