"""Small patch datasets with planted change, for the model tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def planted(n: int, rng: np.random.Generator, size: int = 16) -> tuple[np.ndarray, ...]:
    """Before/after DN pairs; damaged pairs get a bright, low-NIR rubble patch in 'after'."""
    base = rng.integers(500, 2500, size=(n, 4, 1, 1)).astype(np.float64)
    before = base * (1 + 0.1 * rng.standard_normal((n, 4, size, size)))
    after = before * rng.uniform(0.95, 1.05, size=(n, 4, 1, 1)) + 30 * rng.standard_normal(
        (n, 4, size, size)
    )
    y = (np.arange(n) % 2).astype(np.int64)
    for i in np.nonzero(y)[0]:
        r, c = rng.integers(0, size - 6, size=2)
        after[i, :3, r : r + 6, c : c + 6] += 1500
        after[i, 3, r : r + 6, c : c + 6] *= 0.5
    clip = lambda a: np.clip(a, 1, 10000).astype(np.uint16)  # noqa: E731
    return clip(before), clip(after), y


def write_study_npz(path: Path, seed: int = 0, sizes=(192, 64, 96), aois=True) -> Path:
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in zip(("train", "val", "test"), sizes, strict=True):
        xb, xa, y = planted(n, rng)
        arrays.update({f"Xb_{split}": xb, f"Xa_{split}": xa, f"y_{split}": y})
        if aois:
            arrays[f"aoi_{split}"] = np.where(np.arange(n) < n // 2, "bucha", "irpin")
            offset = {"train": 0, "val": 1000, "test": 2000}[split]
            arrays[f"row_{split}"] = offset + 16 * (np.arange(n) // 8)
            arrays[f"col_{split}"] = 16 * (np.arange(n) % 8)
    np.savez(path, **arrays)
    return path
