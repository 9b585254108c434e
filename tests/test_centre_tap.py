"""3 x 3 convolutions on one-pixel maps: the centre tap alone, same outputs and gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from damagenet.centre_tap import CentreTapConv2d, use_centre_taps
from damagenet.model import SiameseResNet


@pytest.mark.parametrize(("stride", "size"), [(1, 1), (2, 1), (1, 3), (2, 4)])
def test_same_output_and_gradients_as_the_full_convolution(stride, size):
    torch.manual_seed(0)
    plain = nn.Conv2d(8, 6, 3, stride=stride, padding=1, bias=True)
    fast = nn.Conv2d(8, 6, 3, stride=stride, padding=1, bias=True)
    fast.load_state_dict(plain.state_dict())
    assert use_centre_taps(fast) == 1 and type(fast) is CentreTapConv2d
    x = torch.randn(5, 8, size, size)
    out_plain, out_fast = plain(x), fast(x)
    assert out_fast.shape == out_plain.shape
    assert torch.allclose(out_fast, out_plain, atol=1e-6)
    out_plain.square().sum().backward()
    out_fast.square().sum().backward()
    assert torch.allclose(fast.weight.grad, plain.weight.grad, atol=1e-5)
    assert torch.allclose(fast.bias.grad, plain.bias.grad, atol=1e-5)
    if size == 1:  # the padded taps learn nothing, in both forms
        border = torch.ones(3, 3, dtype=torch.bool)
        border[1, 1] = False
        assert torch.count_nonzero(fast.weight.grad[:, :, border]) == 0
        assert torch.count_nonzero(plain.weight.grad[:, :, border]) == 0


def test_only_3x3_padded_convolutions_switch_and_checkpoints_stay_the_same():
    model = SiameseResNet("resnet18")
    keys = list(model.state_dict())
    threes = sum(1 for m in model.modules() if isinstance(m, nn.Conv2d)
                 and m.kernel_size == (3, 3) and m.padding == (1, 1))
    assert use_centre_taps(model) == threes == 16  # two per basic block, eight blocks
    assert type(model.encoder.conv1) is nn.Conv2d  # 7 x 7: left alone
    assert type(model.encoder.layer2[0].downsample[0]) is nn.Conv2d  # 1 x 1: left alone
    assert list(model.state_dict()) == keys
    assert use_centre_taps(model) == 0  # already switched
