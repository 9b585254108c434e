"""Keys of the two NPZ files that cross from ``pipeline`` to ``damagenet``.

A patch file (one AOI) holds :data:`PATCH_KEYS`; the dataset holds, per split ``s``,
``Xb_s``, ``Xa_s`` and ``y_s`` (the study's layout) plus the :data:`DATASET_EXTRA` arrays.
The study's flat layout (:data:`FLAT_KEYS`) is read too.
"""

from __future__ import annotations

SPLITS: tuple[str, ...] = ("train", "val", "test")
PATCH_KEYS: tuple[str, ...] = (
    "before",
    "after",
    "label",
    "row",
    "col",
    "lon",
    "lat",
    "transform",
    "aoi",
    "summary",
)
#: Per-split arrays besides Xb/Xa/y: position and provenance of every pair.
DATASET_EXTRA: tuple[str, ...] = ("aoi", "row", "col", "lon", "lat", "block")
FLAT_KEYS: tuple[str, ...] = ("x_before", "x_after", "y")
#: Optional 0-d string array in a patch file and in the dataset: the scenes' processing level
#: (:mod:`contract.processing_level`); absent in files written before it was recorded.
PROCESSING_LEVEL = "processing_level"
#: 0-d string array naming what a dataset holds: :data:`PATCHES` (``y_<split>`` of shape (N,),
#: one 0/1 label per pair, the study's layout; files without the key are patch datasets) or
#: :data:`TILES` (``y_<split>`` of shape (N, H, W) uint8 per-pixel targets: 1 change or damage,
#: 0 negative, 255 ignore, i.e. :data:`contract.labels.UNKNOWN`). Both keep the other keys.
DATASET_KIND = "kind"
#: Per-split arrays of a tile dataset besides :data:`DATASET_EXTRA`: damage pixels per tile
#: (int32; training oversamples tiles holding damage) and 1 for a tile of a temporal negative
#: pair (uint8: two dates before the war, all negative).
DAMAGE_PIXELS = "damage_pixels"
PREWAR = "prewar"
TILE_EXTRA: tuple[str, ...] = (DAMAGE_PIXELS, PREWAR)
PATCHES = "patches"
TILES = "tiles"
#: tile sides are a multiple of this cell, px: the patch model's window, the grid on which a
#: tile dataset is scored at patch level and a pixel map tallies its cells
TILE_CELL = 16


def split_key(kind: str, split: str) -> str:
    """``split_key("Xb", "train") == "Xb_train"``; kind is Xb, Xa, y or a DATASET_EXTRA name."""
    return f"{kind}_{split}"
