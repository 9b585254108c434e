"""``damagenet crossval``: leave-AOI-out cross-validation of the network and its baselines.

A model that will map a city it has never seen must be tested on cities it has never seen.
All pairs (or tiles) of a dataset NPZ, every split pooled and each named by its ``aoi``, are
grouped by AOI; the AOIs are shuffled (seeded) into k folds. Fold i tests on group i, validates
(early stopping, thresholds, calibration) on one AOI of the next group, and trains on the rest:
every AOI is test exactly once and no AOI plays two roles in a fold.

The dataset's kind decides what a fold trains and scores (:mod:`damagenet.evaluation.
crossval_kinds`): on a patch dataset the Siamese patch network beside the change detector and
the trees per pair; on a tile dataset the Siamese U-Net beside both baselines per pixel, at
pixel, patch and point level, and with ``patch`` the patch model trained on the same
training tiles' 16 px cells beside it, on its own schedule (``fold<i>/patch_model.pt``, its
training log and summary in ``fold<i>/patch/``). Per fold each network is trained with
``damagenet train``'s recipe and its temperature fitted on the validation AOI and stored in its
checkpoint. Written to ``--out``:

- ``crossval.json``: folds (AOIs per role, and per network its checkpoint, calibration and
  training schedule), per level per-AOI and pooled scores with
  intervals that resample whole AOIs (pooled) or 640 m ground blocks (one AOI), and paired
  differences (:mod:`damagenet.evaluation.crossval_report`); ``per_aoi``, ``pooled`` and
  ``paired_differences`` at the top are those of the first level;
- ``crossval.md``: the same as Markdown tables;
- ``predictions.npz`` (first level; ``predictions_<level>.npz`` for the others): per test unit
  its AOI, fold, label and every model's score;
- ``roc_models.png`` (and ``roc_models_<level>.png``): pooled ROC curves;
  ``fold<i>/model.pt``: the fold checkpoints, which together form the ensemble of
  ``damagenet predict --ckpt ... --ckpt ...``; ``fold<i>/train_log.csv`` and
  ``train_summary.json``: their training.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from contract.atomic import staged_folder
from contract.npz import save_npz
from contract.npz_keys import SPLITS
from damagenet.data.pairs import Split
from damagenet.errors import DamagenetError
from damagenet.evaluation.comparison import roc_models_plot
from damagenet.evaluation.crossval_kinds import (
    FoldLevel,
    Kind,
    PatchTraining,
    kind_of,
    trained_with,
)
from damagenet.evaluation.crossval_report import level_report, markdown, pool_level
from damagenet.evaluation.intervals import BLOCK_M, MAX_LEVELS, MIN_RESAMPLES
from damagenet.evaluation.scores import N_BOOT
from damagenet.training.config import TrainConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fold:
    """The AOIs of each role in one fold."""

    test: tuple[str, ...]
    val: tuple[str, ...]
    train: tuple[str, ...]


def assign_folds(aois: list[str], k: int, seed: int = 0) -> list[Fold]:
    """k folds over whole AOIs: each AOI test once, one validation AOI from the training side."""
    names = sorted(set(aois))
    if len(names) < 3:
        raise DamagenetError(
            f"leave-AOI-out needs at least 3 AOIs (test, val, train); the "
            f"dataset has {len(names)}: {names}"
        )
    if not 2 <= k <= len(names):
        raise DamagenetError(
            f"--k must be between 2 and the number of AOIs ({len(names)}), got {k}"
        )
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    groups = [list(g) for g in np.array_split(np.array(order, dtype=object), k)]
    folds = []
    for i, test in enumerate(groups):
        val = groups[(i + 1) % k][0]
        train_aois = [a for a in order if a not in test and a != val]
        folds.append(Fold(tuple(sorted(test)), (val,), tuple(sorted(train_aois))))
    return folds


def pooled(npz: str | Path, kind: Kind | None = None) -> Split:
    """Every pair (or tile) of the dataset, whatever its split, with its AOI name and the
    provenance every split records."""
    splits = (kind or kind_of(npz)).load(npz)
    if any(sp.aoi is None for sp in splits.values()):
        raise DamagenetError(
            f"{npz}: pairs carry no 'aoi' array; leave-AOI-out needs the "
            "dataset written by 'pipeline dataset'"
        )
    parts = list(splits.values())
    arrays: dict[str, Any] = {}
    for f in fields(Split):
        values = [getattr(p, f.name) for p in parts]
        arrays[f.name] = None if any(v is None for v in values) else np.concatenate(values)
    return Split(**arrays)


def fold_splits(pool: Split, fold: Fold) -> dict[str, Split]:
    """The pooled pairs of each role's AOIs."""
    assert pool.aoi is not None, "pooled() refuses datasets without AOI names"
    return {role: pool.take(np.isin(pool.aoi, getattr(fold, role))) for role in SPLITS}


def run_fold(
    i: int, fold: Fold, pool: Split, out: Path, cfg: TrainConfig, keep_data: bool, kind: Kind
) -> dict[str, Any]:
    """Train and score one fold: per level its test units and every model's scores."""
    splits = fold_splits(pool, fold)
    log.info(
        "fold %d: test %s, val %s, train %d AOIs (%d/%d/%d %s)",
        *(i, ",".join(fold.test), ",".join(fold.val), len(fold.train)),
        *(len(splits[s].y) for s in ("test", "val", "train")),
        "tiles" if kind.name == "tiles" else "pairs",
    )
    ckpts = kind.fit(splits, out / f"fold{i}", cfg, keep_data)
    training = {m: trained_with(c) for m, c in ckpts.items()}
    levels, calibs = kind.score(ckpts, splits, cfg)
    return {
        "fold": fold, "checkpoints": ckpts, "calibrations": calibs, "training": training,
        "levels": levels,
    }  # fmt: skip


def summarise(
    results: list[dict[str, Any]], kind: Kind, n_boot: int, seed: int
) -> tuple[dict[str, Any], dict[str, tuple[FoldLevel, np.ndarray]]]:
    """Per level the report (per AOI, pooled, paired) and the pooled units with their folds."""
    report: dict[str, Any] = {}
    units: dict[str, tuple[FoldLevel, np.ndarray]] = {}
    for name in kind.levels:
        parts = [(i, r["levels"][name]) for i, r in enumerate(results) if name in r["levels"]]
        if not parts:
            report[name] = {"units": kind.units[name][1], "skipped": "no fold could score it"}
            continue
        level, fold = pool_level(parts)
        unit, rule = kind.units[name]
        report[name] = level_report(level, unit, rule, kind.pairs(list(level.models)), n_boot, seed)
        missing = [i for i, r in enumerate(results) if name not in r["levels"]]
        if missing:
            report[name]["folds_without_both_classes"] = missing
        units[name] = (level, fold)
    return report, units


def crossval(
    npz: str | Path,
    out_dir: str | Path,
    k: int,
    cfg: TrainConfig | None = None,
    seed: int = 0,
    n_boot: int = N_BOOT,
    keep_data: bool = False,
    patch: PatchTraining | None = None,
) -> dict[str, Any]:
    """Run every fold and write the report (see the module docstring); ``patch`` trains the
    patch model beside the pixel model on a tile dataset, on that schedule, and scores it."""
    kind = kind_of(npz, patch)
    cfg = kind.config(cfg or TrainConfig())
    out = Path(out_dir)
    pool = pooled(npz, kind)
    assert pool.aoi is not None
    folds = assign_folds(pool.aoi.tolist(), k, seed)
    out.mkdir(parents=True, exist_ok=True)
    remove_fold_dirs(out)
    results = [run_fold(i, f, pool, out, cfg, keep_data, kind) for i, f in enumerate(folds)]
    levels, units = summarise(results, kind, n_boot, seed)
    report = _report(npz, k, cfg, seed, n_boot, kind, results, levels)
    write_outputs(out, report, units)
    log.info("leave-AOI-out, %d folds -> %s\n%s", k, out / "crossval.md", markdown(report))
    return report


def _report(
    npz: str | Path,
    k: int,
    cfg: TrainConfig,
    seed: int,
    n_boot: int,
    kind: Kind,
    results: list[dict[str, Any]],
    levels: dict[str, Any],
) -> dict[str, Any]:
    """crossval.json's content: settings, protocol, folds, levels (first level on top)."""
    first = levels[kind.levels[0]]
    return {
        "dataset": str(npz),
        "kind": kind.name,
        "k": k,
        "seed": seed,
        "n_boot": n_boot,
        "arch": cfg.arch,
        "backbone": cfg.backbone if cfg.arch == "siamese-resnet" else cfg.encoder,
        "weights": cfg.weights,
        "epochs": cfg.epochs,
        "protocol": "leave-AOI-out; val = one AOI of the training side; thresholds and "
        "temperature chosen on val; network scores are temperature-calibrated; pooled "
        "F1/precision/recall use each fold's own thresholds",
        "interval": {
            "method": "percentile bootstrap of whole groups (scipy.stats.bootstrap draws "
            "them); paired differences score both models on the same draws",
            "pooled": "whole AOIs (each AOI is one fold's test ground)",
            "per_aoi": f"{BLOCK_M:g} m ground blocks of the AOI, from the units' positions",
            "n_resamples": n_boot,
            "min_resamples": MIN_RESAMPLES,
            "score_levels": MAX_LEVELS,
        },
        "folds": [_fold_record(i, r) for i, r in enumerate(results)],
        "per_aoi": first.get("per_aoi", {}),
        "pooled": first.get("pooled", {}),
        "paired_differences": first.get("paired_differences", {}),
        "levels": levels,
    }


def _fold_record(i: int, result: dict[str, Any]) -> dict[str, Any]:
    """A fold in crossval.json: AOIs per role, the network's checkpoint, calibration and
    training schedule (the ensemble's member), and those of a patch model trained beside it."""
    (first, ckpt), *others = result["checkpoints"].items()
    record = {
        "fold": i,
        **{role: list(getattr(result["fold"], role)) for role in SPLITS},
        "checkpoint": str(ckpt),
        "calibration": result["calibrations"][first],
        "training": result["training"][first],
    }
    for name, path in others:
        record[name] = {
            "checkpoint": str(path),
            "calibration": result["calibrations"][name],
            "training": result["training"][name],
        }
    return record


def write_outputs(
    out: Path, report: dict[str, Any], units: dict[str, tuple[FoldLevel, np.ndarray]]
) -> None:
    """crossval.json, crossval.md, and per scored level its predictions and ROC plot: one
    staged set, published whole or not at all, also under SIGINT and SIGTERM."""
    with staged_folder(out) as stage:
        (stage / "crossval.json").write_text(json.dumps(report, indent=2) + "\n", "utf-8")
        (stage / "crossval.md").write_text(markdown(report), "utf-8")
        first = next(iter(report["levels"]))
        for name, (level, fold) in units.items():
            suffix = "" if name == first else f"_{name}"
            cat: dict[str, Any] = {"aoi": level.aoi, "fold": fold, "y": level.y}
            cat |= {m: s.score for m, s in level.models.items()}
            save_npz(stage / f"predictions{suffix}.npz", cat)  # byte-reproducible
            scores = {m: s.score for m, s in level.models.items()}
            table = report["levels"][name]["pooled"]
            roc_models_plot(level.y, scores, table, stage / f"roc_models{suffix}.png")


def remove_fold_dirs(out: Path) -> None:
    """Remove fold folders of an earlier run, so stale checkpoints never join an ensemble."""
    for d in out.glob("fold*"):
        if d.is_dir():
            shutil.rmtree(d)
