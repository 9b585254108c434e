"""The inference-only network and band reordering (issues 15 and 19)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from damagenet.data.pairs import Normalisation
from damagenet.errors import DamagenetError
from damagenet.inference.scoring import (
    COMPILE_MIN_WINDOWS_CPU,
    FixedBatch,
    PairScorer,
    band_index,
    fold_batch_norms,
    optimise_for_inference,
    wants_compile,
)
from damagenet.models.centre_tap import CentreTapConv2d
from damagenet.models.siamese_resnet import SiameseResNet


def _random_model() -> SiameseResNet:
    """Random weights and batch-norm statistics far from the identity, so folding matters."""
    torch.manual_seed(0)
    model = SiameseResNet("resnet18")
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
            m.running_var.copy_(0.5 + torch.rand(n, generator=gen) * 1.5)
            m.weight.data.copy_(0.5 + torch.rand(n, generator=gen))
            m.bias.data.copy_(torch.rand(n, generator=gen) - 0.5)
    return model.eval()


def test_optimised_model_gives_the_plain_probabilities():
    model = _random_model()
    xb, xa = torch.randn(2, 24, 4, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        plain = torch.sigmoid(model(xb, xa))
    fast = optimise_for_inference(model, torch.device("cpu"))
    with torch.inference_mode():
        got = torch.sigmoid(fast(xb, xa))
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in fast.modules())
    assert any(isinstance(m, CentreTapConv2d) for m in fast.modules())  # 1 x 1 deep layers
    assert plain.std() > 0.01  # probabilities that vary, not a saturated constant
    assert torch.allclose(got, plain, atol=1e-5, rtol=0)
    assert model.training is False and any(  # the original network is left as it was
        isinstance(m, nn.BatchNorm2d) for m in model.modules()
    )


def test_fold_keeps_the_logits_of_a_network_with_a_linear_head():
    model = _random_model()
    folded = fold_batch_norms(model)
    xb, xa = torch.randn(2, 8, 4, 16, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.allclose(folded(xb, xa), model(xb, xa), atol=1e-4, rtol=1e-5)


def test_compile_falls_back_when_unusable(monkeypatch, caplog):
    def broken(module, **kwargs):
        def run(*args):
            raise RuntimeError("no C++ compiler found")

        return run

    monkeypatch.setattr(torch, "compile", broken)
    model = _random_model()
    example = (torch.zeros(2, 4, 16, 16), torch.zeros(2, 4, 16, 16))
    fast = optimise_for_inference(model, torch.device("cpu"), compile=True, example=example)
    assert isinstance(fast, nn.Module)
    assert "torch.compile is not usable" in caplog.text


def test_compile_only_where_it_pays():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert wants_compile("auto", cuda, 10) and not wants_compile("auto", cpu, 10)
    assert wants_compile("auto", cpu, COMPILE_MIN_WINDOWS_CPU)
    assert wants_compile("on", cpu, 1) and not wants_compile("off", cuda, 10**6)
    with pytest.raises(DamagenetError, match="--compile"):
        wants_compile("sometimes", cpu, 1)


def test_fixed_batch_pads_short_batches():
    calls = []

    def net(before, after):
        calls.append(len(before))
        return before[:, 0, 0, 0] + after[:, 0, 0, 0]

    fixed = FixedBatch(net, 8)
    out = fixed(torch.ones(3, 4, 2, 2), torch.ones(3, 4, 2, 2))
    assert calls == [8] and out.tolist() == [2.0, 2.0, 2.0]


class Recorder(nn.Module):
    """Returns the first pixel of each input band as logits, to see the order it was fed."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        self.seen.append(before[:, :, 0, 0].clone())
        return before[:, 0, 0, 0]


def test_scene_bands_are_reordered_into_the_networks_order():
    assert band_index(["B04", "B03", "B02", "B08"]) == [2, 1, 0, 3]
    assert band_index(["B02", "B03", "B04", "B08"]) == [0, 1, 2, 3]
    scene = np.stack(
        [np.full((3, 8, 8), v, dtype=np.uint16) for v in (100, 200, 300, 400)], axis=1
    )  # (N, bands B02 B03 B04 B08, S, S)
    net = Recorder()
    # the study's statistics are in R, G, B, NIR order: each must meet its own band
    norm = Normalisation(mean=[0.03, 0.02, 0.01, 0.04], std=[1.0, 1.0, 1.0, 1.0])
    PairScorer(net, norm, torch.device("cpu"), 2, network_bands=["B04", "B03", "B02", "B08"])(
        scene, scene
    )
    seen = torch.cat(net.seen)
    assert seen.shape == (3, 4)
    assert torch.allclose(seen, torch.zeros(3, 4), atol=1e-6)  # 300/1e4 - 0.03, ...


@pytest.mark.parametrize(
    "bands", [["B04", "B03", "B02"], ["B04", "B03", "B02", "B05"], ["B04", "B04", "B02", "B08"]]
)
def test_band_orders_that_are_not_permutations_are_refused(bands):
    with pytest.raises(DamagenetError, match="not an order of"):
        band_index(bands)
