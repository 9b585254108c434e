"""The two baselines per pixel, for tile datasets: the change detector and the trees.

- ``change``: the training-free detector's per-pixel change (mean over bands of
  |after - before| reflectance, :func:`damagenet.evaluation.baselines.change_per_pixel`).
- ``gbt``: the same gradient-boosted trees as for patches (:func:`damagenet.evaluation.
  baselines.fit_gbt`), on per-pixel features: the 7 layers of each date (4 bands, NDVI, NDWI,
  brightness) and their difference, each as the pixel's value and its mean over 3 x 3 and
  7 x 7 px, plus the largest change within 3 x 3 px and the spread of the brightness change
  within 5 x 5 px (:data:`N_FEATURES` in all). Neighbourhoods stop at the tile's edge
  (mirrored). Trained on at most :data:`MAX_TRAIN_PIXELS` labelled pixels of the train split
  (all damage pixels up to half of them, the rest undamaged, drawn with a seed): thousands of
  pixels of a tile say much the same, and trees on a sample fit in seconds. At most
  :data:`GBT_ROUNDS` rounds at learning rate 0.1 (the patch trees: 300 at 0.05), early-stopped
  on 15 % of the sample.

Thresholds are chosen on validation by the caller, as for every model.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from contract.labels import DAMAGE, UNKNOWN
from damagenet.data.pairs import Split
from damagenet.evaluation.baselines import change_per_pixel, fit_gbt, layers, reflectance

#: labelled train pixels the trees are fitted on, at most
MAX_TRAIN_PIXELS = 40_000
#: tiles whose features are computed at once (bounds memory: 32 x 64 x 64 x 65 float32, 34 MB)
CHUNK_TILES = 32
#: neighbourhood sides of the mean filters
MEAN_SIDES = (3, 7)
N_FEATURES = 21 * (1 + len(MEAN_SIDES)) + 2
#: boosting rounds of the per-pixel trees, at most
GBT_ROUNDS = 100


def pixel_features(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """(N, F, H, W) float32 features of raw (N, 4, H, W) tile pairs (module docstring)."""
    lb, la = layers(reflectance(before)), layers(reflectance(after))
    stack = np.concatenate([lb, la, la - lb], axis=1)
    means = [ndimage.uniform_filter(stack, size=(1, 1, k, k), mode="mirror") for k in MEAN_SIDES]
    change = np.abs(la - lb)[:, :4].mean(axis=1, keepdims=True)
    largest = ndimage.maximum_filter(change, size=(1, 1, 3, 3), mode="mirror")
    bright = (la - lb)[:, -1:]
    mean5 = ndimage.uniform_filter(bright, size=(1, 1, 5, 5), mode="mirror")
    sq5 = ndimage.uniform_filter(bright**2, size=(1, 1, 5, 5), mode="mirror")
    spread = np.sqrt(np.maximum(sq5 - mean5**2, 0.0))
    return np.concatenate([stack, *means, largest, spread], axis=1).astype(np.float32)


def _training_sample(split: Split, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(tile, row, col) of the sampled labelled train pixels, and their 0/1 labels."""
    rng = np.random.default_rng(seed)
    pos = np.flatnonzero(split.y == DAMAGE)
    neg = np.flatnonzero((split.y != DAMAGE) & (split.y != UNKNOWN))
    n_pos = min(len(pos), MAX_TRAIN_PIXELS // 2)
    n_neg = min(len(neg), MAX_TRAIN_PIXELS - n_pos)
    chosen = [rng.choice(pos, n_pos, replace=False), rng.choice(neg, n_neg, replace=False)]
    flat = np.sort(np.concatenate(chosen))
    return flat, (split.y.reshape(-1)[flat] == DAMAGE).astype(np.int64)


def _features_at(split: Split, flat: np.ndarray) -> np.ndarray:
    """Features of the pixels ``flat`` (indices into the split's (N, H, W) pixels)."""
    per_tile = split.y[0].size
    out = np.empty((len(flat), N_FEATURES), dtype=np.float32)
    tiles = flat // per_tile
    for start in range(0, len(split.y), CHUNK_TILES):
        sel = (tiles >= start) & (tiles < start + CHUNK_TILES)
        if not sel.any():
            continue
        stop = start + CHUNK_TILES
        f = pixel_features(split.before[start:stop], split.after[start:stop])
        f = np.moveaxis(f, 1, -1).reshape(-1, N_FEATURES)
        out[sel] = f[flat[sel] - start * per_tile]
    return out


def _predict(model, split: Split) -> np.ndarray:
    """(N, H, W) damage probability of every pixel, a chunk of tiles at a time."""
    out = np.empty(split.y.shape, dtype=np.float64)
    for start in range(0, len(split.y), CHUNK_TILES):
        stop = start + CHUNK_TILES
        f = pixel_features(split.before[start:stop], split.after[start:stop])
        flat = np.moveaxis(f, 1, -1).reshape(-1, N_FEATURES)
        out[start:stop] = model.predict_proba(flat)[:, 1].reshape(out[start:stop].shape)
    return out


def pixel_baseline_maps(
    splits: dict[str, Split], seed: int = 0, names: tuple[str, ...] = ("val", "test")
) -> dict[str, dict[str, np.ndarray]]:
    """Per-pixel scores of both baselines on the named splits: ``{baseline: {split: (N, H, W)}}``;
    the trees are fitted on a sample of ``splits["train"]``'s labelled pixels."""
    out: dict[str, dict[str, np.ndarray]] = {"change": {}, "gbt": {}}
    for s in names:
        out["change"][s] = change_per_pixel(splits[s].before, splits[s].after)
    flat, y = _training_sample(splits["train"], seed)
    gbt = fit_gbt(_features_at(splits["train"], flat), y, seed, GBT_ROUNDS, 0.1)
    for s in names:
        out["gbt"][s] = _predict(gbt, splits[s])
    return out
