"""One encoder pass over [before; after] trains exactly as the study's two passes (issue 19)."""

from __future__ import annotations

import copy

import pytest
import torch

from damagenet.errors import DamagenetError
from damagenet.models.siamese_resnet import PairBatchNorm2d, SiameseResNet, use_plain_batch_norms


def _study_forward(model: SiameseResNet, xb: torch.Tensor, xa: torch.Tensor) -> torch.Tensor:
    """The study's network: the encoder once per epoch, each batch norm on one epoch's batch."""
    fb, fa = model.encoder(xb), model.encoder(xa)
    return model.head(torch.cat([fb, fa, (fb - fa).abs(), fb * fa], dim=1)).squeeze(1)


def _plain(model: SiameseResNet) -> SiameseResNet:
    study = copy.deepcopy(model)
    use_plain_batch_norms(study)
    assert not any(type(m) is PairBatchNorm2d for m in study.modules())
    return study


def _training_case() -> tuple[SiameseResNet, torch.Tensor, torch.Tensor]:
    """A network in training mode and epochs whose statistics differ: the after one brighter
    and more varied, so a joint batch norm would mix them."""
    torch.manual_seed(0)
    ours = SiameseResNet("resnet18").train()
    gen = torch.Generator().manual_seed(1)
    xb = torch.randn(6, 4, 16, 16, generator=gen)
    xa = 2.0 + 3.0 * torch.randn(6, 4, 16, 16, generator=gen)
    return ours, xb, xa


def test_training_pass_matches_the_study_two_passes():
    ours, xb, xa = _training_case()
    study = _plain(ours)
    torch.manual_seed(2)  # the head's dropout draws the same masks on both sides
    got = ours(xb, xa)
    torch.manual_seed(2)
    want = _study_forward(study, xb, xa)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)
    got.sum().backward()
    want.sum().backward()
    grads = dict(study.named_parameters())
    for name, p in ours.named_parameters():
        assert torch.allclose(p.grad, grads[name].grad, atol=1e-4, rtol=1e-3), name
    running = dict(study.named_buffers())
    for name, b in ours.named_buffers():  # running averages: before batch, then after batch
        assert torch.allclose(b.float(), running[name].float(), atol=1e-5), name


def test_a_joint_batch_norm_would_train_another_model():
    """Why the pair norm exists: mixing the epochs' statistics changes the logits."""
    ours, xb, xa = _training_case()
    joint = _plain(ours)
    torch.manual_seed(2)
    pair = ours(xb, xa)
    torch.manual_seed(2)
    mixed = joint(xb, xa)  # the plain batch norm sees [before; after] as one batch
    assert not torch.allclose(pair, mixed, atol=1e-2)


def test_evaluation_uses_the_running_averages_alone():
    torch.manual_seed(0)
    model = SiameseResNet("resnet18").eval()
    xb, xa = torch.randn(2, 3, 4, 16, 16)
    with torch.no_grad():
        together = model(xb, xa)
        one_by_one = torch.cat([model(xb[i : i + 1], xa[i : i + 1]) for i in range(3)])
    assert torch.allclose(together, one_by_one, atol=1e-5)


def test_an_odd_batch_is_refused():
    norm = PairBatchNorm2d(3).train()
    with pytest.raises(DamagenetError, match="halves of equal size"):
        norm(torch.randn(5, 3, 2, 2))
