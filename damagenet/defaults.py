"""Choices and defaults the command lines offer, in a module that imports nothing heavy.

``damagenet --help`` builds every subcommand's parser; if the parsers imported the libraries
that own these values (torch, scikit-learn, scipy), every ``--help`` and every start-up would
pay seconds for them (issue 31). The libraries import their values from here, so each value
still has one home.
"""

from __future__ import annotations

import argparse
import re

#: torchvision ResNet depths the Siamese network and the U-Net encoders offer, with their
#: final feature width.
BACKBONE_FEATURES: dict[str, int] = {
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "resnet101": 2048,
    "resnet152": 2048,
}
#: The two heads of the original study, by name: hidden layer widths and their dropouts. Each
#: hidden layer is ``Linear, BatchNorm1d, GELU, Dropout``; a final ``Linear(last, 1)`` follows.
HEADS: dict[str, tuple[tuple[int, ...], tuple[float, ...]]] = {
    "study-readme": ((256,), (0.5,)),
    "study-code": ((4096, 1024, 256), (0.5, 0.2, 0.2)),
}
#: The band order of the study's arrays and statistics: R, G, B, NIR.
STUDY_BANDS: tuple[str, ...] = ("B04", "B03", "B02", "B08")
#: Rules choosing the decision threshold on validation.
THRESHOLD_RULES: tuple[str, ...] = ("recall90", "f1")
#: Bootstrap resamples per interval.
N_BOOT = 1000
#: ``--compile`` choices of prediction.
COMPILE_CHOICES: tuple[str, ...] = ("auto", "on", "off")
#: Memory layouts and arithmetic precisions of training.
MEMORY_FORMATS: tuple[str, ...] = ("auto", "channels-last", "contiguous")
PRECISION_NAMES: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16")
#: patch size from which channels-last trains faster than the plain layout on a CPU (measured:
#: 1.2x faster at 64 px, 1.2x slower at 16 px, ResNet-101, 2 threads; docs/performance.md)
CHANNELS_LAST_MIN_PATCH_CPU = 32


def device_name(text: str) -> str:
    """``--device``: auto, cpu, cuda or cuda:N, checked when the line is parsed (exit 2), not
    after seconds of imports; whether a GPU is there is asked when the command runs."""
    if text in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", text):
        return text
    raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")
