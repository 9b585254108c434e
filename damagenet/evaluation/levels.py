"""Pixel, patch and point level: the units a pixel model and a patch model are compared on.

A tile dataset holds per-pixel targets (1 damage or change, 0 negative, 255 unknown). From
them, on the same held-out tiles (``../shared/reference/change_detection.md``, "Comparing a
pixel model with a patch model fairly"):

- **pixel** (:class:`PixelLevel`): every labelled pixel (255 is never scored);
- **patch** (:class:`CellLevel`): the cells of the patch model's grid (16 px, side by side,
  the stride ``pipeline dataset`` keeps); a cell is damaged when it holds a damage pixel (the
  study's rule), undamaged when it holds labelled pixels and none is damage, unknown (not
  scored) when none is labelled; a cell with a pixel unobserved in either date is not scored,
  as ``pipeline patches`` drops such windows. A pixel map is scored by its maximum over the
  cell, a patch model by its own score of the cell;
- **point** (:class:`PointLevel`): the dataset records no UNOSAT site positions, so sites are
  derived from what it holds: each connected group of damage pixels of a tile is one site
  (the disc ``pipeline targets`` draws around a site, or a region of a change map), placed at
  its pixel nearest the group's centre. Negatives: the same points in the pre-war tile of the
  same place (a temporal negative pair, when the dataset holds one), and points on a 16 px
  lattice of ground at least :data:`FAR_PX` px from any damage or unknown pixel; those whose
  cell's before image looks built-up (:func:`contract.built_up.built_up`) come first among
  them and are counted apart (``far_negatives_built_up``), as harder negatives than fields. A
  pixel map scores a point by its maximum over the 3 x 3 pixels around it, a patch model by
  its cell.

Every unit remembers its tile, so units inherit their tile's group (AOI or ground block) for
the intervals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from scipy import ndimage

from contract.bands import SCENE_NODATA
from contract.built_up import built_up
from contract.labels import DAMAGE, NO_DAMAGE, UNKNOWN
from contract.npz_keys import TILE_CELL
from damagenet.data.pairs import Split

#: the patch model's cell, px (the map's cell: damagenet.inference.tiles.MAP_CELL)
CELL = TILE_CELL
#: side of the window a pixel map is scored by at a point
POINT_WINDOW = 3
#: far-from-site negative points lie at least this many px from any damage or unknown pixel
FAR_PX = 3


@dataclass(frozen=True)
class ScoreMap:
    """One model's scores on every pixel of a split's tiles, (N, H, W).

    ``cell`` is 1 for a pixel map; a patch model's map holds its score of each ``cell`` px
    cell on every pixel of that cell.
    """

    values: np.ndarray
    cell: int = 1


@dataclass(frozen=True)
class Units:
    """The scored units of one split at one level: 0/1 label, tile, position in the tile."""

    y: np.ndarray
    tile: np.ndarray
    row: np.ndarray
    col: np.ndarray
    counts: dict[str, int] = field(default_factory=dict)


class Level(Protocol):
    """One level: which units a split holds, and a model's score of each."""

    @property
    def name(self) -> str: ...
    @property
    def unit(self) -> str: ...
    @property
    def rule(self) -> str: ...

    def units(self, split: Split) -> Units: ...
    def scores(self, units: Units, scores: ScoreMap) -> np.ndarray: ...


def nodata(split: Split) -> np.ndarray:
    """(N, H, W): pixels without an observation in a band of either date."""
    return (split.before == SCENE_NODATA).any(axis=1) | (split.after == SCENE_NODATA).any(axis=1)


def _units(mask: np.ndarray, y: np.ndarray, counts: dict[str, int] | None = None) -> Units:
    tile, row, col = np.nonzero(mask)
    return Units(y.astype(np.int64), tile, row, col, counts or {})


class PixelLevel:
    """Every labelled pixel; a model's score of the pixel."""

    name = "pixel"
    unit = "pixels"
    rule = "labelled pixels (255, unknown, never scored)"

    def units(self, split: Split) -> Units:
        known = (split.y != UNKNOWN) & ~nodata(split)
        return _units(known, split.y[known] == DAMAGE)

    def scores(self, units: Units, scores: ScoreMap) -> np.ndarray:
        return scores.values[units.tile, units.row, units.col]


@dataclass(frozen=True)
class CellLevel:
    """The patch model's ``cell`` px cells; a pixel map's maximum over each."""

    cell: int = CELL
    name = "patch"
    unit = "cells"

    @property
    def rule(self) -> str:
        return (
            f"{self.cell} px cells side by side: damaged when a damage pixel is in the cell, "
            "undamaged when labelled pixels are and none is damage, not scored when none is "
            "labelled or a pixel is unobserved; a pixel map by its maximum over the cell"
        )

    def _cells(self, a: np.ndarray) -> np.ndarray:
        n, h, w = a.shape
        if h % self.cell or w % self.cell:
            raise ValueError(f"tiles of {h} x {w} px do not hold whole {self.cell} px cells")
        return a.reshape(n, h // self.cell, self.cell, w // self.cell, self.cell)

    def units(self, split: Split) -> Units:
        y = self._cells(split.y)
        damaged = (y == DAMAGE).any(axis=(2, 4))
        labelled = (y != UNKNOWN).any(axis=(2, 4))
        observed = ~self._cells(nodata(split)).any(axis=(2, 4))
        keep = labelled & observed
        return _units(keep, damaged[keep])

    def scores(self, units: Units, scores: ScoreMap) -> np.ndarray:
        return self._cells(scores.values).max(axis=(2, 4))[units.tile, units.row, units.col]


class PointLevel:
    """Sites (connected damage pixels) and negatives: pre-war copies, far-from-site ground."""

    name = "point"
    unit = "points"
    rule = (
        "sites derived from the targets (each connected group of damage pixels of a tile, at "
        "its pixel nearest the group's centre; the dataset records no site positions); "
        "negatives: the same points in the pre-war tile of the same place, and points on a "
        f"{CELL} px lattice at least {FAR_PX} px from any damage or unknown pixel (those whose "
        "cell looks built-up counted apart); a pixel map by its maximum over "
        f"{POINT_WINDOW} x {POINT_WINDOW} px, a patch model by its cell"
    )

    def units(self, split: Split) -> Units:
        prewar = _prewar(split)
        site_t, site_r, site_c = sites(np.where(prewar[:, None, None], 0, split.y))
        copy_t, copy_r, copy_c = _prewar_copies(split, prewar, site_t, site_r, site_c)
        far_t, far_r, far_c = _far_points(split, prewar)
        built = _built_up_cells(split, far_t, far_r, far_c)
        first = np.argsort(~built, kind="stable")  # built-up ground first among the far
        far_t, far_r, far_c = far_t[first], far_r[first], far_c[first]
        y = np.r_[np.ones(len(site_t)), np.zeros(len(copy_t) + len(far_t))].astype(np.int64)
        counts = {
            "sites": len(site_t),
            "prewar_negatives": len(copy_t),
            "far_negatives": len(far_t),
            "far_negatives_built_up": int(built.sum()),
        }
        return Units(
            y,
            np.concatenate([site_t, copy_t, far_t]),
            np.concatenate([site_r, copy_r, far_r]),
            np.concatenate([site_c, copy_c, far_c]),
            counts,
        )

    def scores(self, units: Units, scores: ScoreMap) -> np.ndarray:
        values = scores.values
        if scores.cell == 1:  # unobserved pixels (NaN) never win the window
            values = np.where(np.isnan(values), -np.inf, values)
            values = ndimage.maximum_filter(values, size=(1, POINT_WINDOW, POINT_WINDOW))
        return values[units.tile, units.row, units.col]


def cells_as_pairs(split: Split, cell: int = CELL) -> Split:
    """The scored cells of a tile split as patch pairs (the patch model's training data on a
    tile dataset): both dates of each cell, its label by :class:`CellLevel`'s rule, its AOI,
    its origin in the AOI grid and its tile's coordinates."""
    u = CellLevel(cell).units(split)

    def cut(x: np.ndarray) -> np.ndarray:
        n, b, h, w = x.shape
        return x.reshape(n, b, h // cell, cell, w // cell, cell)[u.tile, :, u.row, :, u.col, :]

    def of_tile(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else a[u.tile]

    return Split(
        cut(split.before),
        cut(split.after),
        u.y,
        of_tile(split.aoi),
        None if split.row is None else split.row[u.tile] + cell * u.row,
        None if split.col is None else split.col[u.tile] + cell * u.col,
        of_tile(split.lon),
        of_tile(split.lat),
    )


def _prewar(split: Split) -> np.ndarray:
    if split.prewar is None:
        return np.zeros(len(split.y), dtype=bool)
    return np.asarray(split.prewar).astype(bool)


def sites(target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tile, row, col) of every connected group of damage pixels (8-neighbours, within a
    tile), at its pixel nearest the group's centre."""
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True  # never across tiles
    labels, n = ndimage.label(target == DAMAGE, structure=structure)
    if n == 0:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0, int)
    tile, row, col = np.nonzero(labels)
    lab = labels[tile, row, col] - 1
    size = np.bincount(lab, minlength=n)
    cr = np.bincount(lab, weights=row, minlength=n) / size
    cc = np.bincount(lab, weights=col, minlength=n) / size
    dist = (row - cr[lab]) ** 2 + (col - cc[lab]) ** 2
    order = np.lexsort((col, row, dist, lab))  # per group: nearest first, ties by position
    first = order[np.r_[0, np.nonzero(np.diff(lab[order]))[0] + 1]]
    return tile[first], row[first], col[first]


def _prewar_copies(
    split: Split, prewar: np.ndarray, t: np.ndarray, r: np.ndarray, c: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sites' points in the pre-war tile of the same place (same AOI, row and col),
    where that tile observed the point."""
    if not prewar.any() or split.row is None or split.col is None:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0, int)
    aoi = split.aoi.astype(str) if split.aoi is not None else np.full(len(prewar), "")
    where = {(aoi[i], int(split.row[i]), int(split.col[i])): i for i in np.nonzero(prewar)[0]}
    twin = np.array([where.get((aoi[i], int(split.row[i]), int(split.col[i])), -1) for i in t])
    ok = twin >= 0
    ok[ok] &= split.y[twin[ok], r[ok], c[ok]] != UNKNOWN
    return twin[ok], r[ok], c[ok]


def _built_up_cells(split: Split, t: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Whether the before image of the cell around each lattice point looks built-up
    (:func:`contract.built_up.built_up`, the rule ``pipeline dataset`` draws hard negatives
    by); a cell that would cross the tile's edge is moved inside it."""
    _, bands, h, w = split.before.shape
    side = min(CELL, h, w)
    top = np.clip(r - CELL // 2, 0, h - side)[:, None, None, None]
    left = np.clip(c - CELL // 2, 0, w - side)[:, None, None, None]
    step = np.arange(side)
    cells = split.before[
        t[:, None, None, None],
        np.arange(bands)[None, :, None, None],
        top + step[None, None, :, None],
        left + step[None, None, None, :],
    ]
    return built_up(cells)


def _far_points(split: Split, prewar: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lattice points of war tiles whose ground within FAR_PX holds only negatives."""
    side = 2 * FAR_PX + 1
    near = ndimage.maximum_filter((split.y != NO_DAMAGE) | nodata(split), size=(1, side, side))
    far = ~near & ~prewar[:, None, None]
    lattice = np.zeros(far.shape[1:], dtype=bool)
    lattice[CELL // 2 :: CELL, CELL // 2 :: CELL] = True
    tile, row, col = np.nonzero(far & lattice)
    return tile, row, col
