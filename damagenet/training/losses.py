"""Per-pixel losses that know unknown ground: averaged over labelled pixels only.

Tile targets hold 1 (damage or change), 0 (assessed, no damage) and 255 (nobody knows: the
ring around every site, unassessed ground, cloud, nodata; :data:`contract.labels.UNKNOWN`).
The library losses this replaces are traps (``shared/reference/change_detection.md``):
``segmentation_models_pytorch``'s ``SoftBCEWithLogitsLoss(ignore_index=...)`` divides by all
pixels, ignored ones included, so a cloudy batch weighs less; its binary ``DiceLoss`` gives a
batch without positives zero loss, so false alarms on undamaged ground cost nothing. Here:

- :func:`masked_bce` sums BCE over labelled pixels and divides by their number; a tile with
  nothing labelled adds nothing to the sum and nothing to the count;
- :func:`masked_soft_dice` is ``1 - (2 TP + 1) / (P + T + 1)`` over the labelled pixels of the
  whole batch (``TP`` soft true positives, ``P`` soft predicted positives, ``T`` positives): with
  no positive in the batch it is ``P / (P + 1)``, so predicted damage still costs;
- :class:`MaskedLoss` is ``bce + dice_weight * dice`` with an optional positive weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from contract.labels import UNKNOWN


def labelled(target: torch.Tensor) -> torch.Tensor:
    """Boolean mask of pixels with a known target (0 or 1)."""
    return target != UNKNOWN


def _flat(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and 0/1 targets of the labelled pixels, as 1-D float tensors.

    ``logits`` (N, 1, H, W) or (N, H, W); ``target`` (N, H, W) with :data:`UNKNOWN` ignored.
    """
    logits = logits.reshape(target.shape).float()
    keep = labelled(target)
    return logits[keep], target[keep].float()


def masked_bce(
    logits: torch.Tensor, target: torch.Tensor, pos_weight: float | None = None
) -> torch.Tensor:
    """Mean BCE with logits over labelled pixels; 0 (with a gradient of 0) when none is."""
    x, t = _flat(logits, target)
    weight = None if pos_weight is None else torch.tensor(pos_weight, device=x.device)
    total = F.binary_cross_entropy_with_logits(x, t, pos_weight=weight, reduction="sum")
    return total / max(x.numel(), 1)


def masked_soft_dice(
    logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0
) -> torch.Tensor:
    """Soft Dice loss of the change class over the batch's labelled pixels (module docstring)."""
    x, t = _flat(logits, target)
    p = torch.sigmoid(x)
    tp = (p * t).sum()
    return 1 - (2 * tp + smooth) / (p.sum() + t.sum() + smooth)


@dataclass(frozen=True)
class MaskedLoss:
    """``masked_bce(pos_weight) + dice_weight * masked_soft_dice``: the pixel task's loss."""

    pos_weight: float | None = None
    dice_weight: float = 0.0

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = masked_bce(logits, target, self.pos_weight)
        if self.dice_weight:
            loss = loss + self.dice_weight * masked_soft_dice(logits, target)
        return loss
