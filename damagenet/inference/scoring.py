"""Device choice, batched inference and an inference-only form of the network.

Shared by training (validation), evaluation and maps, so autocast and batching live in one
place. :func:`optimise_for_inference` turns a trained network into a faster one with the same
outputs (within float rounding): batch norms folded into the preceding convolutions and linear
layers, and ``torch.compile`` where it pays (CUDA, big maps on a CPU) and a compiler works.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from copy import deepcopy
from typing import Any, cast

import numpy as np
import torch
import torch._inductor.config as inductor_config
import torch.fx.experimental.optimization as fx_optimization
from torch import nn

from contract.bands import BANDS
from contract.errors import first_line
from damagenet.data.pairs import Normalisation, TensorSplit, symmetry
from damagenet.defaults import COMPILE_CHOICES
from damagenet.errors import DamagenetError, DamagenetUsageError
from damagenet.evaluation.calibration import apply_calibration
from damagenet.models.centre_tap import CentreTapConv2d, use_centre_taps
from damagenet.models.siamese_resnet import use_plain_batch_norms

log = logging.getLogger(__name__)
#: windows (times TTA symmetries) from which ``--compile auto`` compiles on a CPU
COMPILE_MIN_WINDOWS_CPU = 150_000


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DamagenetError("--device cuda requested but no CUDA GPU is available")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise DamagenetError(f"--device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def batched_logits(
    model: nn.Module,
    before: torch.Tensor,
    after: torch.Tensor,
    batch_size: int,
    device: torch.device,
) -> torch.Tensor:
    """Float32 logits on the CPU for every pair, ``batch_size`` pairs per call.

    Mixed precision on CUDA; inference mode everywhere (no autograd bookkeeping).
    """
    out = []
    with torch.inference_mode():
        for start in range(0, len(before), batch_size):
            xb = before[start : start + batch_size].to(device, non_blocking=True)
            xa = after[start : start + batch_size].to(device, non_blocking=True)
            with torch.autocast(
                device_type=device.type, dtype=torch.float16, enabled=device.type == "cuda"
            ):
                out.append(model(xb, xa).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def predict_logits(
    model: nn.Module, data: TensorSplit, batch_size: int, device: torch.device
) -> np.ndarray:
    """Logits for every pair of ``data``, in eval mode (mixed precision on CUDA)."""
    model.eval()
    return batched_logits(model, data.before, data.after, batch_size, device).numpy()


class FixedBatch(nn.Module):
    """Runs a compiled network on batches of one size: short batches are padded with zeros.

    A shape-specialised compiled graph would otherwise be recompiled for every strip's last,
    shorter batch. Each pair's logit depends on that pair only (eval mode).
    """

    def __init__(self, net: nn.Module, batch_size: int) -> None:
        super().__init__()
        self.net, self.batch_size = net, batch_size

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        n = len(before)
        if n < self.batch_size:
            pad = (0, 0, 0, 0, 0, 0, 0, self.batch_size - n)
            before, after = nn.functional.pad(before, pad), nn.functional.pad(after, pad)
        with inductor_config.patch(freezing=True):  # weights as constants: prepacked kernels
            return self.net(before, after)[:n]


def fold_batch_norms(model: nn.Module) -> nn.Module:
    """A copy with every batch norm folded into the convolution or linear layer before it.

    In eval mode a batch norm is an affine map with frozen statistics, so it merges into the
    preceding layer's weights: one layer fewer per block, the same function up to rounding.
    The encoder's :class:`PairBatchNorm2d` is a plain batch norm in eval mode and a
    :class:`CentreTapConv2d` a plain convolution; the copy's are made plain so that
    ``torch.fx`` can trace the network and recognise the pairs it folds.
    """
    copy = deepcopy(model).eval()
    use_plain_batch_norms(copy)
    for module in copy.modules():
        if type(module) is CentreTapConv2d:
            module.__class__ = nn.Conv2d  # type: ignore[assignment]  # a plain one
    return fx_optimization.fuse(copy, inplace=True)


def wants_compile(compile: str, device: torch.device, windows: int) -> bool:
    """Whether compiling pays: on CUDA, or on a CPU for maps of many windows.

    On the idle 2-core CPU of docs/performance.md compiling a ResNet-101 took 22 s and then
    scored 1,035 windows/s against 881 for the folded, centre-tap model: it pays from about
    130,000 windows (a city of ~30 km at stride 8).
    """
    if compile not in COMPILE_CHOICES:
        raise DamagenetUsageError(
            f"--compile must be one of {', '.join(COMPILE_CHOICES)}, got {compile!r}"
        )
    if compile == "auto":
        return device.type == "cuda" or windows >= COMPILE_MIN_WINDOWS_CPU
    return compile == "on"


def optimise_for_inference(
    model: nn.Module,
    device: torch.device,
    compile: bool = False,
    example: tuple[torch.Tensor, torch.Tensor] | None = None,
    batch_size: int = 256,
) -> nn.Module:
    """The fastest form of ``model`` that gives its outputs; a compiler failure falls back.

    Batch norms are folded and convolutions on one-pixel maps run as matrix products;
    with ``compile`` the folded network is compiled by Inductor (with frozen weights) for
    batches of ``batch_size``, and ``example`` (a small batch) is run at once so that a missing
    compiler shows up here, not in the middle of a map.
    """
    fast = fold_batch_norms(model.to(device)).eval()
    use_centre_taps(fast)  # after tracing: fx cannot trace the branch on the input's size
    if not compile:
        return fast
    compiled = FixedBatch(cast(nn.Module, torch.compile(fast, dynamic=False)), batch_size)
    try:
        if example is not None:
            batched_logits(compiled, *example, batch_size, device)
        return compiled
    except Exception as exc:  # a missing C++ compiler, Triton, an unsupported op, ...
        log.warning(
            "torch.compile is not usable here (%s: %s); running uncompiled",
            type(exc).__name__,
            first_line(exc),
        )
        return fast


def band_index(network_bands: Sequence[str]) -> list[int]:
    """Indices that reorder a scene's B02, B03, B04, B08 into the network's band order.

    An imported model may expect, say, B04, B03, B02, B08 (R, G, B, NIR): the scene's bands are
    taken in that order before normalising, so its statistics meet the bands they belong to.
    """
    bands = [str(b) for b in network_bands]
    if sorted(bands) != sorted(BANDS) or len(bands) != len(BANDS):
        raise DamagenetError(
            f"the checkpoint's bands {bands} are not an order of {', '.join(BANDS)}"
        )
    return [BANDS.index(b) for b in bands]


class PairScorer:
    """Probabilities (float64) for batches of raw DN windows in the scene's band order.

    Reorders the bands into the network's order, normalises, scores in batches (optionally
    averaging the 8 symmetries of the square) and returns one probability per pair, calibrated
    when the checkpoint carries a ``calibration`` fit (applied to the final probability, so an
    uncalibrated checkpoint gives exactly the uncalibrated numbers).
    """

    #: one score per window (:class:`damagenet.inference.map_scoring.WindowScorer`)
    layers = 1

    def __init__(
        self,
        model: nn.Module,
        norm: Normalisation,
        device: torch.device,
        batch_size: int,
        tta: bool = False,
        network_bands: Sequence[str] = BANDS,
        calibration: dict[str, Any] | None = None,
    ) -> None:
        self.model, self.norm, self.device = model, norm, device
        self.batch_size, self.tta = batch_size, tta
        self.index = band_index(network_bands)
        self.calibration = calibration

    def __call__(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        # normalised float copies are made one batch at a time to keep a strip's memory small
        out = [
            self._score(before[i : i + self.batch_size], after[i : i + self.batch_size])
            for i in range(0, len(before), self.batch_size)
        ]
        prob = np.concatenate(out) if out else np.zeros(0)
        return apply_calibration(prob, self.calibration)

    def _score(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        b = self.norm.apply(before[:, self.index])
        a = self.norm.apply(after[:, self.index])
        syms = range(8) if self.tta else (0,)
        prob = torch.zeros(len(b))
        for s in syms:
            prob += torch.sigmoid(
                batched_logits(
                    self.model, symmetry(b, s), symmetry(a, s), self.batch_size, self.device
                )
            )
        return (prob / len(syms)).numpy().astype(np.float64)
