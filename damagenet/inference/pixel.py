"""Per-pixel probabilities of a pixel model, tile by tile and band by band.

:class:`PixelScorer` is the pixel model's counterpart of :class:`~damagenet.inference.scoring.
PairScorer`: raw digital numbers in the scene's band order in, calibrated probabilities out,
one per pixel. Pixels without an observation in either date enter the network as the band
mean (0 after standardisation) and come out as NaN. :func:`score_band` scores one row of tiles
(:mod:`damagenet.inference.tiles`) and keeps each tile's core: the same function runs in this
process and as a dask task on a cluster, so both give the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from copy import deepcopy
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from contract.bands import BANDS, SCENE_NODATA
from contract.windows import nodata_pixels
from damagenet.data.pairs import Normalisation, symmetry
from damagenet.evaluation.calibration import apply_calibration
from damagenet.inference.ensemble import mean_and_spread
from damagenet.inference.scoring import band_index, batched_logits
from damagenet.inference.tiles import Span, TilePlan


def prepare_pixel_model(model: nn.Module, device: torch.device) -> nn.Module:
    """The network in eval mode on ``device``, each convolution followed by a batch norm in one
    ``nn.Sequential`` merged with it (the same function, one layer fewer), its weights in the
    channels-last layout (whole-tile convolutions run about twice as fast on a CPU; the
    activations follow the weights, the logits differ by float rounding, 1.5e-8).

    :func:`~damagenet.inference.scoring.fold_batch_norms` traces the network with ``torch.fx``,
    which a U-Net's size matching cannot pass; the U-Net's convolutions and their batch norms
    sit side by side in sequentials, where they are folded here without tracing.
    """
    fast = deepcopy(model).to(device).eval()
    for seq in [m for m in fast.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d:
                seq[i] = fuse_conv_bn_eval(conv, bn)
                seq[i + 1] = nn.Identity()
    return fast.to(memory_format=torch.channels_last)


def undo_symmetry(x: torch.Tensor, sym: int) -> torch.Tensor:
    """The inverse of :func:`~damagenet.data.pairs.symmetry` on the last two axes."""
    y = x.transpose(-2, -1) if sym >= 4 else x
    return torch.rot90(y, -(sym % 4), dims=(-2, -1))


class PixelScorer:
    """Probabilities (float64, (N, 1, H, W)) for (N, bands, H, W) raw DN tiles.

    Reorders the bands into the network's order, standardises, optionally averages the 8
    symmetries of the square (each undone on the logits' map before averaging), and applies
    the checkpoint's calibration per pixel.
    """

    layers = 1

    def __init__(
        self,
        model: nn.Module,
        norm: Normalisation,
        device: torch.device,
        tta: bool = False,
        network_bands: Sequence[str] = BANDS,
        calibration: dict[str, Any] | None = None,
    ) -> None:
        self.model, self.norm, self.device, self.tta = model, norm, device, tta
        self.index = band_index(network_bands)
        self.calibration = calibration

    def __call__(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        nodata = (before == SCENE_NODATA).any(axis=1) | (after == SCENE_NODATA).any(axis=1)
        missing = torch.from_numpy(nodata)[:, None]
        b = self.norm.apply(before[:, self.index]).masked_fill(missing, 0.0)
        a = self.norm.apply(after[:, self.index]).masked_fill(missing, 0.0)
        syms = range(8) if self.tta else (0,)
        prob = torch.zeros(b.shape[0], 1, *b.shape[-2:], dtype=torch.float64)
        for s in syms:
            logits = batched_logits(self.model, symmetry(b, s), symmetry(a, s), len(b), self.device)
            prob += torch.sigmoid(undo_symmetry(logits, s).double())
        return apply_calibration((prob / len(syms)).numpy(), self.calibration)


class PixelEnsemble:
    """Several pixel scorers as one: (N, 2, H, W) of the members' mean and spread per pixel."""

    layers = 2

    def __init__(self, members: Sequence[PixelScorer]) -> None:
        self.members = list(members)

    def __call__(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        probs = np.stack([m(before, after)[:, 0] for m in self.members])
        mean, std = mean_and_spread(probs.reshape(len(self.members), -1))
        shape = probs.shape[1:]
        return np.stack([mean.reshape(shape), std.reshape(shape)], axis=1)


def score_band(
    before: np.ndarray,
    after: np.ndarray,
    band: Span,
    columns: Sequence[Span],
    plan: TilePlan,
    scorer: PixelScorer | PixelEnsemble,
) -> np.ndarray:
    """(core rows, width, layers) probabilities of one band; NaN where either date has nodata.

    ``before`` and ``after`` are the scene rows ``band.lo`` up to the scene's last row or
    ``band.hi`` (DN, bands first); rows and columns beyond the scene are padded as nodata.
    """
    from damagenet.data.scene_pair import as_digital_numbers

    rows = band.hi - band.lo
    pad = ((0, 0), (0, rows - before.shape[1]), (0, plan.padded_width - plan.width))
    b = np.pad(as_digital_numbers(before), pad, constant_values=SCENE_NODATA)
    a = np.pad(as_digital_numbers(after), pad, constant_values=SCENE_NODATA)
    top, bottom = band.start - band.lo, band.stop - band.lo
    out = np.empty((scorer.layers, bottom - top, plan.width))
    for col in columns:
        tile = (slice(None), slice(None), slice(col.lo, col.hi))
        prob = scorer(b[tile][None], a[tile][None])[0]
        out[:, :, col.start : col.stop] = prob[
            :, top:bottom, col.start - col.lo : col.stop - col.lo
        ]
    missing = nodata_pixels(b[:, top:bottom, : plan.width], a[:, top:bottom, : plan.width])
    out[:, missing] = np.nan
    return np.moveaxis(out, 0, -1)
