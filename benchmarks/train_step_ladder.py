"""What each training change buys: the study's step, then ``damagenet train``'s, change by change.

Usage: python benchmarks/train_step_ladder.py [--sizes 16 64] [--rounds 6] [--threads 2]

One ResNet-101 training step (forward, BCE, backward, clipping at 1.5, Adam) on 64 random pairs,
built up from the original study's (two encoder passes with plain batch norms, default layout,
Adam's per-tensor loop) by adding one change at a time: fused Adam, the layout
``--memory-format auto`` picks for the size, one encoder pass with ``PairBatchNorm2d``, the
centre tap sliced but still convolved (to show where the gain of the next row comes from),
one-pixel convolutions as matrix products (``damagenet.models.centre_tap``), and bfloat16 autocast.
All variants step in turn, round after round, in one process; the median step time of each
(first round left out as warm-up) is printed with its ratio to the row before and to the first.
``--flops`` also counts the study step's floating-point operations (``torch.utils.flop_counter``).
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from damagenet.models.centre_tap import use_centre_taps
from damagenet.models.siamese_resnet import SiameseResNet, build_model, use_plain_batch_norms
from damagenet.training.train import memory_format


@dataclass(frozen=True)
class Variant:
    name: str
    two_passes: bool
    layout: str
    fused: bool
    taps: str  # none | slice | linear
    bf16: bool


LADDER = (
    Variant(
        "the study's step: two passes, plain layout, Adam loop",
        True,
        "contiguous",
        False,
        "none",
        False,
    ),
    Variant("+ fused Adam", True, "contiguous", True, "none", False),
    Variant("+ layout by patch size", True, "auto", True, "none", False),
    Variant("+ one encoder pass, PairBatchNorm2d", False, "auto", True, "none", False),
    Variant("+ 3x3 centre tap sliced, still a convolution", False, "auto", True, "slice", False),
    Variant("+ one-pixel convolutions as matrix products", False, "auto", True, "linear", False),
    Variant("+ bfloat16", False, "auto", True, "linear", True),
)


class SlicedTap(nn.Conv2d):
    """The centre tap of a 3 x 3 convolution on a 1 x 1 map, still run as a convolution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] == (1, 1):
            return F.conv2d(x, self.weight[:, :, 1:2, 1:2], self.bias, self.stride, 0)
        return super().forward(x)


def prepare(v: Variant, size: int) -> SiameseResNet:
    torch.manual_seed(1)
    model = build_model("resnet101", "none", "study-readme")
    fmt = memory_format(v.layout, torch.device("cpu"), size)
    model = model.to(memory_format=fmt)
    if v.two_passes:
        use_plain_batch_norms(model)
    for module in model.modules():
        if (
            v.taps == "slice"
            and type(module) is nn.Conv2d
            and module.kernel_size == (3, 3)
            and module.padding == (1, 1)
        ):
            module.__class__ = SlicedTap
    if v.taps == "linear":
        use_centre_taps(model)
    return model


class Runner:
    """One variant's model, optimiser and batch, stepping on demand."""

    def __init__(
        self, v: Variant, size: int, xb: torch.Tensor, xa: torch.Tensor, y: torch.Tensor
    ) -> None:
        self.v, self.model = v, prepare(v, size)
        fmt = memory_format(v.layout, torch.device("cpu"), size)
        self.xb, self.xa, self.y = (
            xb.contiguous(memory_format=fmt),
            xa.contiguous(memory_format=fmt),
            y,
        )
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-4, fused=v.fused)
        self.loss_fn = nn.BCEWithLogitsLoss()

    def step(self) -> None:
        m = self.model.train()
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.v.bf16):
            if self.v.two_passes:
                fb, fa = m.encoder(self.xb), m.encoder(self.xa)
                logits = m.head(torch.cat([fb, fa, (fb - fa).abs(), fb * fa], 1)).squeeze(1)
            else:
                logits = m(self.xb, self.xa)
        self.loss_fn(logits.float(), self.y).backward()
        nn.utils.clip_grad_norm_(m.parameters(), 1.5)
        self.opt.step()


def ladder(size: int, rounds: int, flops: bool) -> None:
    torch.manual_seed(0)
    xb, xa = torch.randn(2, 64, 4, size, size)
    y = (torch.arange(64) % 2).float()
    runners = [Runner(v, size, xb, xa, y) for v in LADDER]
    if flops:
        counter = FlopCounterMode(display=False)
        with counter:
            copy.deepcopy(runners[0]).step()
        print(
            f"{size} px: the study's step is {counter.get_total_flops() / 1e9:.0f} GFLOP "
            "(forward and backward, 64 pairs)"
        )
    times: list[list[float]] = [[] for _ in runners]
    for _ in range(rounds):
        for runner, spent in zip(runners, times, strict=True):
            t = time.perf_counter()
            runner.step()
            spent.append(time.perf_counter() - t)
    previous = first = None
    for v, spent in zip(LADDER, times, strict=True):
        kept = sorted(spent[1:])
        median = kept[len(kept) // 2]
        first = first or median
        step = f"x{previous / median:.2f}" if previous else "     "
        print(
            f"{size:3d} px  {v.name:55s} {median * 1000:7.0f} ms  {step}  "
            f"total x{first / median:.2f}",
            flush=True,
        )
        previous = median


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[16, 64], help="patch sizes in px (16 64)"
    )
    parser.add_argument("--rounds", type=int, default=6, help="steps per variant (6)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (2)")
    parser.add_argument("--flops", action="store_true", help="count the study step's FLOPs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, ResNet-101, 64 pairs per step")
    for size in args.sizes:
        ladder(size, args.rounds, args.flops)


if __name__ == "__main__":
    main()
