"""Tiles for the pixel model: they cover the scene, fit the memory, and leave no seam (issue 28)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from damagenet.data.pairs import Normalisation, symmetry
from damagenet.errors import DamagenetUsageError
from damagenet.inference.pixel import (
    PixelEnsemble,
    PixelScorer,
    prepare_pixel_model,
    score_band,
    undo_symmetry,
)
from damagenet.inference.tiles import MAP_CELL, NetworkReach, network_reach, plan_tiles
from damagenet.models.unet import SiameseUNet

CPU = torch.device("cpu")
NORM = Normalisation([0.1] * 4, [0.05] * 4)


def _unet(seed: int) -> SiameseUNet:
    torch.manual_seed(seed)
    return SiameseUNet("small", width=4).eval()


def _scenes(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    before = rng.integers(300, 3000, (4, height, width)).astype(np.uint16)
    after = (before + rng.integers(0, 600, before.shape)).astype(np.uint16)
    before[:, :20, :24] = 0  # a nodata corner
    after[2, 50:53, 60:70] = 0  # one band missing in the other date
    return before, after


def _map(before, after, plan, scorer):
    rows = []
    for band in plan.bands():
        top, bottom = band.lo, min(band.hi, plan.height)
        rows.append(
            score_band(
                before[:, top:bottom], after[:, top:bottom], band, plan.columns(), plan, scorer
            )
        )
    return np.concatenate(rows)


@pytest.mark.parametrize(
    ("height", "width", "core", "multiple", "halo"),
    [(150, 170, 16, 8, 24), (97, 33, 32, 8, 8), (64, 64, 64, 32, 32), (200, 41, 32, 32, 64)],
)
def test_tile_cores_cover_the_scene_once_on_the_pooling_grid(height, width, core, multiple, halo):
    plan = plan_tiles(height, width, NetworkReach(multiple, halo - multiple, 1.0), 1, core=core)
    assert plan.halo == halo
    for spans, length, padded in (
        (plan.bands(), height, plan.padded_height),
        (plan.columns(), width, plan.padded_width),
    ):
        assert [s.start for s in spans[1:]] == [s.stop for s in spans[:-1]]
        assert spans[0].start == 0 and spans[-1].stop == length
        for s in spans:
            assert s.lo % multiple == 0 and s.hi % multiple == 0 and s.hi <= padded
            assert s.lo == max(0, s.start - halo) and s.hi == min(padded, s.stop + halo)
    step = math.lcm(multiple, MAP_CELL)
    bands = plan.bands()
    assert all(b.start % step == 0 for b in bands)
    assert bands[-1].stop - bands[-1].start >= min(MAP_CELL, height)


def test_one_tile_equals_many_tiles_within_1e5():
    before, after = _scenes(100, 120)
    model = prepare_pixel_model(_unet(0), CPU)
    reach = network_reach(model, 4, CPU)
    scorer = PixelScorer(model, NORM, CPU)
    one = plan_tiles(100, 120, reach, 1, core=128)
    many = plan_tiles(100, 120, reach, 1, core=16)
    assert one.tiles == 1 and many.tiles == 6 * 8
    a, b = _map(before, after, one, scorer), _map(before, after, many, scorer)
    assert a.shape == (100, 120, 1)
    assert (np.isnan(a) == np.isnan(b)).all()
    assert np.isnan(a[:20, :24]).all() and np.isnan(a[50:53, 60:70]).all()
    valid = ~np.isnan(a)
    assert valid.mean() > 0.9
    assert np.abs(a[valid] - b[valid]).max() < 1e-5
    assert 0 < a[valid].min() < a[valid].max() < 1


def test_ensemble_tiles_agree_and_carry_the_spread():
    before, after = _scenes(70, 90)
    members = [PixelScorer(prepare_pixel_model(_unet(s), CPU), NORM, CPU) for s in (0, 1)]
    ens = PixelEnsemble(members)
    reach = network_reach(members[0].model, 4, CPU)
    one = _map(before, after, plan_tiles(70, 90, reach, 1, core=96), ens)
    many = _map(before, after, plan_tiles(70, 90, reach, 1, core=32), ens)
    valid = ~np.isnan(one)
    assert one.shape == (70, 90, 2)
    assert np.abs(one[valid] - many[valid]).max() < 1e-5
    single = [_map(before, after, plan_tiles(70, 90, reach, 1, core=96), m) for m in members]
    both = np.stack([s[..., 0] for s in single])
    ok = valid[..., 0]
    assert np.allclose(one[..., 0][ok], both.mean(0)[ok])
    assert np.allclose(one[..., 1][ok], both.std(0)[ok])


def test_receptive_radius_bounds_the_reach_of_the_gradient():
    model = _unet(0)
    reach = network_reach(model, 4, CPU)
    side = 2 * reach.radius + 2 * reach.multiple
    x = torch.randn(2, 1, 4, side, side, generator=torch.Generator().manual_seed(0))
    before, after = x[0].requires_grad_(), x[1].requires_grad_()
    c = side // 2
    model(before, after)[0, 0, c, c].backward()
    touched = torch.nonzero((before.grad.abs() + after.grad.abs()).sum(1)[0])
    far = int((touched - c).abs().max())
    assert 0.5 * reach.radius < far <= reach.radius < reach.halo


def test_memory_budget_bounds_the_tile_and_a_small_one_is_refused():
    reach = network_reach(_unet(0), 4, CPU)
    sizes = []
    for mb in (32, 64, 256):
        plan = plan_tiles(5000, 5000, reach, mb)
        assert (plan.core + 2 * plan.halo) ** 2 * reach.bytes_per_px <= mb * 2**20
        sizes.append(plan.core)
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    with pytest.raises(DamagenetUsageError, match="--memory-mb 0.5 .* pass --memory-mb"):
        plan_tiles(5000, 5000, reach, 0.5)


def test_activation_bound_covers_a_real_inference_pass():
    """The memory estimate is at least what the pass allocates (its output, its inputs)."""
    reach = network_reach(_unet(0), 4, CPU)
    assert reach.multiple == 8
    assert reach.bytes_per_px >= 4 * (2 * 4 + 2 * 4 + 1)


@pytest.mark.parametrize("sym", range(8))
def test_symmetries_are_undone(sym):
    x = torch.arange(2 * 3 * 8 * 16, dtype=torch.float32).reshape(2, 3, 8, 16)
    assert torch.equal(undo_symmetry(symmetry(x, sym), sym), x)


def test_tta_of_a_pointwise_model_is_the_model():
    """A 1 x 1 network commutes with every symmetry: its TTA map is its plain map."""

    class Pointwise(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(8, 1, 1)

        def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
            return self.conv(torch.cat([before, after], 1))

    torch.manual_seed(0)
    net = Pointwise().eval()
    before, after = _scenes(24, 40)
    plain = PixelScorer(net, NORM, CPU)(before[None], after[None])
    tta = PixelScorer(net, NORM, CPU, tta=True)(before[None], after[None])
    assert plain.shape == (1, 1, 24, 40)
    assert np.abs(plain - tta).max() < 1e-6


def test_folded_model_is_the_same_function():
    model = _unet(3)
    with torch.no_grad():  # batch-norm statistics away from the identity
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    fast = prepare_pixel_model(model, CPU)
    x = torch.randn(2, 4, 40, 56, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        assert (fast(x, x.flip(0)) - model(x, x.flip(0))).abs().max() < 1e-4
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.ups.modules())


def test_nodata_enters_as_the_band_mean():
    before, after = _scenes(40, 48)
    scorer = PixelScorer(prepare_pixel_model(_unet(0), CPU), NORM, CPU)
    ref = scorer(before[None], after[None])[0, 0]
    changed = after.copy()
    changed[:, :20, :24] = 4000  # behind the before scene's nodata: never seen by the model
    again = scorer(before[None], changed[None])[0, 0]
    assert np.array_equal(ref, again)
