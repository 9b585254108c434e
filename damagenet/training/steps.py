"""The optimisation step and the epoch: layout, arithmetic, the optimiser, one pass of batches.

Speed (issue 19, figures in docs/performance.md): the network and the data take the memory
layout that is faster for the input size (channels-last on CUDA and for inputs of 32 px and
more on a CPU, where it was measured faster; the plain layout for 16 px patches on a CPU); Adam
runs fused; ``--precision bfloat16`` trains in bfloat16 mixed precision (1.7x faster per step
at 64 px on a CPU with AVX-512 BF16); it changes rounding, so it is a choice, not the default on
a CPU. What differs between a pair and a pixel model (loss, augmentation, sampling, what a
batch's accuracy counts) comes from the task (:mod:`damagenet.training.tasks`).
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from tqdm import tqdm

from contract.cli import bar_disabled
from damagenet.data.pairs import TensorSplit
from damagenet.defaults import CHANNELS_LAST_MIN_PATCH_CPU, PRECISION_NAMES
from damagenet.errors import DamagenetError, DamagenetUsageError
from damagenet.models.registry import Network
from damagenet.training.config import TrainConfig
from damagenet.training.tasks import PairTask, Task

log = logging.getLogger(__name__)

#: autocast dtype of each precision name (None: float32 on a CPU, float16 on CUDA)
PRECISIONS = dict(
    zip(PRECISION_NAMES, (None, torch.float32, torch.bfloat16, torch.float16), strict=True)
)


def make_optimizer(model: Network, cfg: TrainConfig, fused: bool = True) -> torch.optim.Optimizer:
    """The study's Adam; fused (one kernel over all parameters) unless ``fused`` is False.

    The backbone (the shared encoder) learns at ``lr_backbone``, the rest at ``lr_head``. The
    unfused loop walks ResNet-101's 300-odd tensors one by one at every step; the fused update
    gives the same values to float rounding.
    """
    groups = [
        {"params": model.backbone_parameters(), "lr": cfg.lr_backbone},
        {"params": model.head_parameters(), "lr": cfg.lr_head},
    ]
    if fused:
        try:
            return torch.optim.Adam(groups, weight_decay=cfg.weight_decay, fused=True)
        except RuntimeError as exc:  # a device without a fused kernel: the plain loop
            log.debug("fused Adam unavailable (%s); using the per-tensor loop", exc)
    return torch.optim.Adam(groups, weight_decay=cfg.weight_decay)


def memory_format(name: str, device: torch.device, patch_size: int) -> torch.memory_format:
    """The layout to train in: ``auto`` picks the one measured faster for this device and size.

    cuDNN and oneDNN prefer channels-last for convolutions on images of some size; a 16 px
    patch shrinks to 1 x 1 in ResNet's deep layers, where a CPU trains faster without it.
    """
    if name == "auto":
        fast = device.type == "cuda" or patch_size >= CHANNELS_LAST_MIN_PATCH_CPU
        name = "channels-last" if fast else "contiguous"
    return torch.channels_last if name == "channels-last" else torch.contiguous_format


def autocast_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast type of ``--precision`` (None: float32 throughout).

    ``auto`` is float16 with a gradient scaler on CUDA and float32 on a CPU, the recipe's own
    arithmetic; float16 needs CUDA.
    """
    dtype = torch.float16 if name == "auto" and device.type == "cuda" else PRECISIONS[name]
    if dtype == torch.float16 and device.type != "cuda":
        raise DamagenetUsageError(
            "--precision float16 needs a CUDA device; on a CPU use bfloat16 or float32"
        )
    return None if dtype == torch.float32 else dtype


def to_layout(data: TensorSplit, fmt: torch.memory_format) -> TensorSplit:
    """The split's images laid out in ``fmt`` once, up front, instead of per batch."""
    return TensorSplit(
        data.before.contiguous(memory_format=fmt),
        data.after.contiguous(memory_format=fmt),
        data.y,
        data.aoi,
    )


class Stepper:
    """One optimisation step: forward, the task's loss, backward, clipping, update.

    ``dtype`` is the autocast type (None: float32). Float16 runs with a gradient scaler, which
    skips steps whose gradients overflowed; bfloat16 has float32's range and no scaler, so a
    step whose gradient norm is not finite is skipped here, counted in ``skipped``, and its
    batch norms' running statistics (updated by the forward pass) are put back.
    """

    def __init__(
        self,
        model: Network,
        optimizer: torch.optim.Optimizer,
        device: torch.device,
        clip_norm: float,
        dtype: torch.dtype | None = None,
        task: Task | None = None,
    ) -> None:
        self.model, self.optimizer, self.device = model, optimizer, device
        self.clip_norm, self.dtype = clip_norm, dtype
        self.task: Task = task or PairTask()
        self.scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        self.skipped = 0
        self.guarded = dtype == torch.bfloat16
        self.buffers = list(model.buffers()) if self.guarded else []

    def __call__(
        self, before: torch.Tensor, after: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(loss, logits) of the step, or None when it was skipped."""
        self.optimizer.zero_grad(set_to_none=True)
        saved = [b.clone() for b in self.buffers]
        with torch.autocast(
            device_type=self.device.type,
            dtype=self.dtype or torch.float32,
            enabled=self.dtype is not None,
        ):
            logits = self.model(before, after)
            loss = self.task.loss(logits.float(), y)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm)
        if self.guarded and not torch.isfinite(norm):
            self.skipped += 1
            with torch.no_grad():
                for buffer, old in zip(self.buffers, saved, strict=True):
                    buffer.copy_(old)
            return None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach(), logits.detach()


def train_epoch(
    stepper: Stepper,
    data: TensorSplit,
    batch_size: int,
    generator: torch.Generator,
    use_augment: bool = True,
    desc: str = "train",
    progress: bool = True,
) -> tuple[float, float]:
    """One pass over ``data`` (already on the device) in the task's order; (loss, accuracy).

    Loss and accuracy are averaged over what the task scores: pairs, or labelled pixels.
    """
    stepper.model.train()
    task, device = stepper.task, data.y.device
    order = task.order(data.y, generator).to(device)
    loss_sum, correct = torch.zeros((), device=device), torch.zeros((), device=device)
    seen, steps, skipped = 0, 0, stepper.skipped
    bar = tqdm(
        total=len(order), desc=desc, unit=task.unit, leave=False, disable=bar_disabled(progress)
    )
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        if len(idx) < 2:  # BatchNorm needs two samples
            continue
        xb, xa, y = data.before[idx], data.after[idx], data.y[idx]
        if use_augment:
            xb, xa, y = task.augment(xb, xa, y, generator)
        done = stepper(xb, xa, y)
        steps += 1
        bar.update(len(idx))
        if done is None:  # skipped: its loss is not the model's
            continue
        right, counted = task.counts(done[1], y)
        loss_sum += done[0] * counted
        correct += right
        seen += counted
    bar.close()
    check_skipped(stepper.skipped - skipped, steps, desc)
    return float(loss_sum) / max(seen, 1), float(correct) / max(seen, 1)


def check_skipped(skipped: int, steps: int, desc: str) -> None:
    """Say when bfloat16 steps were skipped for non-finite gradients; stop if all were."""
    if skipped == 0:
        return
    if skipped == steps:
        raise DamagenetError(
            f"{desc}: every step had non-finite gradients in bfloat16; "
            "train with --precision float32"
        )
    log.warning(
        "%s: %d of %d steps skipped for non-finite gradients (bfloat16)", desc, skipped, steps
    )
