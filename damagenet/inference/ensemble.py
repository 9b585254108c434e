"""Several checkpoints as one model: mean damage probability and its spread.

The fold models of ``damagenet crossval`` were each trained without one group of AOIs; where
they disagree, the map should say so. For a batch of windows every member normalises the raw
patches with its own statistics, applies its own calibration (when the checkpoint carries one)
and predicts; the ensemble returns the mean probability and the standard deviation across
members (population std, 0 for a single member), which ``damagenet predict --ckpt A --ckpt B``
writes as ``<stem>_uncertainty.tif``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from damagenet.data.pairs import Normalisation, Split, to_tensors
from damagenet.errors import DamagenetError
from damagenet.evaluation.calibration import apply_calibration
from damagenet.inference.scoring import predict_logits
from damagenet.models.checkpoint import load_checkpoint, norm_of


@dataclass
class Member:
    """One checkpoint of the ensemble, ready to predict."""

    model: torch.nn.Module
    norm: Normalisation
    patch_size: int
    calibration: dict[str, Any] | None
    path: str


def load_ensemble(paths: list[str | Path], device: torch.device | str = "cpu") -> list[Member]:
    """Load every checkpoint; refuse an empty list or members of different patch sizes."""
    if not paths:
        raise DamagenetError("an ensemble needs at least one checkpoint")
    members = []
    for p in paths:
        model, payload = load_checkpoint(p, map_location=device)
        members.append(
            Member(
                model.to(device),
                norm_of(payload),
                int(payload["patch_size"]),
                payload.get("calibration"),
                str(p),
            )
        )
    sizes = {m.patch_size for m in members}
    if len(sizes) > 1:
        detail = ", ".join(f"{m.path}: {m.patch_size} px" for m in members)
        raise DamagenetError(f"ensemble checkpoints differ in patch size ({detail})")
    return members


def mean_and_spread(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(members, N) probabilities -> per-pair mean and population standard deviation."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] == 0:
        raise DamagenetError(f"expected (members, N) probabilities, got {probs.shape}")
    return probs.mean(axis=0), probs.std(axis=0)


def member_probabilities(
    members: list[Member],
    before: np.ndarray,
    after: np.ndarray,
    batch_size: int = 512,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """(members, N) calibrated probabilities for raw (N, 4, S, S) patch pairs (DN)."""
    device = torch.device(device)
    raw = Split(before, after, np.zeros(len(before), dtype=np.int64))
    rows = []
    for m in members:
        logits = predict_logits(m.model, to_tensors(raw, m.norm), batch_size, device)
        rows.append(apply_calibration(logits, m.calibration, logits=True))
    return np.stack(rows) if rows else np.zeros((0, len(before)))


def ensemble_predict(
    members: list[Member],
    before: np.ndarray,
    after: np.ndarray,
    batch_size: int = 512,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Mean damage probability and its spread (std) over members for a window batch."""
    return mean_and_spread(member_probabilities(members, before, after, batch_size, device))


class EnsembleScorer:
    """Scores window batches with every member's own scorer; returns (N, 2): mean and std.

    Each member keeps its own band order, normalisation and calibration (one
    :class:`~damagenet.inference.PairScorer` per checkpoint), so the map's window loop, strips
    and dask path are the single-model ones; ``layers`` tells them to keep both columns.
    """

    layers = 2

    def __init__(self, members: Sequence[Callable[[np.ndarray, np.ndarray], np.ndarray]]) -> None:
        self.members = list(members)

    def __call__(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        mean, std = mean_and_spread(np.stack([m(before, after) for m in self.members]))
        return np.stack([mean, std], axis=-1)
