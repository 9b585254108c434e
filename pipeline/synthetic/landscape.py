"""A Ukrainian town at 10 m: street grid, buildings, gardens, fields, a river.

Everything is vectorised over the pixel grid (no per-building Python loop), so a 5,000 x 5,000 px
scene is generated in seconds. Values are L2A digital numbers (reflectance x 10000) in the band
order B02, B03, B04, B08.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# Land-cover classes of the synthetic truth raster.
WATER, VEGETATION, SOIL, ROAD, BUILDING, FOREST = 1, 2, 3, 4, 5, 6

#: Mean spectra (B02, B03, B04, B08) and relative spread per class, from typical L2A values.
SPECTRA = {
    WATER: ((550, 520, 300, 150), 0.15),
    VEGETATION: ((380, 650, 450, 3400), 0.18),
    FOREST: ((280, 480, 300, 2900), 0.12),
    SOIL: ((850, 1150, 1500, 2300), 0.12),
    ROAD: ((800, 900, 950, 1250), 0.08),
    BUILDING: ((1150, 1300, 1450, 2000), 0.15),
}
#: Roof types: multipliers on the building spectrum (grey concrete, red tile, dark, bright metal).
ROOFS = np.array(
    [[1.0, 1.0, 1.0, 1.0], [0.8, 0.85, 1.25, 1.0], [0.75, 0.75, 0.72, 0.8], [1.3, 1.3, 1.25, 1.15]],
    dtype=np.float32,
)


@dataclass
class Landscape:
    """The synthetic ground truth of one scene."""

    cover: np.ndarray  # (H, W) uint8 land-cover class
    building_id: np.ndarray  # (H, W) int32, 0 = no building
    roof: np.ndarray  # (n_buildings + 1,) int roof type per building id
    reflectance: np.ndarray  # (4, H, W) float32 DN before any epoch effect
    texture: np.ndarray  # (H, W) float32 spatial texture field around 1


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise rescaled to zero mean and unit variance."""
    field = ndimage.gaussian_filter(
        rng.standard_normal(shape, dtype=np.float32), sigma, mode="wrap"
    )
    return (field - field.mean()) / (field.std() + 1e-6)


def make_landscape(
    rng: np.random.Generator, height: int, width: int, centre_rc: tuple[float, float]
) -> Landscape:
    """Build land cover, building footprints and base reflectance for one grid."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    cover = np.full((height, width), VEGETATION, dtype=np.uint8)
    _farmland(rng, cover, rows, cols)
    building, lot_key = _town(rng, cover, rows, cols, centre_rc)

    # A river crossing the scene.
    angle = rng.uniform(0, np.pi)
    offset = rng.uniform(0.2, 0.8) * min(height, width)
    along = rows * np.cos(angle) - cols * np.sin(angle)
    meander = 12 * np.sin(2 * np.pi * (rows * np.sin(angle) + cols * np.cos(angle)) / 400)
    river = np.abs(along - offset + meander) < rng.uniform(3, 7)
    cover[river] = WATER
    building &= ~river

    # Building ids: dense 1..n in raster order of their lots (deterministic).
    keys, inverse = np.unique(np.where(building, lot_key, -1), return_inverse=True)
    first_is_ground = keys.size > 0 and keys[0] == -1
    building_id = inverse.reshape(height, width).astype(np.int32) + (0 if first_is_ground else 1)
    roof = rng.integers(0, len(ROOFS), size=int(building_id.max()) + 1)
    texture = (
        1.0
        + 0.06 * smooth_noise(rng, (height, width), 2.0)
        + 0.04 * smooth_noise(rng, (height, width), 8.0)
    )
    reflectance = _reflectance(rng, cover, building_id, roof) * texture
    return Landscape(
        cover=cover, building_id=building_id, roof=roof, reflectance=reflectance, texture=texture
    )


def _farmland(
    rng: np.random.Generator, cover: np.ndarray, rows: np.ndarray, cols: np.ndarray
) -> None:
    """Rectangular parcels of crops and bare soil, with forest patches (in ``cover``)."""
    parcel = rng.integers(25, 60)
    parcel_id = (rows // parcel).astype(np.int64) * 100_003 + (cols // (parcel * 2)).astype(
        np.int64
    )
    parcel_kind = _hash01(parcel_id, int(rng.integers(1 << 30)))
    cover[parcel_kind < 0.35] = SOIL
    forest = smooth_noise(rng, cover.shape, 25) > 1.1
    cover[forest] = FOREST


def _town(
    rng: np.random.Generator,
    cover: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    centre_rc: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """A noisy disc around the centre with a street grid of blocks: (building, lot key)."""
    height, width = cover.shape
    radius = 0.42 * min(height, width) * rng.uniform(0.8, 1.1)
    dist = np.hypot(rows - centre_rc[0], cols - centre_rc[1])
    urban = dist + 18 * smooth_noise(rng, (height, width), 30) < radius
    period = (int(rng.integers(11, 15)), int(rng.integers(11, 15)))
    street = 2
    u, v = rows % period[0], cols % period[1]
    block_id = (rows // period[0]).astype(np.int64) * 100_003 + (cols // period[1]).astype(np.int64)
    block_kind = _hash01(block_id, int(rng.integers(1 << 30)))
    on_street = (u < street) | (v < street)
    cover[urban] = VEGETATION  # gardens between houses
    cover[urban & on_street] = ROAD
    blocks = urban & ~on_street
    inner = (u - street, v - street)
    size = (period[0] - street, period[1] - street)
    building, lot_key = _block_buildings(blocks, block_kind, block_id, inner, size)
    cover[building] = BUILDING
    cover[blocks & ~building & (block_kind >= 0.85) & (block_kind < 0.95)] = SOIL
    return building, lot_key


def _block_buildings(
    blocks: np.ndarray,
    kind: np.ndarray,
    block_id: np.ndarray,
    inner: tuple[np.ndarray, np.ndarray],
    size: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Houses, slabs and halls inside the blocks by their kind: (building, lot key)."""
    (inner_r, inner_c), (size_r, size_c) = inner, size
    # Residential blocks (60 %): a 2x2 grid of houses, 1 px garden margin each side.
    lot_r, lot_c = inner_r // (size_r // 2), inner_c // (size_c // 2)
    in_lot_r, in_lot_c = inner_r % (size_r // 2), inner_c % (size_c // 2)
    house = (
        blocks
        & (kind < 0.6)
        & (in_lot_r >= 1)
        & (in_lot_r < size_r // 2 - 1)
        & (in_lot_c >= 1)
        & (in_lot_c < size_c // 2 - 1)
        & (lot_r < 2)
        & (lot_c < 2)
    )
    lot_key = np.where(house, block_id * 4 + lot_r.astype(np.int64) * 2 + lot_c.astype(np.int64), 0)
    # Apartment slabs (25 %): one long building per block.
    slab = blocks & (kind >= 0.6) & (kind < 0.85) & (inner_r >= 2) & (inner_r < size_r - 2)
    slab &= (inner_c >= 1) & (inner_c < size_c - 1)
    # Industrial halls (10 %): the whole block; parks (5 %) stay green.
    hall = blocks & (kind >= 0.85) & (kind < 0.95) & (inner_r >= 1) & (inner_c >= 1)
    hall &= (inner_r < size_r - 1) & (inner_c < size_c - 1)
    lot_key = np.where(slab | hall, block_id * 4, lot_key)
    return house | slab | hall, lot_key


def _reflectance(
    rng: np.random.Generator, cover: np.ndarray, building_id: np.ndarray, roof: np.ndarray
) -> np.ndarray:
    """(4, H, W) base reflectance: each class's spectrum with its spread, roofs by material."""
    height, width = cover.shape
    reflectance = np.empty((4, height, width), dtype=np.float32)
    for cls, (mean, spread) in SPECTRA.items():
        mask = cover == cls
        if not mask.any():
            continue
        local = 1.0 + spread * 0.5 * smooth_noise(rng, (height, width), 4.0)[mask]
        for b in range(4):
            reflectance[b][mask] = mean[b] * local
    roof_gain = ROOFS[roof[building_id]]  # (H, W, 4)
    for b in range(4):
        reflectance[b] = np.where(
            cover == BUILDING, reflectance[b] * roof_gain[..., b], reflectance[b]
        )
    return reflectance


def _hash01(keys: np.ndarray, salt: int) -> np.ndarray:
    """A deterministic pseudo-random number in [0, 1) per integer key (splitmix64)."""
    x = (keys.astype(np.uint64) + np.uint64(salt)) * np.uint64(0x9E3779B97F4A7C15)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)
