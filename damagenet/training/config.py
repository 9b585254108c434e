"""Training settings as a plain record: the command line builds it without importing torch.

:class:`TrainConfig` is also the Python API's options record (``train(npz, out, ckpt, cfg)``,
used by cross-validation and the benchmarks). Settings of one architecture are ignored by the
other: ``backbone`` and ``head`` are the Siamese ResNet's; ``encoder``, ``fusion``,
``fusion_conv``, ``width``, ``weights_file``, ``pos_weight``, ``dice_weight`` and
``oversample`` the Siamese U-Net's; :func:`recipe` keeps only those of the chosen one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from damagenet.defaults import (
    BACKBONE_FEATURES,
    HEADS,
    MEMORY_FORMATS,
    PRECISION_NAMES,
    THRESHOLD_RULES,
)
from damagenet.errors import DamagenetUsageError
from damagenet.models.choices import ARCHITECTURES, DEFAULT_ARCHITECTURE, FUSIONS, UNET_ENCODERS


@dataclass
class TrainConfig:
    """Training settings; the defaults are the original study's recipe."""

    epochs: int = 40
    batch_size: int = 64
    patience: int = 10
    backbone: str = "resnet101"
    weights: str = "none"
    device: str = "auto"
    seed: int = 42
    lr_backbone: float = 1e-4
    lr_head: float = 1e-3
    weight_decay: float = 1e-4
    clip_norm: float = 1.5
    threshold_rule: str = "recall90"
    head: str = "study-readme"
    augment: bool = True
    eval_batch_size: int = 512
    progress: bool = True
    memory_format: str = "auto"
    precision: str = "auto"
    fused_optimizer: bool = True
    threads: int | None = None
    #: ``siamese-resnet`` (one logit per patch pair) or ``siamese-unet`` (one per pixel)
    arch: str = DEFAULT_ARCHITECTURE
    encoder: str = "small"
    fusion: str = "diff"
    fusion_conv: bool = False
    width: int = 16
    #: a local torchvision ImageNet state dict for a U-Net ResNet encoder (``weights=imagenet``)
    weights_file: str | None = None
    #: weight of damaged pixels in the masked BCE (None: 1)
    pos_weight: float | None = None
    #: weight of the masked soft-Dice term added to the BCE (0: BCE alone)
    dice_weight: float = 0.0
    #: share of each epoch's draws given to tiles holding damage (0: a plain shuffled pass)
    oversample: float = 0.5


#: Settings that belong to one architecture only.
ARCH_SETTINGS: dict[str, tuple[str, ...]] = {
    "siamese-resnet": ("backbone", "head"),
    "siamese-unet": (
        "encoder",
        "fusion",
        "fusion_conv",
        "width",
        "weights_file",
        "pos_weight",
        "dice_weight",
        "oversample",
    ),
}
#: Settings that change speed, not the model: left out of the model card's recipe.
SPEED_SETTINGS = ("device", "progress", "eval_batch_size", "memory_format", "fused_optimizer")


def recipe(cfg: TrainConfig) -> dict[str, Any]:
    """The settings that shape the model, for the model card: none of the other architecture's."""
    other = {k for arch, keys in ARCH_SETTINGS.items() if arch != cfg.arch for k in keys}
    drop = other | set(SPEED_SETTINGS) | {"threads"}
    return {k: v for k, v in asdict(cfg).items() if k not in drop}


def check_config(cfg: TrainConfig) -> None:
    """Refuse settings no network or loop can take, naming the option."""
    choices = {
        "arch": (cfg.arch, ARCHITECTURES),
        "backbone": (cfg.backbone, tuple(BACKBONE_FEATURES)),
        "head": (cfg.head, tuple(HEADS)),
        "encoder": (cfg.encoder, UNET_ENCODERS),
        "fusion": (cfg.fusion, FUSIONS),
        "memory format": (cfg.memory_format, MEMORY_FORMATS),
        "precision": (cfg.precision, PRECISION_NAMES),
        "threshold rule": (cfg.threshold_rule, THRESHOLD_RULES),
        "weights": (cfg.weights, ("none", "imagenet")),
    }
    for what, (value, allowed) in choices.items():
        if value not in allowed:
            raise DamagenetUsageError(
                f"unknown {what} {value!r}; choose one of {', '.join(allowed)}"
            )
    if cfg.epochs < 1 or cfg.patience < 1:
        raise DamagenetUsageError("--epochs and --patience must be at least 1")
    if cfg.batch_size < 2:
        raise DamagenetUsageError("--batch-size must be at least 2: BatchNorm needs two pairs")
    if cfg.width < 1 or not 0 <= cfg.oversample < 1 or cfg.dice_weight < 0:
        raise DamagenetUsageError(
            "--width must be at least 1, --oversample in [0, 1), --dice-weight at least 0"
        )
    if cfg.pos_weight is not None and cfg.pos_weight <= 0:
        raise DamagenetUsageError("--pos-weight must be positive")
