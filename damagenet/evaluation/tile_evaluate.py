"""``damagenet evaluate`` on a tile dataset: the pixel model at pixel, patch and point level.

On the test tiles (held out by whole ground blocks or AOIs, :mod:`damagenet.evaluation.levels`
defines the units), beside the change detector and the trees per pixel
(:mod:`damagenet.evaluation.pixel_baselines`) and, when given, a patch model scoring the 16 px
cells of the same tiles. Scores come from the scorers the maps use
(:class:`~damagenet.inference.pixel.PixelScorer`, :class:`~damagenet.inference.scoring.
PairScorer`: band order, normalisation, calibration, nodata), so the figures are those of the
maps. Thresholds: the pixel model keeps its checkpoint's at pixel level and the patch model its
own at patch level (the values their maps use); every other model and level has its threshold
chosen on the validation tiles' units of that level with the same rule. Intervals resample
whole AOIs, or 640 m ground blocks when the test tiles come from one AOI; every model is
compared with the pixel model (and the baselines with the patch model) by paired intervals.

``metrics.json`` keeps the pixel model's pixel-level figures at the top (as training writes
them) and adds ``levels``: per level the units' rule and counts, ``scores`` per model and
``paired_differences``; ``interval`` records how the intervals were resampled. Plots: the pixel
model's ``confusion_matrix_threshold.png``, ``roc_curve.png`` and ``pr_curve.png`` over labelled
pixels, and ``roc_models_<level>.png`` per level.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contract.atomic import staged_folder, write_text_atomic
from damagenet.data.pairs import Split
from damagenet.data.tiles import load_tiles
from damagenet.errors import DamagenetError
from damagenet.evaluation.comparison import log_table, operating_points, roc_models_plot
from damagenet.evaluation.intervals import groups_for, interval_record
from damagenet.evaluation.levels import (
    CellLevel,
    Level,
    PixelLevel,
    PointLevel,
    ScoreMap,
    Units,
    nodata,
)
from damagenet.evaluation.metrics import choose_threshold
from damagenet.evaluation.pixel_baselines import pixel_baseline_maps
from damagenet.evaluation.plots import confusion_plot, pr_plot, roc_plot
from damagenet.evaluation.scores import N_BOOT, Scored, compare_all
from damagenet.inference.pixel import PixelScorer, prepare_pixel_model
from damagenet.inference.scoring import PairScorer, optimise_for_inference
from damagenet.models.checkpoint import norm_of

log = logging.getLogger(__name__)
PIXEL_MODEL, PATCH_MODEL = "pixel", "patch"
Loaded = tuple[torch.nn.Module, dict[str, Any]]


def levels_for(cell: int = 16) -> tuple[Level, ...]:
    """The three levels, the patch level on cells of ``cell`` px."""
    return (PixelLevel(), CellLevel(cell), PointLevel())


def pixel_map(model: Loaded, split: Split, device: torch.device, batch: int) -> ScoreMap:
    """The pixel model's probability of every pixel (NaN where either date has no data)."""
    net, payload = model
    scorer = PixelScorer(
        prepare_pixel_model(net, device),
        norm_of(payload),
        device,
        network_bands=payload["input"]["bands"],
        calibration=payload.get("calibration"),
    )
    out = np.concatenate(
        [
            scorer(split.before[i : i + batch], split.after[i : i + batch])[:, 0]
            for i in range(0, len(split.y), batch)
        ]
    )
    return ScoreMap(np.where(nodata(split), np.nan, out))


def patch_map(model: Loaded, split: Split, device: torch.device, batch: int) -> ScoreMap:
    """The patch model's probability of each cell of its patch size, on every pixel of it."""
    net, payload = model
    c = int(payload["patch_size"])
    n, bands, h, w = split.before.shape
    if h % c or w % c:
        raise DamagenetError(f"tiles of {h} px do not hold whole {c} px patches of the patch model")

    def cells(x: np.ndarray) -> np.ndarray:
        x = x.reshape(n, bands, h // c, c, w // c, c).transpose(0, 2, 4, 1, 3, 5)
        return x.reshape(-1, bands, c, c)

    fast = optimise_for_inference(net, device)
    scorer = PairScorer(
        fast, norm_of(payload), device, batch, False, payload["input"]["bands"],
        payload.get("calibration"),
    )  # fmt: skip
    prob = scorer(cells(split.before), cells(split.after)).reshape(n, h // c, w // c)
    full = np.repeat(np.repeat(prob, c, axis=1), c, axis=2)
    return ScoreMap(np.where(nodata(split), np.nan, full), cell=c)


def model_maps(
    splits: dict[str, Split],
    pixel: Loaded,
    patch: Loaded | None,
    device: torch.device,
    batch: int,
    seed: int = 0,
) -> dict[str, dict[str, ScoreMap]]:
    """``{model: {split: ScoreMap}}`` on val and test: the pixel model, the patch model when
    given, the change detector and the trees (fitted on train)."""
    maps: dict[str, dict[str, ScoreMap]] = {PIXEL_MODEL: {}}
    for s in ("val", "test"):
        maps[PIXEL_MODEL][s] = pixel_map(pixel, splits[s], device, batch)
        if patch is not None:
            maps.setdefault(PATCH_MODEL, {})[s] = patch_map(patch, splits[s], device, batch * 16)
    for name, per_split in pixel_baseline_maps(splits, seed).items():
        maps[name] = {
            s: ScoreMap(np.where(nodata(splits[s]), np.nan, v)) for s, v in per_split.items()
        }
    return maps


@dataclass(frozen=True)
class LevelScores:
    """One level's test units and every model's scores with its operating points."""

    level: Level
    units: Units
    models: dict[str, Scored]
    counts: dict[str, int]


def score_level(
    level: Level,
    splits: dict[str, Split],
    maps: dict[str, dict[str, ScoreMap]],
    rule: str,
    fixed: dict[str, float],
) -> LevelScores | str:
    """Test units and operating points of every model at ``level``; a reason when the
    validation or test units lack a class (nothing can be chosen or scored there)."""
    units = {s: level.units(splits[s]) for s in ("val", "test")}
    for s, u in units.items():
        if len(np.unique(u.y)) < 2:
            return f"the {s} split holds {len(u.y)} {level.unit} of one class"
    scores = {
        m: {s: level.scores(units[s], per_split[s]) for s in units} for m, per_split in maps.items()
    }
    models = operating_points(units["val"].y, scores, rule, fixed)
    return LevelScores(level, units["test"], models, units["test"].counts)


def pairs_of(models: list[str]) -> list[tuple[str, str]]:
    """Which models are compared: the pixel model with every other, the patch model with
    each baseline."""
    out = [(PIXEL_MODEL, m) for m in models if m != PIXEL_MODEL]
    if PATCH_MODEL in models:
        out += [(PATCH_MODEL, m) for m in models if m not in (PIXEL_MODEL, PATCH_MODEL)]
    return out


def fixed_thresholds(level: str, thresholds: dict[str, float]) -> dict[str, float]:
    """The checkpoint thresholds that hold at ``level``: each model's at its native level."""
    native = {PIXEL_MODEL: "pixel", PATCH_MODEL: "patch"}
    return {m: t for m, t in thresholds.items() if native.get(m) == level}


def evaluate_tiles(
    npz: str | Path,
    pixel: Loaded,
    out_dir: str | Path,
    device: torch.device,
    batch_size: int,
    threshold_rule: str | None = None,
    patch: Loaded | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
    record: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Score the pixel model (and ``patch``) on the tile dataset's test split; write
    ``metrics.json`` (with ``record``, e.g. which checkpoints) and the plots to ``out_dir``."""
    from damagenet.training.tasks import PixelTask, pixel_metrics

    splits = _tile_splits(npz)
    batch = PixelTask().eval_batch(batch_size, splits["test"].before.shape[-1])
    maps = model_maps(splits, pixel, patch, device, batch, seed)
    threshold = _threshold(pixel[1], threshold_rule, splits["val"], maps[PIXEL_MODEL]["val"])
    px = PixelLevel()
    test_units = px.units(splits["test"])
    pixel_prob = px.scores(test_units, maps[PIXEL_MODEL]["test"])
    metrics = pixel_metrics(test_units.y, pixel_prob, threshold, npz, len(splits["test"].y))
    thresholds = {PIXEL_MODEL: float(threshold["value"])}
    if patch is not None:
        thresholds[PATCH_MODEL] = float(patch[1]["threshold"]["value"])
    test = splits["test"]
    grouping = groups_for(test.aoi, test.lon, test.lat)
    rule = str(threshold.get("rule", "recall90"))
    cell = int(patch[1]["patch_size"]) if patch is not None else 16
    metrics["levels"], plots = {}, {}
    for level in levels_for(cell):
        scored = score_level(level, splits, maps, rule, fixed_thresholds(level.name, thresholds))
        metrics["levels"][level.name] = _level_entry(scored, grouping.ids, level, n_boot, seed)
        if isinstance(scored, LevelScores):
            plots[level.name] = scored
    metrics["interval"] = interval_record(grouping, n_boot, seed, "tiles")
    metrics.update(record or {})
    write_tile_artefacts(out_dir, metrics, plots, test_units.y, pixel_prob)
    return metrics


def write_tile_artefacts(
    out_dir: str | Path,
    metrics: dict[str, Any],
    levels: dict[str, LevelScores],
    y: np.ndarray,
    prob: np.ndarray,
) -> None:
    """metrics.json; the pixel model's confusion matrix at its threshold, ROC and PR curves over
    labelled pixels (the patch model's file names); every model's ROC curves per level. One
    staged set: a failure leaves none of them."""
    t = metrics["threshold"]
    with staged_folder(out_dir) as out:
        confusion_plot(
            np.array(metrics["confusion_matrix"]),
            out / "confusion_matrix_threshold.png",
            False,
            f"test pixels, map threshold {t['value']:.2f} ({t['rule']})",
        )
        roc_plot(y, prob, metrics["roc_auc"], out / "roc_curve.png")
        pr_plot(y, prob, metrics["pr_auc"], t["value"], out / "pr_curve.png")
        for name, scored in levels.items():
            roc_models_plot(
                scored.units.y,
                {m: s.score for m, s in scored.models.items()},
                metrics["levels"][name]["scores"],
                out / f"roc_models_{name}.png",
            )
        write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")


def _tile_splits(npz: str | Path) -> dict[str, Split]:
    splits = load_tiles(npz)
    for name in ("train", "val", "test"):
        if name not in splits or not len(splits[name].y):
            raise DamagenetError(
                f"{npz}: no {name!r} tiles; evaluation fits the trees on train, chooses "
                "thresholds on val and scores test"
            )
    return splits


def _threshold(
    payload: dict[str, Any], rule: str | None, val: Split, val_map: ScoreMap
) -> dict[str, Any]:
    """The checkpoint's threshold, or one chosen with ``rule`` on the validation pixels."""
    threshold = dict(payload["threshold"])
    if not rule or rule == threshold.get("rule"):
        return threshold
    units = PixelLevel().units(val)
    value = choose_threshold(units.y, PixelLevel().scores(units, val_map), rule)
    return {"value": value, "rule": rule, "chosen_on": "val"}


def _level_entry(
    scored: LevelScores | str, tile_groups: np.ndarray, level: Level, n_boot: int, seed: int
) -> dict[str, Any]:
    """One level of metrics.json: its rule, counts, scores and paired differences."""
    if isinstance(scored, str):
        log.warning("%s level not scored: %s", level.name, scored)
        return {"units": level.rule, "skipped": scored}
    u = scored.units
    result = compare_all(
        u.y, scored.models, pairs_of(list(scored.models)), tile_groups[u.tile], n_boot, seed,
        level.unit,
    )  # fmt: skip
    log.info("%s level (%d %s, %d damaged):", level.name, len(u.y), level.unit, int(u.y.sum()))
    log_table(result["scores"], result["paired_differences"])
    return {"units": level.rule, **scored.counts, **result}
