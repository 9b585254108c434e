"""Where a map lies on the model's own training ground: train, validation, test or unseen.

A checkpoint trained by this project records the patches (row, col in the AOI grid) of each
split per AOI (``training_ground``). A map over such an AOI mixes ground the model learned from
with ground it never saw; this module paints the split of every map pixel and names the part of
every window, so metrics against labels can be computed on the test part only and the rest
reported apart, labelled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from contract.windows import window_any

UNSEEN, TRAIN, VAL, TEST = 0, 1, 2, 3
PART_NAMES = {TRAIN: "train", VAL: "val", TEST: "test", UNSEEN: "never_seen"}
#: a window touching training ground counts as train, then validation, then test
PRECEDENCE = (TRAIN, VAL, TEST)


@dataclass(frozen=True)
class TrainingGround:
    """The split patches of one AOI in its grid."""

    aoi: str
    patch_size: int
    patches: Mapping[int, np.ndarray]  # part code -> (N, 2) int (row, col)

    def rows(self, row0: int, n_rows: int, width: int) -> np.ndarray:
        """The split code of raster rows ``row0:row0 + n_rows`` (uint8, 0 = never seen)."""
        out = np.zeros((n_rows, width), dtype=np.uint8)
        s = self.patch_size
        for code in PRECEDENCE[::-1]:  # paint test, then val, then train on top
            rc = self.patches[code]
            hit = rc[(rc[:, 0] < row0 + n_rows) & (rc[:, 0] + s > row0)]
            for r, c in hit.tolist():
                out[max(r - row0, 0) : r - row0 + s, max(c, 0) : c + s] = code
        return out

    def counts(self) -> dict[str, int]:
        return {PART_NAMES[c]: int(len(self.patches[c])) for c in PRECEDENCE}


def window_parts(
    split_rows: np.ndarray, rows: np.ndarray, cols: np.ndarray, size: int
) -> np.ndarray:
    """The part of each window: train if it touches train ground, else val, else test."""
    part = np.full((len(rows), len(cols)), UNSEEN, dtype=np.uint8)
    for code in PRECEDENCE[::-1]:
        part[window_any(split_rows == code, rows, cols, size)] = code
    return part


def training_ground(
    payload: Mapping[str, Any], aoi: str | None
) -> tuple[TrainingGround | None, dict[str, Any]]:
    """The AOI's training ground (or None) and a statement of it for the map's summary."""
    recorded = payload.get("training_ground")
    if not recorded:
        return None, {
            "status": "unknown",
            "aoi": aoi,
            "note": "the checkpoint does not record its training ground (an "
            "imported model?): metrics against labels may include ground "
            "the model was trained on",
        }
    if aoi is None:
        return None, {
            "status": "unknown",
            "aoi": None,
            "note": "the scenes carry no AOI tag, so the map cannot be matched to "
            "the checkpoint's training ground",
        }
    if aoi not in recorded["aois"]:
        return None, {
            "status": "never_seen",
            "aoi": aoi,
            "trained_on": sorted(recorded["aois"]),
            "note": f"the model never saw AOI {aoi!r} in training: every window is held out",
        }
    parts = recorded["aois"][aoi]
    patches = {
        code: np.asarray(parts.get(PART_NAMES[code], np.zeros((0, 2))), dtype=np.int64).reshape(
            -1, 2
        )
        for code in PRECEDENCE
    }
    ground = TrainingGround(aoi, int(recorded["patch_size"]), patches)
    return ground, {
        "status": "training_aoi",
        "aoi": aoi,
        "patches": ground.counts(),
        "note": f"AOI {aoi!r} is training ground of this model: metrics are "
        "computed on the test part only; train and validation figures "
        "are reported apart and are optimistic",
    }
