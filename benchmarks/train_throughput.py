"""End-to-end training speed: the original study's loop against ``damagenet train``, one run.

Usage: python benchmarks/train_throughput.py [--threads 2] [--epochs 2] [--device cpu]
       [--train16 494 --val16 128] [--train64 256 --val64 64] [--backbone resnet101]
       [--tiles-train 256 --tiles-val 64] [--pixel-only]

All runs start from the same NPZ on disk (random digital numbers, both classes), the same seed
and initial weights, ResNet-101 from random weights and the same number of epochs, and are
timed as the user waits: reading the NPZ, normalising, training, validating and checkpointing.

The study's loop is re-implemented from its description (original_study.md of the shared
reference): its network (``features = nn.Sequential(*list(resnet.children())[:-1])`` applied
to each epoch in turn, the fusion, ``self.head``), divide by 10000, standardise per channel
with train statistics, a ``DataLoader`` over a ``TensorDataset`` (batch 64, shuffled), Adam
1e-4 / 1e-3 with weight decay 1e-4, clipping at 1.5, the loss read with ``.item()`` every
batch, validation at batch 64, and the best model saved with ``torch.save`` after every
improving epoch. It augments offline (before training), so ``damagenet train`` runs with
``augment=False``: same work, same batch order and dropout draws.

The pixel model (``damagenet train --arch siamese-unet``, small encoder) trains on a tile
dataset of the 64 px size (per-pixel targets: a bright disc of damage in damaged tiles, an
ignore ring around it) from the same loop as a user runs it; its rate is printed in tiles, km2
of ground and labelled pixels per second, beside the patch network's on 64 px pairs.

``damagenet train`` runs twice: as a user gets it (``--precision auto``: float32 on a CPU) and
with ``--precision bfloat16``. A third run with the next seed shows how far two curves differ
by chance alone, the noise against which the others' loss curves are compared. Runs follow
each other in one process so a shared machine's load falls on all; the 1-minute load average
is printed with each.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable
from copy import deepcopy
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

from contract.labels import DAMAGE, UNKNOWN
from contract.npz_keys import TILES
from damagenet.models.siamese_resnet import SiameseResNet, build_model, use_plain_batch_norms
from damagenet.training.train import TrainConfig, train

Curve = list[tuple[float, float]]


class StudySiameseCNN(nn.Module):
    """The study's network: its ``features`` run once per epoch, then fusion and head.

    Built from a copy of ours (same initial weights) with plain batch norms: each pass
    normalises one epoch's batch as a whole, as the study's does.
    """

    def __init__(self, ours: SiameseResNet) -> None:
        super().__init__()
        encoder = deepcopy(ours.encoder)
        use_plain_batch_norms(encoder)
        self.features = nn.Sequential(*list(encoder.children())[:-1])  # without fc
        self.head = deepcopy(ours.head)

    def forward(self, xb: torch.Tensor, xa: torch.Tensor) -> torch.Tensor:
        fb, fa = self.features(xb).flatten(1), self.features(xa).flatten(1)
        return self.head(torch.cat([fb, fa, (fb - fa).abs(), fb * fa], dim=1)).squeeze(1)


def write_npz(path: Path, n_train: int, n_val: int, size: int) -> None:
    """Study layout, uint16 digital numbers; damaged pairs are a little brighter after."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", n_train), ("val", n_val)):
        y = (np.arange(n) % 2).astype(np.int64)
        before = rng.integers(500, 3000, (n, 4, size, size), dtype=np.uint16)
        after = (before + rng.integers(0, 400, before.shape) * y[:, None, None, None]).astype(
            np.uint16
        )
        arrays |= {f"Xb_{split}": before, f"Xa_{split}": after, f"y_{split}": y}
    np.savez(path, **arrays)


def write_tile_npz(path: Path, n_train: int, n_val: int, size: int = 64) -> None:
    """A tile dataset: half the tiles hold a bright 5 px disc of damage inside an ignore ring."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    arrays: dict[str, np.ndarray] = {"kind": np.array(TILES)}
    for split, n in (("train", n_train), ("val", n_val)):
        before = rng.integers(500, 3000, (n, 4, size, size), dtype=np.uint16)
        after = before.copy()
        y = np.zeros((n, size, size), dtype=np.uint8)
        for i in range(0, n, 2):
            r, c = rng.integers(8, size - 8, 2)
            dist = np.hypot(yy - r, xx - c)
            y[i][dist <= 5] = UNKNOWN
            y[i][dist <= 3] = DAMAGE
            after[i, :, dist <= 3] += 800
        arrays |= {f"Xb_{split}": before, f"Xa_{split}": after, f"y_{split}": y}
    np.savez(path, **arrays)


def pixel_rates(
    npz: Path, out: Path, cfg: TrainConfig, tiles: int, size: int
) -> tuple[float, Curve, float]:
    """The pixel model's training run, timed as ``damagenet train --arch siamese-unet``."""
    run = timed(damagenet_run, npz, out, replace(cfg, arch="siamese-unet", batch_size=16))
    t = run[0]
    labelled = int((np.load(npz)["y_train"] != UNKNOWN).sum()) * cfg.epochs
    print(
        f"\n{size} x {size} px tiles, pixel model (siamese-unet, small encoder, batch 16): "
        f"{tiles} tiles in {t:.1f} s = {tiles / t:.2f} tiles/s = "
        f"{tiles * size * size * 1e-4 / t:.3f} km2/s of ground, {labelled / t:,.0f} labelled "
        f"px/s (load {run[2]:.1f})"
    )
    print("  train / val loss per epoch: " + "   ".join(f"{a:.5f} / {b:.5f}" for a, b in run[1]))
    return run


def study_loop(npz: Path, ckpt: Path, cfg: TrainConfig) -> Curve:
    """The study's training as described; returns (train loss, val loss) per epoch."""
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    d = np.load(npz)
    xb_tr, xa_tr = d["Xb_train"] / 10000.0, d["Xa_train"] / 10000.0
    both = np.concatenate([xb_tr, xa_tr])
    mean, std = both.mean(axis=(0, 2, 3), keepdims=True), both.std(axis=(0, 2, 3), keepdims=True)

    def tensors(split: str) -> TensorDataset:
        xb = (d[f"Xb_{split}"] / 10000.0 - mean) / std
        xa = (d[f"Xa_{split}"] / 10000.0 - mean) / std
        return TensorDataset(
            torch.tensor(xb, dtype=torch.float32),
            torch.tensor(xa, dtype=torch.float32),
            torch.tensor(d[f"y_{split}"], dtype=torch.float32),
        )

    train_ds, val_ds = tensors("train"), tensors("val")
    # the sampler draws torch.randperm from the seeded generator, as damagenet train does
    train_dl = DataLoader(
        train_ds,
        batch_size=cfg.batch_size,
        generator=torch.Generator(),
        sampler=RandomSampler(train_ds, generator=torch.Generator().manual_seed(cfg.seed)),
    )
    val_dl = DataLoader(val_ds, batch_size=64)
    # damagenet's constructor under the same seed: both sides start from the same weights
    model = StudySiameseCNN(build_model(cfg.backbone, "none", cfg.head)).to(device)
    opt = torch.optim.Adam(
        [
            {"params": model.features.parameters(), "lr": cfg.lr_backbone},
            {"params": model.head.parameters(), "lr": cfg.lr_head},
        ],
        weight_decay=cfg.weight_decay,
    )
    loss_fn, best, curve = nn.BCEWithLogitsLoss(), float("inf"), []
    for _ in range(cfg.epochs):
        model.train()
        total = 0.0
        for xb, xa, y in train_dl:
            xb, xa, y = xb.to(device), xa.to(device), y.to(device)
            opt.zero_grad()
            loss = loss_fn(model(xb, xa), y)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
            opt.step()
            total += loss.item() * len(y)
        model.eval()
        val = 0.0
        with torch.no_grad():
            for xb, xa, y in val_dl:
                val += loss_fn(model(xb.to(device), xa.to(device)), y.to(device)).item() * len(y)
        val /= len(val_ds)
        curve.append((total / len(train_ds), val))
        if val < best:
            best = val
            torch.save(model.state_dict(), ckpt)
    return curve


def damagenet_run(npz: Path, out: Path, cfg: TrainConfig) -> Curve:
    train(npz, out, out / "model.pt", cfg, run_evaluation=False)
    rows = (out / "train_log.csv").read_text().splitlines()[1:]
    return [(float(r.split(",")[1]), float(r.split(",")[3])) for r in rows]


def timed(fn: Callable[..., Curve], *args) -> tuple[float, Curve, float]:
    t = time.perf_counter()
    curve = fn(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t, curve, os.getloadavg()[0]


def report(
    size: int, n_tr: int, n_val: int, pairs: int, runs: dict[str, tuple[float, Curve, float]]
) -> None:
    print(f"\n{size} x {size} px, {n_tr} train + {n_val} val pairs ({pairs} training pairs seen):")
    t_study = runs["study loop"][0]
    for name, (t, _, load) in runs.items():
        print(
            f"  {name:34s} {t:7.1f} s  {pairs / t:7.2f} pairs/s  x{t_study / t:.2f}  "
            f"(load {load:.1f})"
        )
    print("  train / val loss per epoch:")
    for name, (_, curve, _) in runs.items():
        print(f"  {name:34s} " + "   ".join(f"{tr:.5f} / {va:.5f}" for tr, va in curve))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (2)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (2)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cpu)")
    parser.add_argument("--train16", type=int, default=494, help="16 px train pairs (494)")
    parser.add_argument("--val16", type=int, default=128, help="16 px val pairs (128)")
    parser.add_argument("--train64", type=int, default=256, help="64 px train pairs (256)")
    parser.add_argument("--val64", type=int, default=64, help="64 px val pairs (64)")
    parser.add_argument("--backbone", default="resnet101", help="ResNet depth (resnet101)")
    parser.add_argument("--tiles-train", type=int, default=256, help="64 px train tiles (256)")
    parser.add_argument("--tiles-val", type=int, default=64, help="64 px val tiles (64)")
    parser.add_argument(
        "--pixel-only", action="store_true", help="time the pixel model only (no patch runs)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = TrainConfig(
        epochs=args.epochs,
        patience=args.epochs,
        backbone=args.backbone,
        device=args.device,
        augment=False,
        progress=False,
    )
    where = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else f"{platform.machine()}, {os.cpu_count()} cores, {args.threads} torch threads"
    )
    print(
        f"machine: {where}; torch {torch.__version__}; {args.backbone} from random weights, "
        f"{args.epochs} epochs, batch {cfg.batch_size}"
    )
    variants = {
        "damagenet train": cfg,
        "damagenet train --precision bfloat16": replace(cfg, precision="bfloat16"),
        "damagenet train, next seed (noise)": replace(cfg, seed=cfg.seed + 1),
    }
    with tempfile.TemporaryDirectory() as tmp:
        tiles = Path(tmp) / "tiles64.npz"
        write_tile_npz(tiles, args.tiles_train, args.tiles_val)
        pixel_rates(tiles, Path(tmp) / "pixel", cfg, args.tiles_train * args.epochs, 64)
        if args.pixel_only:
            return
        for size, n_tr, n_val in ((16, args.train16, args.val16), (64, args.train64, args.val64)):
            npz = Path(tmp) / f"d{size}.npz"
            write_npz(npz, n_tr, n_val, size)
            runs = {"study loop": timed(study_loop, npz, Path(tmp) / "study.pt", cfg)}
            for i, (name, variant) in enumerate(variants.items()):
                runs[name] = timed(damagenet_run, npz, Path(tmp) / f"out{size}_{i}", variant)
            report(size, n_tr, n_val, n_tr * args.epochs, runs)


if __name__ == "__main__":
    main()
