"""What makes real scenes hard: clouds and their shadows, swath edges, the 2022 offset.

Each is switchable so tests can isolate the scene step's masking and harmonisation. The scene
classification (SCL) raster is written at 20 m like ESA's, on a grid aligned with the 10 m one.
"""

from __future__ import annotations

import numpy as np

from pipeline.synthetic.landscape import (
    BUILDING,
    FOREST,
    ROAD,
    SOIL,
    VEGETATION,
    WATER,
    smooth_noise,
)

# SCL codes (ESA Sen2Cor).
SCL_NODATA, SCL_SHADOW, SCL_VEG, SCL_NOT_VEG, SCL_WATER = 0, 3, 4, 5, 6
SCL_CLOUD_MED, SCL_CLOUD_HIGH, SCL_CIRRUS = 8, 9, 10
#: ESA's offset from processing baseline 04.00 on: DN = reflectance * 10000 + 1000.
BASELINE_OFFSET = 1000


def scl_from_cover(cover: np.ndarray) -> np.ndarray:
    """The clear-sky SCL class of each 10 m pixel."""
    scl = np.full(cover.shape, SCL_NOT_VEG, dtype=np.uint8)
    scl[np.isin(cover, (VEGETATION, FOREST))] = SCL_VEG
    scl[cover == WATER] = SCL_WATER
    scl[np.isin(cover, (SOIL, ROAD, BUILDING))] = SCL_NOT_VEG
    return scl


def add_cloud(
    rng: np.random.Generator, dn: np.ndarray, scl: np.ndarray, cover_fraction: float = 0.03
) -> np.ndarray:
    """Paint a cumulus with a displaced shadow into ``dn`` and ``scl``; return the cloud mask."""
    _, h, w = dn.shape
    field = smooth_noise(rng, (h, w), max(h, w) / 25)
    rows, cols = np.mgrid[0:h, 0:w]
    cy, cx = rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w
    blob = field - np.hypot(rows - cy, cols - cx) / (0.12 * max(h, w))
    threshold = np.quantile(blob, 1 - cover_fraction)
    core = blob > threshold
    edge = (blob > threshold - 0.25) & ~core
    opacity = np.clip((blob - (threshold - 0.25)) / 0.25, 0, 1).astype(np.float32)
    shift = (int(0.04 * h) + 3, int(0.05 * w) + 3)  # sun from the south-east
    shadow = np.roll(core | edge, shift, axis=(0, 1)) & ~(core | edge)
    dn[:, shadow] *= 0.4
    cloud_dn = np.array([5200, 5100, 5000, 5400], dtype=np.float32)[:, None]
    cloudy = core | edge
    dn[:, cloudy] = dn[:, cloudy] * (1 - opacity[cloudy]) + cloud_dn * opacity[cloudy]
    scl[shadow] = SCL_SHADOW
    scl[edge] = SCL_CLOUD_MED
    scl[core] = SCL_CLOUD_HIGH
    return cloudy | shadow


def add_swath_edge(rng: np.random.Generator, dn: np.ndarray, scl: np.ndarray) -> np.ndarray:
    """Cut a nodata wedge at one side, as where the scene leaves the satellite's swath."""
    _, h, w = dn.shape
    rows, cols = np.mgrid[0:h, 0:w]
    depth = rng.uniform(0.1, 0.2) * w
    wedge = cols > w - depth * (1 - rows / h)  # widest at the top, closing at the bottom
    dn[:, wedge] = 0
    scl[wedge] = SCL_NODATA
    return wedge


def to_scl_20m(scl10: np.ndarray) -> np.ndarray:
    """Aggregate 10 m classes to 20 m: the worst (highest-priority) class of each 2x2 block.

    Priority keeps nodata and clouds conservative, as Sen2Cor's coarser mask is.
    """
    h, w = scl10.shape
    padded = np.pad(scl10, ((0, h % 2), (0, w % 2)), mode="edge")
    blocks = padded.reshape(padded.shape[0] // 2, 2, padded.shape[1] // 2, 2)
    priority = np.array([100, 90, 1, 80, 2, 3, 4, 5, 85, 95, 70, 60], dtype=np.int16)
    pri = priority[blocks]
    flat = blocks.transpose(0, 2, 1, 3).reshape(blocks.shape[0], blocks.shape[2], 4)
    flat_pri = pri.transpose(0, 2, 1, 3).reshape(flat.shape)
    pick = np.argmax(flat_pri, axis=-1)
    return np.take_along_axis(flat, pick[..., None], axis=-1)[..., 0].astype(np.uint8)
