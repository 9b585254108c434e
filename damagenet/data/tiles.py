"""Loading a tile dataset: both dates of every tile and its per-pixel target.

``pipeline dataset --tile-size T`` writes, per split ``s``, ``Xb_s`` and ``Xa_s`` (N, 4, T, T)
digital numbers in B02, B03, B04, B08, ``y_s`` (N, T, T) uint8 with 1 damage or change, 0
assessed and undamaged, 255 unknown (:mod:`contract.labels`), the per-tile provenance arrays of
:data:`contract.npz_keys.DATASET_EXTRA`, and :data:`contract.npz_keys.DATASET_KIND` =
:data:`contract.npz_keys.TILES`. The tiles become the same :class:`~damagenet.data.pairs.Split`
records as patches, with a 3-D ``y``; the patch loader (:func:`damagenet.data.pairs.load_splits`)
refuses tile datasets and this one refuses patch datasets, each saying which model reads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from contract.labels import DAMAGE, NO_DAMAGE, UNKNOWN
from contract.npz_keys import TILES
from damagenet.data.pairs import Split, check_pairs, dataset_kind, open_npz, study_splits
from damagenet.errors import DamagenetError

TARGET_VALUES = (NO_DAMAGE, DAMAGE, UNKNOWN)


def load_tiles(path: str | Path) -> dict[str, Split]:
    """The splits of a tile dataset, validated; the error names the file and the problem."""
    path = Path(path)
    with open_npz(path) as d:
        kind = dataset_kind(d)
        if kind != TILES:
            raise DamagenetError(
                f"{path}: a {kind} dataset (one label per pair); the pixel model "
                "(--arch siamese-unet) trains on tile datasets: 'pipeline dataset --tile-size 64'"
            )
        splits = study_splits(d, path, int_labels=False)
    for s, sp in splits.items():
        _validate(path, s, sp)
    sizes = {sp.before.shape[-1] for sp in splits.values() if len(sp.y)}
    if len(sizes) > 1:
        raise DamagenetError(f"{path}: splits have different tile sizes {sorted(sizes)}")
    return splits


def _validate(path: Path, name: str, sp: Split) -> None:
    """Shapes, bands and provenance as for patches; one uint8 target code per pixel."""
    check_pairs(path, name, sp, "tiles")
    n, _, h, w = sp.before.shape
    if sp.y.shape != (n, h, w):
        raise DamagenetError(
            f"{path}: {name}: targets of shape {sp.y.shape} for tiles {sp.before.shape}; a tile "
            f"dataset holds one target per pixel, (N, H, W)"
        )
    if sp.y.dtype != np.uint8:
        raise DamagenetError(f"{path}: {name}: targets are {sp.y.dtype}, expected uint8")
    found = np.unique(sp.y)
    if not np.isin(found, TARGET_VALUES).all():
        raise DamagenetError(
            f"{path}: {name}: target values {found[:6].tolist()}; expected 1 damage, 0 no "
            f"damage, {UNKNOWN} unknown"
        )


def require_both_classes(path: str | Path, name: str, sp: Split) -> None:
    """Training and validation need damaged and undamaged pixels somewhere in the split."""
    found = {int(v) for v in np.unique(sp.y)} - {UNKNOWN}
    if found != {NO_DAMAGE, DAMAGE}:
        what = "no labelled pixel" if not found else f"only class {sorted(found)}"
        raise DamagenetError(
            f"{path}: split {name!r} has {what} in {len(sp.y)} tiles; training and validation "
            "need both damaged and undamaged pixels"
        )


def holds_damage(y: np.ndarray) -> np.ndarray:
    """(N,) bool: which tiles of (N, H, W) targets hold at least one damaged pixel."""
    return (y == DAMAGE).reshape(len(y), -1).any(axis=1)
