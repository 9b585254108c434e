"""Probabilities and logits, one pair of functions for every model, baseline and map.

Numpy only (no torch), so calibration, evaluation, the radar fusion and the benchmarks share
them without importing a network. ``logit`` clips away from 0 and 1 first, because a
probability of exactly 0 or 1 (a saturated network, a tree's leaf) has no finite logit.
"""

from __future__ import annotations

import numpy as np

#: How far from 0 and 1 a probability is kept before its logit is taken.
EPS = 1e-7


def logit(probability: np.ndarray, eps: float = EPS) -> np.ndarray:
    """``log(p / (1 - p))`` in float64, ``p`` clipped to ``[eps, 1 - eps]``."""
    p = np.clip(np.asarray(probability, dtype=np.float64), eps, 1 - eps)
    return np.log(p / (1 - p))


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-z))`` in float64: the probability of a logit."""
    return 1 / (1 + np.exp(-np.asarray(logits, dtype=np.float64)))
