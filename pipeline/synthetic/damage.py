"""War damage between the epochs: which buildings change, and how they look afterwards.

Classes follow UNOSAT codes: destroyed (1) becomes rubble (bright, rough, lower NIR, debris
spilling into the street), severe (2) changes most of the footprint, moderate (3) part of it,
possible damage (4) barely; some damage is deliberately subtle. Buildings damaged only after the
after-scene date are listed but do not change in the scene.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from pipeline.synthetic.landscape import smooth_noise

#: Rubble spectrum (B02, B03, B04, B08): bright concrete dust, NIR close to the visible.
RUBBLE = np.array([1650, 1750, 1850, 1900], dtype=np.float32)
#: Share of the footprint that changes, and how strongly, per class.
STRENGTH = {1: (1.0, 1.0), 2: (0.7, 0.75), 3: (0.4, 0.5), 4: (0.25, 0.2), 11: (0.0, 0.0)}


@dataclass
class DamagePlan:
    """Per-building damage: UNOSAT class now (0 = intact) and class reached only later."""

    now: np.ndarray  # (n+1,) int: class visible in the after scene, 0 if none
    later: np.ndarray  # (n+1,) int: class first assessed after the after scene, 0 if none
    subtle: np.ndarray  # (n+1,) bool: weak change although classed as damage


def plan_damage(
    rng: np.random.Generator,
    eligible: np.ndarray,
    n: int,
    fraction: float = 0.12,
    weight: np.ndarray | None = None,
) -> DamagePlan:
    """Choose damaged buildings among the ``eligible`` ids (those inside the AOI).

    ``weight`` (per building id) makes some buildings likelier to be hit: real damage
    clusters where the fighting was, it is not spread evenly over a town.
    """
    now = np.zeros(n + 1, dtype=np.int16)
    later = np.zeros(n + 1, dtype=np.int16)
    subtle = np.zeros(n + 1, dtype=bool)
    if weight is None:
        ids = rng.permutation(eligible)
    else:  # weighted order without replacement (Efraimidis-Spirakis keys)
        keys = np.log(rng.random(eligible.size)) / weight[eligible]
        ids = eligible[np.argsort(-keys, kind="stable")]
    k = int(round(fraction * ids.size))
    damaged, rest = ids[:k], ids[k:]
    now[damaged] = rng.choice([1, 2, 3], size=damaged.size, p=[0.45, 0.3, 0.25])
    subtle[damaged[rng.random(damaged.size) < 0.1]] = True
    n_late = int(round(0.03 * ids.size))
    n_poss = int(round(0.02 * ids.size))
    late = rest[:n_late]
    later[late] = rng.choice([1, 2, 3], size=late.size)
    now[rest[n_late : n_late + n_poss]] = 4
    now[rest[n_late + n_poss : n_late + 2 * n_poss]] = 11
    return DamagePlan(now=now, later=later, subtle=subtle)


def damage_strength(plan: DamagePlan) -> tuple[np.ndarray, np.ndarray]:
    """Per building: the share of its pixels that change and how strongly (by UNOSAT class;
    subtle sites at 30 % strength), for the easy and the realistic renderers alike."""
    share = np.zeros(plan.now.shape, dtype=np.float32)
    power = np.zeros_like(share)
    for code, (s, p) in STRENGTH.items():
        share[plan.now == code] = s
        power[plan.now == code] = p
    power[plan.subtle] *= 0.3
    return share, power


def apply_damage(
    rng: np.random.Generator,
    after: np.ndarray,
    building_id: np.ndarray,
    plan: DamagePlan,
    anchors: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """Write the damage into ``after``; return the (H, W) float32 change strength.

    ``anchors`` are the pixels (rows, cols) where the damage sites are placed, one per building
    id from 1: they always change, so a site sits on visibly damaged ground.
    """
    cls = plan.now[building_id]
    share, power = damage_strength(plan)
    # Which pixels of a footprint change: a rough random pattern thresholded by the share.
    pattern = 0.5 + 0.5 * np.tanh(smooth_noise(rng, building_id.shape, 1.0))
    changed = (cls > 0) & (pattern < share[building_id])
    changed[anchors] |= cls[anchors] > 0
    strength = np.where(changed, power[building_id], 0.0).astype(np.float32)
    # Debris of destroyed buildings spills one pixel around the footprint.
    destroyed = ndimage.binary_dilation(cls == 1) & (cls == 0)
    strength = np.maximum(strength, np.where(destroyed, 0.35, 0.0).astype(np.float32))
    rough = 1.0 + 0.18 * rng.standard_normal(building_id.shape).astype(np.float32)
    for b in range(4):
        target = RUBBLE[b] * rough
        after[b] = after[b] * (1 - strength) + target * strength
    return strength
