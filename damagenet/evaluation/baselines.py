"""Two baselines the Siamese network must beat on the same test pairs.

- ``change``: a training-free change detector. Per pixel, the mean over bands of
  |after - before| reflectance; per patch, the maximum over pixels (the largest local change,
  what a bomb crater or a collapsed roof produces). Nothing is fitted but the decision
  threshold, chosen on validation like the network's.
- ``gbt``: scikit-learn's HistGradientBoostingClassifier on hand-made per-patch features: for
  each band, NDVI, NDWI and brightness, the mean, std and 10/50/90th percentiles before, after,
  of their difference and of its magnitude, plus the before/after correlation per band. A
  strong, cheap baseline of remote-sensing change classification; fitted on the train split,
  early-stopped on a slice of it, its threshold chosen on validation.

Inputs are the dataset's raw patches (L2A digital numbers, bands B02, B03, B04, B08), scaled by
1/10000 to reflectance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from contract.bands import BANDS, QUANTIFICATION

BASELINES = ("change", "gbt")
PERCENTILES = (10, 50, 90)
_B = {b: i for i, b in enumerate(BANDS)}


def reflectance(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) / QUANTIFICATION


def change_per_pixel(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """(N, H, W): the training-free detector's per-pixel change, mean over bands of
    |after - before| reflectance."""
    return np.abs(reflectance(after) - reflectance(before)).mean(axis=1)


def change_magnitude(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Per-patch score of the training-free detector: max over pixels of mean |after - before|."""
    diff = change_per_pixel(before, after)
    return diff.reshape(len(diff), -1).max(axis=1)


def _norm_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a - b) / np.maximum(a + b, 1e-6)


def layers(x: np.ndarray) -> np.ndarray:
    """(N, 7, S, S): the 4 bands, NDVI, NDWI (green vs NIR) and brightness (band mean)."""
    ndvi = _norm_diff(x[:, _B["B08"]], x[:, _B["B04"]])
    ndwi = _norm_diff(x[:, _B["B03"]], x[:, _B["B08"]])
    return np.concatenate([x, ndvi[:, None], ndwi[:, None], x.mean(axis=1, keepdims=True)], axis=1)


def _stats(layers: np.ndarray) -> np.ndarray:
    flat = layers.reshape(layers.shape[0], layers.shape[1], -1)
    pct = np.percentile(flat, PERCENTILES, axis=2)  # (P, N, L)
    return np.concatenate([flat.mean(axis=2), flat.std(axis=2), *pct], axis=1)


def _correlation(b: np.ndarray, a: np.ndarray) -> np.ndarray:
    fb = b.reshape(b.shape[0], b.shape[1], -1)
    fa = a.reshape(a.shape[0], a.shape[1], -1)
    fb = fb - fb.mean(axis=2, keepdims=True)
    fa = fa - fa.mean(axis=2, keepdims=True)
    den = np.sqrt((fb**2).sum(axis=2) * (fa**2).sum(axis=2))
    return (fb * fa).sum(axis=2) / np.maximum(den, 1e-12)


def patch_features(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """(N, F) float32 features of raw (N, 4, S, S) patch pairs (see the module docstring)."""
    lb, la = layers(reflectance(before)), layers(reflectance(after))
    d = la - lb
    feats = [
        _stats(lb),
        _stats(la),
        _stats(d),
        _stats(np.abs(d)),
        _correlation(reflectance(before), reflectance(after)),
    ]
    return np.concatenate(feats, axis=1).astype(np.float32)


def fit_gbt(
    features: np.ndarray,
    y: np.ndarray,
    seed: int = 0,
    max_iter: int = 300,
    learning_rate: float = 0.05,
) -> HistGradientBoostingClassifier:
    """Gradient-boosted trees, early-stopped on 15% of the training pairs (never on val/test)."""
    model = HistGradientBoostingClassifier(
        max_iter=max_iter,
        learning_rate=learning_rate,
        max_leaf_nodes=15,
        l2_regularization=1.0,
        early_stopping=True,
        validation_fraction=0.15,
        n_iter_no_change=20,
        random_state=seed,
    )
    return model.fit(features, y)


def baseline_scores(
    splits: dict[str, Any], seed: int = 0, names: tuple[str, ...] = ("val", "test")
) -> dict[str, dict[str, np.ndarray]]:
    """Damage scores of both baselines on the named splits: ``{baseline: {split: (N,)}}``.

    ``splits`` maps split names to objects with ``before``, ``after`` and ``y`` (the dataset's
    :class:`damagenet.data.Split`); the tree model is fitted on ``splits["train"]``.
    """
    out: dict[str, dict[str, np.ndarray]] = {"change": {}, "gbt": {}}
    for s in names:
        out["change"][s] = change_magnitude(splits[s].before, splits[s].after)
    tr = splits["train"]
    gbt = fit_gbt(patch_features(tr.before, tr.after), tr.y, seed)
    for s in names:
        out["gbt"][s] = gbt.predict_proba(patch_features(splits[s].before, splits[s].after))[:, 1]
    return out
