"""Damage-map throughput and memory.

Usage: python benchmarks/predict_throughput.py [--size 800] [--backbone resnet101]
       [--memory-size 10000] [--memory-backbone resnet18] [--device auto]

Prints, in one run on a synthetic scene pair: km2 per second of ``predict_map`` at stride 16
and at stride 8, the bare model forward rate on the same number of patches already in memory,
and the ratio at stride 16; then the peak resident memory of a fresh process predicting a
``--memory-size`` square pair at stride 16.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT, baseline_rss, big_pair, run_child  # noqa: E402

from damagenet.checkpoint import load_checkpoint, norm_of, save_checkpoint  # noqa: E402
from damagenet.data import Normalisation  # noqa: E402
from damagenet.inference import resolve_device  # noqa: E402
from damagenet.model import SiameseResNet  # noqa: E402
from damagenet.predict import ModelScorer, PredictOptions, predict_map  # noqa: E402

CHILD = """
import json
from damagenet.predict import PredictOptions, predict_map
s = predict_map({before!r}, {after!r}, {ckpt!r}, {out!r},
                PredictOptions(stride=16, device={device!r}, progress=False))
print(json.dumps({{"seconds": s["seconds"], "scored": s["windows_scored"]}}))
"""


def make_checkpoint(backbone: str) -> Path:
    path = OUT / f"bench_{backbone}.pt"
    if not path.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        save_checkpoint(path, SiameseResNet(backbone).eval(), patch_size=16,
                        norm=Normalisation([0.15] * 4, [0.08] * 4),
                        threshold={"value": 0.5, "rule": "fixed"}, history=[],
                        dataset={"sha256": "benchmark"})
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=800, help="throughput scene side, px")
    parser.add_argument("--backbone", default="resnet101")
    parser.add_argument("--memory-size", type=int, default=10000,
                        help="scene side for the peak-memory run (0 to skip)")
    parser.add_argument("--memory-backbone", default="resnet18",
                        help="backbone for the peak-memory run (resnet101 takes ~15 min on "
                             "a 2-core CPU)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"{platform.machine()} CPU, {torch.get_num_threads()} threads")
    print(f"device: {name}; torch {torch.__version__}; backbone {args.backbone}")
    pair = big_pair(args.size)
    ckpt = make_checkpoint(args.backbone)
    km2 = args.size * args.size * 100 / 1e6
    results = {}
    for stride in (16, 8):
        out = OUT / f"pred_{stride}" / "bench_damage_prob.tif"
        s = predict_map(pair["before"], pair["after"], ckpt, out,
                        PredictOptions(stride=stride, device=args.device, progress=False))
        results[stride] = s
        print(f"stride {stride:2d}: {s['windows_scored']} windows in {s['seconds']:.1f} s = "
              f"{km2 / s['seconds']:.3f} km2/s ({s['windows_scored'] / s['seconds']:.0f} "
              "windows/s)")
    # bare forward on the same number of patches, already normalised in memory
    n = results[16]["windows_scored"]
    model, payload = load_checkpoint(ckpt, map_location=device)
    scorer = ModelScorer(model, norm_of(payload), device, 256, False)
    rng = np.random.default_rng(0)
    xb = rng.integers(1, 4000, (n, 4, 16, 16), dtype=np.uint16)
    xa = rng.integers(1, 4000, (n, 4, 16, 16), dtype=np.uint16)
    tb, ta = scorer.norm.apply(xb).to(device), scorer.norm.apply(xa).to(device)
    with torch.no_grad():
        scorer.model(tb[:256], ta[:256])
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for i in range(0, n, 256):
            with torch.autocast(device_type=device.type, dtype=torch.float16,
                                enabled=device.type == "cuda"):
                torch.sigmoid(scorer.model(tb[i:i + 256], ta[i:i + 256]).float())
        if device.type == "cuda":
            torch.cuda.synchronize()
        bare = n / (time.perf_counter() - t)
    real = n / results[16]["seconds"]
    print(f"bare model forward: {bare:.0f} patches/s on {n} patches in memory")
    print(f"predict at stride 16 / bare: {real / bare:.1%}")
    if args.memory_size:
        big = big_pair(args.memory_size)
        mckpt = make_checkpoint(args.memory_backbone)
        code = CHILD.format(before=str(big["before"]), after=str(big["after"]),
                            ckpt=str(mckpt), out=str(OUT / "pred_big" / "big_damage_prob.tif"),
                            device=args.device)
        (r,), peak = run_child(code)
        floor = baseline_rss("damagenet.predict")
        print(f"{args.memory_size} x {args.memory_size} px pair, stride 16, "
              f"{args.memory_backbone}: {r['scored']} windows in {r['seconds']:.0f} s; peak "
              f"RSS {peak:.0f} MiB (importing damagenet alone: {floor:.0f} MiB)")


if __name__ == "__main__":
    main()
