"""The architectures a checkpoint can name, and how each is rebuilt from its record.

A checkpoint stores ``architecture``: the dict the network's ``architecture()`` returns, with
its registry name under ``"name"``. Loading looks the name up here and calls the entry's
``from_architecture``; so a new architecture is a class with ``architecture()`` /
``from_architecture()`` and one line in :data:`ARCHITECTURES`, and no reader of checkpoints
changes. Checkpoints written before the registry carry no name: they are ``siamese-resnet``.

What callers may rely on (stable; maps, evaluation and benchmarks use it):

- :func:`rebuild` gives the network (random weights) of a record; load the state dict after;
- every network is called as ``model(before, after)`` with two normalised (N, bands, H, W)
  tensors; :func:`output_of` says what comes back: ``pair`` -> logits (N,), one per pair
  (``siamese-resnet``); ``pixel`` -> logits (N, 1, H, W), one per pixel (``siamese-unet``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from damagenet.errors import CheckpointError
from damagenet.models.choices import ARCHITECTURES as NAMES
from damagenet.models.choices import DEFAULT_ARCHITECTURE
from damagenet.models.siamese_resnet import SiameseResNet
from damagenet.models.unet import SiameseUNet

#: Every registered network (all are ``nn.Module`` with ``architecture()``).
Network = SiameseResNet | SiameseUNet
PAIR = "pair"
PIXEL = "pixel"
#: The name of records that carry none (checkpoints older than the registry: the patch network).
LEGACY = DEFAULT_ARCHITECTURE


@dataclass(frozen=True)
class Architecture:
    """One registered architecture: its name, how to rebuild it, what its forward returns."""

    name: str
    rebuild: Callable[[Mapping[str, Any]], Network]
    output: str
    summary: str


ARCHITECTURES: dict[str, Architecture] = {
    "siamese-resnet": Architecture(
        "siamese-resnet",
        SiameseResNet.from_architecture,
        PAIR,
        "the study's Siamese ResNet: one logit per before/after patch pair",
    ),
    "siamese-unet": Architecture(
        "siamese-unet",
        SiameseUNet.from_architecture,
        PIXEL,
        "Siamese U-Net: shared encoder, fusion at every skip scale, one logit per pixel",
    ),
}


def arch_name(arch: Mapping[str, Any]) -> str:
    """The registry name of an architecture record (``siamese-resnet`` when it has none)."""
    return str(arch.get("name", LEGACY))


def entry(arch: Mapping[str, Any] | str) -> Architecture:
    """The registry entry of a record or a name; an unknown name is a checkpoint error."""
    name = arch if isinstance(arch, str) else arch_name(arch)
    if name not in ARCHITECTURES:
        raise CheckpointError(
            f"unknown architecture {name!r} (this damagenet knows {', '.join(ARCHITECTURES)}); "
            "the checkpoint comes from a newer or another program"
        )
    return ARCHITECTURES[name]


class Weights(Protocol):
    """What a checkpoint saves: a network, or a frozen snapshot of one's weights."""

    def state_dict(self) -> Mapping[str, Any]: ...
    def architecture(self) -> dict[str, Any]: ...


def rebuild(arch: Mapping[str, Any]) -> Network:
    """The network a record describes, with random weights."""
    return entry(arch).rebuild(arch)


def output_of(arch: Mapping[str, Any]) -> str:
    """:data:`PAIR` (logits (N,)) or :data:`PIXEL` (logits (N, 1, H, W))."""
    return entry(arch).output


def describe(arch: Mapping[str, Any]) -> str:
    """``siamese-resnet (resnet18)``, ``siamese-unet (small, diff)``: for messages."""
    name = arch_name(arch)
    if name == "siamese-resnet":
        return f"{name} ({arch.get('backbone')})"
    return f"{name} ({arch.get('encoder')}, {arch.get('fusion')})"


def parameter_count(arch: Mapping[str, Any]) -> int:
    """Trainable parameters of the network a record describes (built on the meta device:
    no memory is allocated, so a 60 M parameter ResNet costs nothing to count)."""
    with torch.device("meta"):
        model = rebuild(arch)
    return sum(p.numel() for p in model.parameters())


assert tuple(ARCHITECTURES) == NAMES, "damagenet.models.choices lists the registered names"
