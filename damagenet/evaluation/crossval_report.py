"""Cross-validation figures: every fold's test units pooled, per AOI and over all AOIs.

Pooled figures resample whole AOIs (each AOI was a fold's test ground); figures of one AOI
resample its 640 m ground blocks (from the units' positions; without positions there is one
group and no interval). F1, precision and recall pool each unit at its own fold's thresholds
(scores shifted by them), ROC-AUC and PR-AUC rank all units together (the networks' scores are
temperature-calibrated per fold, so folds share a scale). Every model is compared with the
network by a paired interval on the difference (and, on tile datasets, the baselines with the
patch model when it was trained beside).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from damagenet.evaluation.crossval_kinds import FoldLevel
from damagenet.evaluation.intervals import groups_for
from damagenet.evaluation.scores import Scored, compare_all, fmt_ci, fmt_diff


def pool_level(parts: list[tuple[int, FoldLevel]]) -> tuple[FoldLevel, np.ndarray]:
    """The folds' units of one level as one :class:`FoldLevel`, and each unit's fold."""
    levels = [p for _, p in parts]
    models = {
        m: Scored(
            np.concatenate([p.models[m].score for p in levels]),
            np.concatenate([np.full(len(p.y), p.models[m].threshold) for p in levels]),
            np.concatenate([np.full(len(p.y), p.models[m].precision_threshold) for p in levels]),
        )
        for m in levels[0].models
    }
    lons = [p.lon for p in levels if p.lon is not None]
    lats = [p.lat for p in levels if p.lat is not None]
    positions = len(lons) == len(lats) == len(levels)
    pooled = FoldLevel(
        np.concatenate([p.y for p in levels]),
        np.concatenate([p.aoi for p in levels]),
        np.concatenate(lons) if positions else None,
        np.concatenate(lats) if positions else None,
        models,
    )
    return pooled, np.concatenate([np.full(len(p.y), i) for i, p in parts])


def _subset(level: FoldLevel, sel: np.ndarray) -> FoldLevel:
    return FoldLevel(
        level.y[sel],
        level.aoi[sel],
        None if level.lon is None else level.lon[sel],
        None if level.lat is None else level.lat[sel],
        {
            m: Scored(
                s.score[sel],
                np.asarray(s.threshold)[sel],
                np.asarray(s.precision_threshold)[sel],
            )
            for m, s in level.models.items()
        },
    )


def level_report(
    level: FoldLevel,
    unit: str,
    rule: str,
    pairs: list[tuple[str, str]],
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """Per-AOI and pooled scores of every model, and the paired differences of ``pairs``."""
    per_aoi, per_aoi_diff = {}, {}
    for aoi in sorted(set(level.aoi.tolist())):
        sub = _subset(level, level.aoi == aoi)
        grouping = groups_for(sub.aoi, sub.lon, sub.lat)
        result = compare_all(sub.y, sub.models, pairs, grouping.ids, n_boot, seed, unit)
        per_aoi[aoi], per_aoi_diff[aoi] = result["scores"], result["paired_differences"]
    grouping = groups_for(level.aoi, level.lon, level.lat)
    pooled = compare_all(level.y, level.models, pairs, grouping.ids, n_boot, seed, unit)
    return {
        "units": rule,
        "per_aoi": per_aoi,
        "pooled": pooled["scores"],
        "paired_differences": pooled["paired_differences"],
        "per_aoi_paired_differences": per_aoi_diff,
    }


def markdown(report: dict[str, Any]) -> str:
    """Per level: per-AOI and pooled ROC-AUC, pooled operating points, paired differences."""
    lines: list[str] = []
    for name, level in report["levels"].items():
        if len(report["levels"]) > 1:
            lines += [f"### {name} level", "", f"Units: {level['units']}.", ""]
        if "skipped" in level:
            lines += [f"Not scored: {level['skipped']}.", ""]
            continue
        lines += _level_markdown(level) + [""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _level_markdown(level: dict[str, Any]) -> list[str]:
    models = list(level["pooled"])
    unit = next(
        k for k in ("pairs", "pixels", "cells", "points") if k in level["pooled"][models[0]]
    )
    head = f"| AOI (test) | {unit} (damaged) | " + " | ".join(f"{m} ROC-AUC" for m in models)
    lines = [head + " |", "|" + " --- |" * (2 + len(models))]
    rows = list(level["per_aoi"].items()) + [("**pooled**", level["pooled"])]
    for aoi, entry in rows:
        first = entry[models[0]]
        cells = " | ".join(fmt_ci(entry[m]["roc_auc"]) for m in models)
        lines.append(f"| {aoi} | {first[unit]} ({first['damaged']}) | {cells} |")
    lines += [
        "",
        "| model (pooled) | ROC-AUC | PR-AUC | F1 at val threshold | "
        "recall at val precision-0.8 threshold |",
        "| --- | --- | --- | --- | --- |",
    ]
    for m in models:
        e = level["pooled"][m]
        lines.append(
            f"| {m} | {fmt_ci(e['roc_auc'])} | {fmt_ci(e['pr_auc'])} | "
            f"{fmt_ci(e['f1'])} | {fmt_ci(e['recall_at_precision'])} |"
        )
    lines += [
        "",
        "| paired difference (pooled) | ROC-AUC | PR-AUC | F1 |",
        "| --- | --- | --- | --- |",
    ]
    for pair, d in level["paired_differences"].items():
        lines.append(
            f"| {pair} | {fmt_diff(d['roc_auc'])} | {fmt_diff(d['pr_auc'])} | {fmt_diff(d['f1'])} |"
        )
    return lines
