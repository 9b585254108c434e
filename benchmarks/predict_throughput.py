"""Damage-map throughput and memory.

Usage: python benchmarks/predict_throughput.py [--size 800] [--backbone resnet101]
       [--memory-size 10000] [--memory-backbone resnet18] [--device auto] [--compile on|off]
       [--pixel-encoder small] [--pixel-memory-mb 256]

Prints, in one run on a synthetic scene pair: km2 per second of ``predict_map`` at stride 16
and at stride 8; the same for the pixel model (a Siamese U-Net checkpoint, ``--pixel-encoder``)
over overlapping tiles, end to end on the same pair, with its speed-up over the patch model at
stride 8 and the largest difference between its map in two tilings; the scoring rate on the
stride-16 map's windows of the model as prediction ran it before issue 19 (eager, default
memory layout, no_grad) beside the optimised form it runs now (inference mode, batch norms
folded, and compiled), interleaved, with the largest probability difference; and the peak
resident memory of a fresh process predicting a ``--memory-size`` square pair at stride 16.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT, baseline_rss, big_pair, run_child  # noqa: E402

from contract.windows import (  # noqa: E402
    gather_windows,
    nodata_pixels,
    window_any,
    window_positions,
)
from damagenet.data.pairs import Normalisation  # noqa: E402
from damagenet.inference.scoring import (  # noqa: E402
    PairScorer,
    optimise_for_inference,
    resolve_device,
)
from damagenet.maps.predict import PredictOptions, predict_map  # noqa: E402
from damagenet.models.checkpoint import load_checkpoint, norm_of, save_checkpoint  # noqa: E402
from damagenet.models.siamese_resnet import SiameseResNet  # noqa: E402
from damagenet.models.unet import SiameseUNet  # noqa: E402

BATCH = 256
ROUNDS = 3

CHILD = """
import json
from damagenet.maps.predict import PredictOptions, predict_map
s = predict_map({before!r}, {after!r}, {ckpt!r}, {out!r},
                PredictOptions(stride=16, device={device!r}, progress=False))
print(json.dumps({{"seconds": s["seconds"], "scored": s["windows_scored"]}}))
"""


def make_checkpoint(backbone: str) -> Path:
    """Random weights with batch-norm statistics far from the identity and a head scaled so
    that probabilities spread over (0, 1): saturated ones would hide any difference."""
    path = OUT / f"bench_{backbone}_bn.pt"
    if not path.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        model = SiameseResNet(backbone).eval()
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
            model.head[-1].weight.mul_(0.01)
        save_checkpoint(
            path,
            model,
            patch_size=16,
            norm=Normalisation([0.15] * 4, [0.08] * 4),
            threshold={"value": 0.5, "rule": "fixed"},
            history=[],
            dataset={"sha256": "benchmark"},
        )
    return path


def make_pixel_checkpoint(encoder: str) -> Path:
    """A Siamese U-Net with random weights and batch-norm statistics away from the identity."""
    path = OUT / f"bench_unet_{encoder}.pt"
    if not path.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        model = SiameseUNet(encoder).eval()
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
        save_checkpoint(
            path,
            model,
            patch_size=64,
            norm=Normalisation([0.15] * 4, [0.08] * 4),
            threshold={"value": 0.5, "rule": "fixed"},
            history=[],
            dataset={"sha256": "benchmark"},
        )
    return path


def pixel_maps(
    pair: dict[str, Path], encoder: str, device: str, memory_mb: float, patch_seconds: float
) -> None:
    """The pixel model's whole map, end to end, against the patch model's at stride 8; and its
    map in the tiles of ``memory_mb`` against one scored in tiles of half of it."""
    ckpt = make_pixel_checkpoint(encoder)
    with rasterio.open(pair["before"]) as src:
        km2 = src.width * src.height * 1e-4  # 10 m pixels
    probs = {}
    for mb in (memory_mb, memory_mb / 2):
        out = OUT / f"pred_pixel_{mb:g}" / "bench_damage_prob.tif"
        s = predict_map(
            pair["before"],
            pair["after"],
            ckpt,
            out,
            PredictOptions(device=device, progress=False, memory_mb=mb),
        )
        tiles = s["model"]["tiles"]
        with rasterio.open(out) as src:
            probs[mb] = src.read(1)
        print(
            f"pixel model (siamese-unet, {encoder} encoder), --memory-mb {mb:g}: "
            f"{tiles['tiles']} tiles of {tiles['tile_core']} px + {tiles['tile_halo']} px "
            f"context in {s['seconds']:.1f} s = {km2 / s['seconds']:.3f} km2/s, "
            f"x{patch_seconds / s['seconds']:.1f} the patch model at stride 8"
        )
    a, b = probs.values()
    valid = a != -9999
    print(f"  max |one tiling - another| over the map: {np.abs(a[valid] - b[valid]).max():.1e}")


def map_windows(pair: dict[str, Path], stride: int) -> tuple[np.ndarray, np.ndarray]:
    """The valid windows (raw DNs) that ``predict_map`` scores on this pair at ``stride``."""
    with rasterio.open(pair["before"]) as b, rasterio.open(pair["after"]) as a:
        before, after = b.read(), a.read()
    rows = window_positions(before.shape[1], 16, stride, flush=True)
    cols = window_positions(before.shape[2], 16, stride, flush=True)
    ri, ci = np.nonzero(~window_any(nodata_pixels(before, after), rows, cols, 16))
    return (
        gather_windows(before, rows[ri], cols[ci], 16),
        gather_windows(after, rows[ri], cols[ci], 16),
    )


def eager_default(
    model: torch.nn.Module,
    norm: Normalisation,
    device: torch.device,
    before: np.ndarray,
    after: np.ndarray,
) -> np.ndarray:
    """Scoring as ``damagenet predict`` did before issue 19: eager, default layout, no_grad."""
    out = []
    with torch.no_grad():
        for i in range(0, len(before), BATCH):
            b = norm.apply(before[i : i + BATCH]).to(device)
            a = norm.apply(after[i : i + BATCH]).to(device)
            with torch.autocast(
                device_type=device.type, dtype=torch.float16, enabled=device.type == "cuda"
            ):
                out.append(torch.sigmoid(model(b, a).float()).cpu().numpy())
    return np.concatenate(out).astype(np.float64)


def compare_scorers(
    model: torch.nn.Module,
    norm: Normalisation,
    device: torch.device,
    windows: tuple[np.ndarray, np.ndarray],
    compile: bool,
) -> dict[str, tuple[float, float]]:
    """Windows/s and largest probability difference from the old scoring, per variant.

    Variants run interleaved, best of :data:`ROUNDS` each, on the same windows.
    """
    model = model.to(device).eval()
    example = (torch.zeros(2, 4, 16, 16), torch.zeros(2, 4, 16, 16))
    variants = {
        "before: eager, default layout, no_grad": lambda b, a: eager_default(
            model, norm, device, b, a
        ),
        "now: inference mode, batch norms folded, centre taps": PairScorer(
            optimise_for_inference(model, device), norm, device, BATCH
        ),
    }
    if compile:
        t = time.perf_counter()
        variants["now, compiled (--compile on)"] = PairScorer(
            optimise_for_inference(model, device, True, example, BATCH), norm, device, BATCH
        )
        print(f"  compiling took {time.perf_counter() - t:.0f} s")
    small = (windows[0][:BATCH], windows[1][:BATCH])
    for score in variants.values():  # warm-up: allocator, oneDNN primitives
        score(*small)
    best = dict.fromkeys(variants, float("inf"))
    probs = {}
    for _ in range(ROUNDS):
        for name, score in variants.items():
            t = time.perf_counter()
            probs[name] = score(*windows)
            best[name] = min(best[name], time.perf_counter() - t)
    ref = probs[next(iter(variants))]
    print(
        f"  probabilities of the old scoring: 5th-95th percentile "
        f"{np.percentile(ref, 5):.3f}-{np.percentile(ref, 95):.3f}"
    )
    return {
        name: (len(ref) / best[name], float(np.abs(probs[name] - ref).max())) for name in variants
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=800, help="throughput scene side, px")
    parser.add_argument("--backbone", default="resnet101")
    parser.add_argument(
        "--memory-size",
        type=int,
        default=10000,
        help="scene side for the peak-memory run (0 to skip)",
    )
    parser.add_argument(
        "--memory-backbone",
        default="resnet18",
        help="backbone for the peak-memory run (resnet101 takes ~15 min on a 2-core CPU)",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--pixel-encoder", default="small", help="U-Net encoder (small)")
    parser.add_argument(
        "--pixel-memory-mb", type=float, default=256.0, help="pixel model's tile budget (256)"
    )
    parser.add_argument(
        "--compile",
        default="on",
        choices=("on", "off"),
        help="also measure the compiled model (compiling takes minutes)",
    )
    args = parser.parse_args()
    device = resolve_device(args.device)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else (f"{platform.machine()} CPU, {torch.get_num_threads()} threads")
    )
    print(f"device: {name}; torch {torch.__version__}; backbone {args.backbone}")
    pair = big_pair(args.size)
    ckpt = make_checkpoint(args.backbone)
    km2 = args.size * args.size * 100 / 1e6
    results = {}
    for stride in (16, 8):
        out = OUT / f"pred_{stride}" / "bench_damage_prob.tif"
        s = predict_map(
            pair["before"],
            pair["after"],
            ckpt,
            out,
            PredictOptions(stride=stride, device=args.device, progress=False),
        )
        results[stride] = s
        print(
            f"stride {stride:2d}: {s['windows_scored']} windows in {s['seconds']:.1f} s = "
            f"{km2 / s['seconds']:.3f} km2/s ({s['windows_scored'] / s['seconds']:.0f} "
            "windows/s)"
        )
    pixel_maps(pair, args.pixel_encoder, args.device, args.pixel_memory_mb, results[8]["seconds"])
    windows = map_windows(pair, 16)
    model, payload = load_checkpoint(ckpt, map_location=device)
    print(
        f"scoring the {len(windows[0])} windows of the stride-16 map (batch {BATCH}, "
        f"best of {ROUNDS}, interleaved):"
    )
    rates = compare_scorers(model, norm_of(payload), device, windows, args.compile != "off")
    old = next(iter(rates.values()))[0]
    for name, (rate, diff) in rates.items():
        print(
            f"  {name}: {rate:.0f} windows/s = {rate / old:.2f}x; max |probability "
            f"difference| {diff:.1e}"
        )
    if args.memory_size:
        big = big_pair(args.memory_size)
        mckpt = make_checkpoint(args.memory_backbone)
        code = CHILD.format(
            before=str(big["before"]),
            after=str(big["after"]),
            ckpt=str(mckpt),
            out=str(OUT / "pred_big" / "big_damage_prob.tif"),
            device=args.device,
        )
        (r,), peak = run_child(code)
        floor = baseline_rss("damagenet.maps.predict")
        print(
            f"{args.memory_size} x {args.memory_size} px pair, stride 16, "
            f"{args.memory_backbone}: {r['scored']} windows in {r['seconds']:.0f} s; peak "
            f"RSS {peak:.0f} MiB (importing damagenet alone: {floor:.0f} MiB)"
        )


if __name__ == "__main__":
    main()
