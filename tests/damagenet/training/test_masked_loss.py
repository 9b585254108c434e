"""The pixel loss averages over labelled pixels only, and still punishes false alarms."""

from __future__ import annotations

import pytest
import torch

from contract.labels import UNKNOWN
from damagenet.training.losses import MaskedLoss, masked_bce, masked_soft_dice


def _tiles(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 1, 8, 8, generator=g)
    target = torch.randint(0, 2, (2, 8, 8), generator=g).to(torch.uint8)
    target[:, :2] = UNKNOWN
    return logits, target


@pytest.mark.parametrize(
    "loss", [masked_bce, masked_soft_dice, MaskedLoss(pos_weight=3.0, dice_weight=0.5)]
)
def test_an_all_ignored_tile_contributes_nothing(loss):
    logits, target = _tiles()
    ignored = torch.full((1, 8, 8), UNKNOWN, dtype=torch.uint8)
    wild = torch.full((1, 1, 8, 8), 9.0)  # a confident prediction nobody can check
    both_logits = torch.cat([logits, wild]).requires_grad_(True)
    both = loss(both_logits, torch.cat([target, ignored]))
    assert float(both.detach()) == pytest.approx(float(loss(logits, target)), rel=1e-6)
    both.backward()
    assert torch.count_nonzero(both_logits.grad[2]) == 0
    assert torch.count_nonzero(both_logits.grad[:2]) > 0


def test_bce_divides_by_labelled_pixels_not_all():
    logits = torch.zeros(1, 1, 4, 4)
    target = torch.full((1, 4, 4), UNKNOWN, dtype=torch.uint8)
    target[0, 0, :2] = 1  # two labelled pixels, BCE log 2 each
    assert float(masked_bce(logits, target)) == pytest.approx(torch.log(torch.tensor(2.0)).item())


def test_nothing_labelled_is_zero_loss_with_a_zero_gradient():
    logits = torch.randn(2, 1, 4, 4, requires_grad=True)
    target = torch.full((2, 4, 4), UNKNOWN, dtype=torch.uint8)
    loss = MaskedLoss(pos_weight=2.0, dice_weight=1.0)(logits, target)
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert torch.count_nonzero(logits.grad) == 0


@pytest.mark.parametrize("loss", [masked_bce, masked_soft_dice])
def test_a_tile_without_positives_still_punishes_false_positives(loss):
    target = torch.zeros(1, 8, 8, dtype=torch.uint8)
    target[0, 0] = UNKNOWN
    quiet = torch.full((1, 1, 8, 8), -4.0)
    alarm = quiet.clone()
    alarm[0, 0, 4:, 4:] = 4.0  # 16 false alarms
    alarm.requires_grad_(True)
    value = loss(alarm, target)
    assert float(value.detach()) > float(loss(quiet, target)) + 0.05
    value.backward()
    assert (alarm.grad[0, 0, 4:, 4:] > 0).all()  # the step lowers the false alarms


def test_pos_weight_weighs_missed_damage():
    target = torch.ones(1, 4, 4, dtype=torch.uint8)
    logits = torch.full((1, 1, 4, 4), -1.0)
    plain, weighted = masked_bce(logits, target), masked_bce(logits, target, pos_weight=4.0)
    assert float(weighted) == pytest.approx(4 * float(plain))


def test_dice_is_near_zero_for_a_perfect_map_and_near_one_for_its_inverse():
    target = torch.zeros(1, 8, 8, dtype=torch.uint8)
    target[0, 2:6, 2:6] = 1
    perfect = (target.float() * 40 - 20).unsqueeze(1)
    assert float(masked_soft_dice(perfect, target)) < 0.02
    assert float(masked_soft_dice(-perfect, target)) > 0.95
