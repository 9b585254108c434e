"""Training settings as a plain record: the command line builds it without importing torch."""

from __future__ import annotations

from dataclasses import dataclass


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
