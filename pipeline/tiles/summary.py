"""The tile dataset's summary: tiles, tiles with damage and pixels per class, per AOI and split.

A pixel model's imbalance is a matter of pixels, not pairs: the summary says how many damage,
negative and ignored pixels each split holds, and how many tiles hold damage at all (the ones
training oversamples).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from contract.labels import DAMAGE, NO_DAMAGE, UNKNOWN
from contract.npz_keys import PREWAR as PREWAR_FLAG
from contract.npz_keys import SPLITS, split_key

#: Counts of one AOI and split, in the order of the Markdown table.
TILE_COUNTS = (
    "blocks",
    "tiles",
    "tiles_with_damage",
    "prewar_tiles",
    "damage_pixels",
    "negative_pixels",
    "ignored_pixels",
)


def tile_totals(arrays: dict[str, np.ndarray], split: str) -> dict[str, Any]:
    """Counts of one split over all AOIs, from the arrays written, with the damage share."""
    y = arrays[split_key("y", split)]
    damage, negative = int((y == DAMAGE).sum()), int((y == NO_DAMAGE).sum())
    return {
        "tiles": int(len(y)),
        "tiles_with_damage": int((y == DAMAGE).any(axis=(1, 2)).sum()),
        "prewar_tiles": int(arrays[split_key(PREWAR_FLAG, split)].sum()),
        "damage_pixels": damage,
        "negative_pixels": negative,
        "ignored_pixels": int((y == UNKNOWN).sum()),
        "damage_share_of_labelled": round(damage / max(damage + negative, 1), 6),
    }


def tile_log_line(totals: dict[str, dict[str, Any]]) -> str:
    return ", ".join(
        f"{s} {v['tiles']} tiles ({v['tiles_with_damage']} with damage, "
        f"{100 * v['damage_share_of_labelled']:.2f} % of labelled pixels damage)"
        for s, v in totals.items()
    )


def tile_markdown(summary: dict[str, Any]) -> str:
    """The summary as Markdown tables: per AOI and split, then per split."""
    head = " | ".join(k.replace("_", " ") for k in TILE_COUNTS)
    lines = [
        "# Tile dataset summary",
        "",
        f"Split: `{json.dumps(summary['config'])}`",
        "",
        "Pixels: 1 damage, 0 negative, 255 ignored (near a site, unassessed, cloud, nodata). "
        "Pre-war tiles: temporal negative pairs (two dates before the war, all negative).",
        "",
        f"| AOI | split | {head} |",
        "| --- | --- |" + " ---: |" * len(TILE_COUNTS),
    ]
    for aoi, row in summary["aois"].items():
        for s in SPLITS:
            values = " | ".join(str(row[s][k]) for k in TILE_COUNTS)
            lines.append(f"| {aoi} | {s} | {values} |")
    keys = [k for k in TILE_COUNTS if k != "blocks"] + ["damage_share_of_labelled"]
    lines += [
        "",
        "| split | " + " | ".join(k.replace("_", " ") for k in keys) + " |",
        "| --- |" + " ---: |" * len(keys),
    ]
    for s, v in summary["totals"].items():
        lines.append(f"| {s} | " + " | ".join(str(v[k]) for k in keys) + " |")
    return "\n".join(lines) + "\n"
