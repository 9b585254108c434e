"""Training throughput of ResNet-101 on 16 x 16 pairs at batch 64.

Usage: python benchmarks/train_throughput.py [--batches 12] [--device auto] [--backbone resnet101]

Prints pairs per second through the real training loop (index batches, augmentation, progress
bar, AMP on CUDA) and through a bare forward-backward-step loop on one batch already in memory,
and their ratio, in one run on the same model.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from damagenet.data import Normalisation, Split, to_tensors
from damagenet.inference import resolve_device
from damagenet.model import build_model
from damagenet.train import Stepper, TrainConfig, make_optimizer, train_epoch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=12, help="timed batches per loop")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--backbone", default="resnet101")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    bs, n = args.batch_size, args.batch_size * args.batches
    rng = np.random.default_rng(0)
    raw = Split(rng.integers(1, 4000, (n, 4, 16, 16), dtype=np.uint16),
                rng.integers(1, 4000, (n, 4, 16, 16), dtype=np.uint16),
                (np.arange(n) % 2).astype(np.int64))
    data = to_tensors(raw, Normalisation.fit(raw)).to(device)
    model = build_model(args.backbone, "none").to(device)
    cfg = TrainConfig(backbone=args.backbone)
    stepper = Stepper(model, make_optimizer(model, cfg), device, cfg.clip_norm)
    model.train()
    gen = torch.Generator().manual_seed(0)
    xb, xa, y = data.before[:bs], data.after[:bs], data.y[:bs]
    for _ in range(3):  # warm-up: allocator, cuDNN autotuning, thread pools
        stepper(xb, xa, y)
    sync(device)

    rates = {}
    for rnd in range(2):  # interleave to share any drift of the machine between both loops
        t = time.perf_counter()
        for _ in range(args.batches):
            stepper(xb, xa, y)
        sync(device)
        bare = n / (time.perf_counter() - t)
        t = time.perf_counter()
        train_epoch(stepper, data, bs, gen, use_augment=True, desc="bench", progress=True)
        sync(device)
        real = n / (time.perf_counter() - t)
        rates.setdefault("bare", []).append(bare)
        rates.setdefault("real", []).append(real)
        print(f"round {rnd + 1}: bare {bare:8.1f} pairs/s   real loop {real:8.1f} pairs/s")
    bare, real = max(rates["bare"]), max(rates["real"])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"{platform.machine()} CPU, {torch.get_num_threads()} threads")
    print(f"device: {name}; torch {torch.__version__}; {args.backbone}, batch {bs}, 16x16 px")
    print(f"bare forward-backward-step: {bare:.1f} pairs/s")
    print(f"real training loop:         {real:.1f} pairs/s")
    print(f"real / bare:                {real / bare:.1%}")


if __name__ == "__main__":
    main()
