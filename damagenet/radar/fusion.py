"""Radar and optical evidence together, per pixel or per building.

Two ways, measured against each other in ``benchmarks/pwtt_synthetic.py``:

- **training-free** (PWTT's combined mode, in spirit): each sensor's statistic is standardised
  with its own pre-war variation, ``z = (x - mean_null) / sd_null``, the null being the same
  statistic computed where no war happened (a radar test between two pre-war windows, an
  optical change between two pre-war scenes), and the z-scores are added. It assumes the two
  sensors' errors independent and needs no labels. Where a sensor saw nothing (optical under
  cloud) its z is 0, its null expectation: no evidence either way, so the sum falls back on the
  other sensor instead of going missing.
- **learned**: a small gradient-boosted model (scikit-learn's histogram GBT) on the radar
  statistics stacked with the optical score, missing optical values left missing (the model
  learns what cloud means). It needs labelled towns and is only ever scored on others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from damagenet import logits

#: A normal distribution's standard deviation per median absolute deviation.
ROBUST_SD = 1.4826
#: Probabilities are kept this far from 0 and 1 before the logit (float32 sigmoids reach both).
PROB_EPS = 1e-4
#: Fitted model settings: small and deterministic (no early stopping, fixed seed).
GBT_PARAMS = {"max_iter": 150, "max_depth": 3, "learning_rate": 0.1, "early_stopping": False}


@dataclass(frozen=True)
class NullStats:
    """One sensor statistic's mean and standard deviation where nothing changed."""

    mean: float
    sd: float

    @classmethod
    def of(cls, null_values: np.ndarray) -> NullStats:
        """From the statistic's values on a no-war pair (NaN ignored); refuses a constant."""
        x = np.asarray(null_values, dtype=np.float64)
        x = x[np.isfinite(x)]
        if x.size < 2 or not float(np.std(x)) > 0:
            raise ValueError("the null statistic needs at least two different finite values")
        return cls(float(np.mean(x)), float(np.std(x)))

    @classmethod
    def robust(cls, values: np.ndarray) -> NullStats:
        """The median and ``1.4826 MAD`` (a normal distribution's sd) of ``values`` (NaN
        ignored), for a statistic whose no-change values are only known to be the bulk of the
        map: damage on a minority of pixels moves neither much. Where over half the values are
        equal (MAD 0) the standard deviation stands in; a constant is refused."""
        x = np.asarray(values, dtype=np.float64)
        x = x[np.isfinite(x)]
        if x.size < 2:
            raise ValueError("the null statistic needs at least two finite values")
        median = float(np.median(x))
        sd = ROBUST_SD * float(np.median(np.abs(x - median))) or float(np.std(x))
        if not sd > 0:
            raise ValueError("the null statistic needs at least two different finite values")
        return cls(median, sd)

    def z(self, values: np.ndarray) -> np.ndarray:
        """``(x - mean) / sd``, NaN kept."""
        return (np.asarray(values, dtype=np.float64) - self.mean) / self.sd


def logit(probability: np.ndarray) -> np.ndarray:
    """A model's probability on the logit scale, clipped at ``PROB_EPS`` (1e-4): there its
    no-change values spread roughly symmetrically, as a z-score assumes."""
    return logits.logit(probability, PROB_EPS)


def training_free(z_scores: Sequence[np.ndarray]) -> np.ndarray:
    """Sum of the sensors' z-scores, a missing one counting 0; missing where all are."""
    stack = np.stack([np.asarray(z, dtype=np.float64) for z in z_scores])
    seen = np.isfinite(stack)
    total = np.where(seen, stack, 0.0).sum(axis=0)
    return np.where(seen.any(axis=0), total, np.nan)


def learned_model(seed: int = 0) -> Any:
    """The learned fusion's classifier, unfitted (a HistGradientBoostingClassifier; sklearn is
    imported only here)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(random_state=seed, **GBT_PARAMS)


@dataclass(frozen=True)
class LearnedFusion:
    """A fitted model and the feature columns it uses: a column never seen in training (all
    missing, as optical features are under total cloud) is left out, not guessed."""

    model: Any
    columns: tuple[int, ...]

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Damage probability of each row of ``features``."""
        x = np.asarray(features, dtype=np.float64)[:, list(self.columns)]
        return self.model.predict_proba(x)[:, 1]


def fit_learned(
    features: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None, seed: int = 0
) -> LearnedFusion:
    """Fit :func:`learned_model` on ``(n, k)`` features (NaN allowed) and 0/1 labels."""
    y = np.asarray(labels).astype(int)
    if len(np.unique(y)) < 2:
        raise ValueError("the learned fusion needs damaged and intact examples to train on")
    x = np.asarray(features, dtype=np.float64)
    columns = tuple(int(c) for c in np.flatnonzero(np.isfinite(x).any(axis=0)))
    if not columns:
        raise ValueError("every feature is missing in the training units")
    model = learned_model(seed).fit(x[:, list(columns)], y, sample_weight=weights)
    return LearnedFusion(model, columns)
