"""Overlapping tiles for a fully convolutional network: where they lie, how wide their halo is.

A pixel model maps a scene in one pass, but a whole city does not fit in memory at once, so the
scene is cut into tiles whose *cores* tile it exactly and each tile is scored with a *halo* of
context around its core; only the core is kept (overlap-crop, no weights to blend). The halo is
the network's receptive radius, bounded from its layers (:func:`receptive_radius`), so a core
pixel sees exactly the pixels it would see in a one-tile pass; tile origins are multiples of
the network's ``size_multiple`` and the scene is padded to one at its bottom and right, so every
pooling grid lines up with the one-tile pass. A map scored in many tiles therefore equals one
scored in a single tile up to float rounding: no seams. Networks whose receptive radius exceeds
:data:`MAX_HALO` (the ResNet encoders) keep a 128 px halo: the far context's weight is small
but not zero there.

Core rows are planned in *bands* (one row of tiles), each a multiple of the map's cell
(:data:`MAP_CELL`), so the cells a map tallies (the GeoPackage of damaged patches, window
metrics) never straddle two bands.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from contract.npz_keys import TILE_CELL
from damagenet.errors import DamagenetUsageError

#: the patch model's window: a pixel map tallies cells of this side, on the patch maps' grid
MAP_CELL = TILE_CELL
#: widest halo kept on each side of a tile core, px (1.28 km of context at 10 m)
MAX_HALO = 128
#: kinds of layer whose kernel widens the receptive field
_SPATIAL = (nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d, nn.AvgPool2d)


@dataclass(frozen=True)
class Span:
    """One tile along an axis: the core ``start:stop`` kept, the input ``lo:hi`` scored."""

    start: int
    stop: int
    lo: int
    hi: int


@dataclass(frozen=True)
class TilePlan:
    """Tiles over a ``height`` x ``width`` scene: square cores of ``core`` px, ``halo`` px around.

    ``padded_height`` and ``padded_width`` are the scene rounded up to the network's
    ``multiple`` (the padding is nodata); cores and inputs lie on that canvas.
    """

    height: int
    width: int
    multiple: int
    core: int
    halo: int

    @property
    def padded_height(self) -> int:
        return _round_up(self.height, self.multiple)

    @property
    def padded_width(self) -> int:
        return _round_up(self.width, self.multiple)

    def bands(self) -> list[Span]:
        """Rows of tiles: cores of whole cells; the scene's last rows join the band above."""
        return _spans(self.height, self.padded_height, self.core, self.halo, MAP_CELL)

    def columns(self) -> list[Span]:
        """Tiles along a band (cores cut at the scene's right edge)."""
        return _spans(self.width, self.padded_width, self.core, self.halo, 1)

    @property
    def tiles(self) -> int:
        return len(self.bands()) * len(self.columns())


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _spans(length: int, padded: int, core: int, halo: int, last_min: int) -> list[Span]:
    """Cores every ``core`` px up to ``length``; a last core under ``last_min`` px is merged."""
    starts = list(range(0, length, core))
    if len(starts) > 1 and length - starts[-1] < last_min:
        starts.pop()
    stops = starts[1:] + [length]
    return [
        Span(a, b, max(0, a - halo), min(padded, b + halo))
        for a, b in zip(starts, stops, strict=True)
    ]


def size_multiple(model: nn.Module) -> int:
    """Input sides that the network pools without remainder (1 for a network without pooling)."""
    return int(getattr(model, "size_multiple", 1))


@dataclass(frozen=True)
class NetworkReach:
    """What tiling needs to know of a network: its size multiple, receptive radius, memory."""

    multiple: int
    radius: int
    bytes_per_px: float

    @property
    def halo(self) -> int:
        """The receptive radius rounded up to the size multiple (one more for alignment)."""
        return min(
            _round_up(self.radius + self.multiple, self.multiple),
            _round_up(MAX_HALO, self.multiple),
        )


def network_reach(model: nn.Module, in_bands: int, device: torch.device) -> NetworkReach:
    """Size multiple, receptive radius and activation bytes per input pixel, from one small pass.

    The radius is an upper bound: every spatial layer's kernel reach, at the scale it works at,
    summed over all layers (a U-Net's longest path runs through all of them). The memory is the
    sum of every layer's output per input pixel for the two dates, an upper bound on what an
    inference pass holds at once.
    """
    multiple = size_multiple(model)
    side = max(4 * multiple, 32)
    reach: list[float] = []
    #: every layer's output, kept alive so that in-place layers (same storage) count once
    outputs: dict[int, torch.Tensor] = {}

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if isinstance(module, _SPATIAL):
            reach.append(_kernel_reach(module) * side / inputs[0].shape[-1])
        if isinstance(output, torch.Tensor):
            outputs[output.data_ptr()] = output

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        x = torch.zeros(1, in_bands, side, side, device=device)
        with torch.inference_mode():
            model.eval()(x, x)
    finally:
        for h in handles:
            h.remove()
    held = sum(t.numel() * t.element_size() for t in outputs.values())
    bytes_per_px = (held + 2 * x.numel() * x.element_size()) / side**2
    return NetworkReach(multiple, math.ceil(sum(reach)), bytes_per_px)


def _kernel_reach(module: nn.Module) -> float:
    """How far (px at the layer's input scale) one output reaches beyond its own position.

    A kernel of ``k`` taps, dilation ``d`` and padding ``p`` spans ``p`` px before the output's
    position and ``(k - 1) d - p`` after it; a transposed convolution of stride ``s`` reaches
    ``(k - 1) / s`` input px.
    """
    k, d, p, s = (
        _first(getattr(module, a, 1)) for a in ("kernel_size", "dilation", "padding", "stride")
    )
    if isinstance(module, nn.ConvTranspose2d):
        return (k - 1) / max(s, 1)
    return max(p, (k - 1) * d - p)


def _first(value: Any) -> int:
    """A layer setting that torch stores as an int or a per-axis tuple, as one int."""
    return int(value[0] if isinstance(value, tuple) else value)


def plan_tiles(
    height: int, width: int, reach: NetworkReach, memory_mb: float, core: int | None = None
) -> TilePlan:
    """The widest tiles whose input fits ``memory_mb`` (or cores of ``core`` px, for tests).

    Refuses a budget too small for the halo: a tile must hold at least one cell beyond it.
    """
    step = math.lcm(reach.multiple, MAP_CELL)
    if core is None:
        side = int(math.sqrt(memory_mb * 2**20 / reach.bytes_per_px))
        core = (side - 2 * reach.halo) // step * step
        if core < step:
            need = reach.bytes_per_px * (2 * reach.halo + step) ** 2 / 2**20
            raise DamagenetUsageError(
                f"--memory-mb {memory_mb:g} gives tiles of {side} px, too small for the "
                f"network's context of {reach.halo} px on each side; pass --memory-mb "
                f"{math.ceil(need)} or more"
            )
    if core % step:
        raise DamagenetUsageError(f"tile cores must be a multiple of {step} px, got {core}")
    longest = _round_up(max(height, width), step)
    return TilePlan(height, width, reach.multiple, min(core, longest), reach.halo)


def widest(reaches: Sequence[NetworkReach]) -> NetworkReach:
    """One reach for several networks scored on the same tiles (an ensemble)."""
    return NetworkReach(
        math.lcm(*(r.multiple for r in reaches)),
        max(r.radius for r in reaches),
        max(r.bytes_per_px for r in reaches),
    )
