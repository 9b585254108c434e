"""``damagenet crossval``: leave-AOI-out cross-validation of the network and its baselines.

A model that will map a city it has never seen must be tested on cities it has never seen.
All pairs of a dataset NPZ (every split pooled, each pair named by its ``aoi``) are grouped by
AOI; the AOIs are shuffled (seeded) into k folds. Fold i tests on group i, validates (early
stopping, thresholds, calibration) on one AOI of the next group, and trains on the rest: every
AOI is test exactly once and no AOI plays two roles in a fold.

Per fold the network is trained with ``damagenet train``'s recipe, its temperature fitted on
the validation AOI and stored in its checkpoint under ``calibration``; both baselines are
fitted on the same training pairs. Written to ``--out``:

- ``crossval.json``: folds (AOIs per role, checkpoint), per-AOI and pooled scores with
  bootstrap 95% intervals for ``siamese``, ``change`` and ``gbt``;
- ``crossval.md``: the same as Markdown tables;
- ``predictions.npz``: per test pair its AOI, fold, label and every model's score;
- ``roc_models.png``: pooled ROC curves; ``fold<i>/model.pt``: the fold checkpoints, which
  together form the ensemble of ``damagenet predict --ckpt ... --ckpt ...``.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contract.atomic import atomic_path, write_text_atomic
from contract.npz_keys import SPLITS, split_key
from damagenet.data.pairs import Split, load_splits
from damagenet.errors import DamagenetError
from damagenet.evaluation.baselines import baseline_scores
from damagenet.evaluation.calibration import apply_calibration, fit_temperature
from damagenet.evaluation.comparison import NETWORK, roc_models_plot
from damagenet.evaluation.evaluate import probabilities
from damagenet.evaluation.metrics import choose_threshold
from damagenet.evaluation.scores import (
    N_BOOT,
    average_precision,
    bootstrap_ci,
    f1_at,
    fmt_ci,
    precision_at,
    recall_at,
    roc_auc,
    threshold_for_precision,
)
from damagenet.inference.scoring import resolve_device
from damagenet.models.checkpoint import load_checkpoint, norm_of
from damagenet.training.train import TrainConfig, train

log = logging.getLogger(__name__)
MODELS = (NETWORK, "change", "gbt")


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


def pooled(npz: str | Path) -> Split:
    """Every pair of the dataset, whatever its split, with its AOI name."""
    splits = load_splits(npz)
    if any(sp.aoi is None for sp in splits.values()):
        raise DamagenetError(
            f"{npz}: pairs carry no 'aoi' array; leave-AOI-out needs the "
            "dataset written by 'pipeline dataset'"
        )
    parts = list(splits.values())
    return Split(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in ("before", "after", "y", "aoi"))
    )


def fold_splits(pool: Split, fold: Fold) -> dict[str, Split]:
    out = {}
    for role in SPLITS:
        m = np.isin(pool.aoi, getattr(fold, role))
        out[role] = Split(pool.before[m], pool.after[m], pool.y[m], pool.aoi[m])
    return out


def write_fold_npz(splits: dict[str, Split], path: Path) -> None:
    arrays = {}
    for role, sp in splits.items():
        arrays.update(
            {
                split_key("Xb", role): sp.before,
                split_key("Xa", role): sp.after,
                split_key("y", role): sp.y,
                split_key("aoi", role): sp.aoi.astype(str),
            }
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def _store_calibration(ckpt: Path, calib: dict[str, Any]) -> None:
    """Add the fitted calibration to the fold checkpoint (predict applies it)."""
    payload = torch.load(ckpt, map_location="cpu", weights_only=True)
    payload["calibration"] = calib
    with atomic_path(ckpt) as tmp:
        torch.save(payload, tmp)


def run_fold(
    i: int, fold: Fold, pool: Split, out: Path, cfg: TrainConfig, keep_data: bool
) -> dict[str, Any]:
    """Train and score one fold; the test scores of every model and the fold's thresholds."""
    fold_dir = out / f"fold{i}"
    splits = fold_splits(pool, fold)
    npz, ckpt = fold_dir / "dataset.npz", fold_dir / "model.pt"
    write_fold_npz(splits, npz)
    log.info(
        "fold %d: test %s, val %s, train %d AOIs (%d/%d/%d pairs)",
        i,
        ",".join(fold.test),
        ",".join(fold.val),
        len(fold.train),
        len(splits["test"].y),
        len(splits["val"].y),
        len(splits["train"].y),
    )
    train(npz, fold_dir, ckpt, cfg, run_evaluation=False)
    if not keep_data:
        npz.unlink()
    dev = resolve_device(cfg.device)
    model, payload = load_checkpoint(ckpt, map_location=dev)
    prob = {
        s: probabilities(model, splits[s], norm_of(payload), cfg.eval_batch_size, dev)
        for s in ("val", "test")
    }
    logit = {
        s: np.log(np.clip(p, 1e-7, 1 - 1e-7) / np.clip(1 - p, 1e-7, 1)) for s, p in prob.items()
    }
    calib = fit_temperature(logit["val"], splits["val"].y)
    _store_calibration(ckpt, calib)
    scores = {
        NETWORK: {s: apply_calibration(logit[s], calib, logits=True) for s in prob},
        **baseline_scores(splits, cfg.seed),
    }
    y_val = splits["val"].y
    return {
        "fold": fold,
        "checkpoint": ckpt,
        "calibration": calib,
        "aoi": splits["test"].aoi,
        "y": splits["test"].y,
        "scores": {m: scores[m]["test"] for m in MODELS},
        "thresholds": {
            m: (
                choose_threshold(y_val, scores[m]["val"], cfg.threshold_rule),
                threshold_for_precision(y_val, scores[m]["val"]),
            )
            for m in MODELS
        },
    }


def _score_subset(
    y: np.ndarray,
    scores: dict[str, np.ndarray],
    thr: dict[str, np.ndarray],
    pthr: dict[str, np.ndarray],
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """Scores of every model; per-pair thresholds (each pair's fold's) become a shift to 0."""
    out = {}
    for m in MODELS:
        s, shifted, pshifted = scores[m], scores[m] - thr[m], scores[m] - pthr[m]
        out[m] = {
            "roc_auc": bootstrap_ci(y, s, roc_auc, n_boot, seed),
            "pr_auc": bootstrap_ci(y, s, average_precision, n_boot, seed),
            "f1": bootstrap_ci(y, shifted, f1_at(0.0), n_boot, seed),
            "recall_at_precision": bootstrap_ci(y, pshifted, recall_at(0.0), n_boot, seed),
            "precision_at_precision_threshold": bootstrap_ci(
                y, pshifted, precision_at(0.0), n_boot, seed
            ),
            "pairs": int(len(y)),
            "damaged": int(np.sum(y == 1)),
        }
    return out


def summarise(
    results: list[dict[str, Any]], n_boot: int, seed: int
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Per-AOI and pooled scores, and the concatenated predictions."""
    cat = {
        "aoi": np.concatenate([r["aoi"] for r in results]).astype(str),
        "y": np.concatenate([r["y"] for r in results]),
        "fold": np.concatenate([np.full(len(r["y"]), i) for i, r in enumerate(results)]),
    }
    for m in MODELS:
        cat[m] = np.concatenate([r["scores"][m] for r in results])
    thr = {
        m: np.concatenate([np.full(len(r["y"]), r["thresholds"][m][0]) for r in results])
        for m in MODELS
    }
    pthr = {
        m: np.concatenate([np.full(len(r["y"]), r["thresholds"][m][1]) for r in results])
        for m in MODELS
    }
    per_aoi = {}
    for aoi in sorted(set(cat["aoi"].tolist())):
        sel = cat["aoi"] == aoi
        per_aoi[aoi] = _score_subset(
            cat["y"][sel],
            {m: cat[m][sel] for m in MODELS},
            {m: thr[m][sel] for m in MODELS},
            {m: pthr[m][sel] for m in MODELS},
            n_boot,
            seed,
        )
    pooled_scores = _score_subset(cat["y"], {m: cat[m] for m in MODELS}, thr, pthr, n_boot, seed)
    return {"per_aoi": per_aoi, "pooled": pooled_scores}, cat


def markdown(report: dict[str, Any]) -> str:
    """Per-AOI and pooled ROC-AUC table, then the pooled operating-point table."""
    head = "| AOI (test) | pairs (damaged) | " + " | ".join(f"{m} ROC-AUC" for m in MODELS)
    lines = [head + " |", "|" + " --- |" * (2 + len(MODELS))]
    rows = list(report["per_aoi"].items()) + [("**pooled**", report["pooled"])]
    for aoi, entry in rows:
        first = entry[MODELS[0]]
        cells = " | ".join(fmt_ci(entry[m]["roc_auc"]) for m in MODELS)
        lines.append(f"| {aoi} | {first['pairs']} ({first['damaged']}) | {cells} |")
    lines += [
        "",
        "| model (pooled) | ROC-AUC | PR-AUC | F1 at val threshold | "
        "recall at val precision-0.8 threshold |",
        "| --- | --- | --- | --- | --- |",
    ]
    for m in MODELS:
        e = report["pooled"][m]
        lines.append(
            f"| {m} | {fmt_ci(e['roc_auc'])} | {fmt_ci(e['pr_auc'])} | "
            f"{fmt_ci(e['f1'])} | {fmt_ci(e['recall_at_precision'])} |"
        )
    return "\n".join(lines) + "\n"


def crossval(
    npz: str | Path,
    out_dir: str | Path,
    k: int,
    cfg: TrainConfig | None = None,
    seed: int = 0,
    n_boot: int = N_BOOT,
    keep_data: bool = False,
) -> dict[str, Any]:
    """Run every fold and write the report (see the module docstring)."""
    cfg = cfg or TrainConfig()
    out = Path(out_dir)
    pool = pooled(npz)
    folds = assign_folds(pool.aoi.tolist(), k, seed)
    out.mkdir(parents=True, exist_ok=True)
    remove_fold_dirs(out)
    results = [run_fold(i, f, pool, out, cfg, keep_data) for i, f in enumerate(folds)]
    report, cat = summarise(results, n_boot, seed)
    report = {
        "dataset": str(npz),
        "k": k,
        "seed": seed,
        "n_boot": n_boot,
        "backbone": cfg.backbone,
        "weights": cfg.weights,
        "epochs": cfg.epochs,
        "protocol": "leave-AOI-out; val = one AOI of the training side; thresholds and "
        "temperature chosen on val; network scores are temperature-"
        "calibrated; pooled F1/recall use each fold's own thresholds",
        "folds": [
            {
                "fold": i,
                "test": list(r["fold"].test),
                "val": list(r["fold"].val),
                "train": list(r["fold"].train),
                "checkpoint": str(r["checkpoint"]),
                "calibration": r["calibration"],
            }
            for i, r in enumerate(results)
        ],
        **report,
    }
    write_text_atomic(out / "crossval.json", json.dumps(report, indent=2) + "\n")
    write_text_atomic(out / "crossval.md", markdown(report))
    with atomic_path(out / "predictions.npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **cat)
    roc_models_plot(cat["y"], {m: cat[m] for m in MODELS}, report["pooled"], out / "roc_models.png")
    log.info("leave-AOI-out, %d folds -> %s\n%s", k, out / "crossval.md", markdown(report))
    return report


def remove_fold_dirs(out: Path) -> None:
    """Remove fold folders of an earlier run, so stale checkpoints never join an ensemble."""
    for d in out.glob("fold*"):
        if d.is_dir():
            shutil.rmtree(d)
