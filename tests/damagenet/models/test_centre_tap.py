"""3 x 3 convolutions on one-pixel maps: the centre tap alone, same outputs and gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from damagenet.inference.scoring import fold_batch_norms
from damagenet.models.centre_tap import CentreTapConv2d, use_centre_taps
from damagenet.models.siamese_resnet import SiameseResNet


@pytest.mark.parametrize(
    ("kernel", "stride", "size"), [(3, 1, 1), (3, 2, 1), (1, 1, 1), (1, 2, 1), (3, 1, 3), (3, 2, 4)]
)
def test_same_output_and_gradients_as_the_full_convolution(kernel, stride, size):
    torch.manual_seed(0)
    plain = nn.Conv2d(8, 6, kernel, stride=stride, padding=kernel // 2, bias=True)
    fast = nn.Conv2d(8, 6, kernel, stride=stride, padding=kernel // 2, bias=True)
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
    if size == 1 and kernel == 3:  # the padded taps learn nothing, in both forms
        border = torch.ones(3, 3, dtype=torch.bool)
        border[1, 1] = False
        assert torch.count_nonzero(fast.weight.grad[:, :, border]) == 0
        assert torch.count_nonzero(plain.weight.grad[:, :, border]) == 0


@pytest.mark.parametrize("kernel", [3, 7])
def test_channels_last_inputs_give_the_same_output_and_gradients(kernel):
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 6, kernel, padding=kernel // 2).to(memory_format=torch.channels_last)
    x = torch.randn(5, 8, 1, 1).contiguous(memory_format=torch.channels_last)
    want = conv(x)
    want.square().sum().backward()
    want_grad, conv.weight.grad = conv.weight.grad.clone(), None
    use_centre_taps(conv)
    got = conv(x)
    got.square().sum().backward()
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(conv.weight.grad, want_grad, atol=1e-5)


def test_only_same_padded_plain_convolutions_switch_and_checkpoints_stay_the_same():
    model = SiameseResNet("resnet18")
    keys = list(model.state_dict())
    convs = sum(1 for m in model.modules() if isinstance(m, nn.Conv2d))
    assert use_centre_taps(model) == convs == 20  # stem, 16 in blocks, 3 downsamples
    assert list(model.state_dict()) == keys
    assert use_centre_taps(model) == 0  # already switched
    others = nn.Sequential(
        nn.Conv2d(4, 4, 3, padding=0),
        nn.Conv2d(4, 4, 3, padding=1, groups=2),
        nn.Conv2d(4, 4, 3, padding=2, dilation=2),
        nn.Conv2d(4, 4, 2),
    )
    assert use_centre_taps(others) == 0


def test_a_model_with_centre_taps_still_folds():
    model = SiameseResNet("resnet18").eval()
    xb, xa = torch.randn(2, 3, 4, 16, 16)
    with torch.no_grad():
        want = model(xb, xa)
    use_centre_taps(model)
    folded = fold_batch_norms(model)
    with torch.no_grad():
        assert torch.allclose(folded(xb, xa), want, atol=1e-4)
