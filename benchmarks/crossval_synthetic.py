"""Leave-town-out cross-validation on the realistic synthetic bed, on CPU.

Builds one synthetic town per catalogue AOI (``pipeline synthetic --mode realistic``, capped to
``--km`` km), harmonises its scenes (``pipeline scene --source synthetic``), rasterises its
UNOSAT-style sites, cuts 16 x 16 patches, writes a dataset NPZ, then runs ``damagenet crossval``
with one fold per town. Prints each model's ROC-AUC with its bootstrap 95% interval per town and
pooled, and the wall time. ``--upsample F`` repeats the run with every patch enlarged F times
(nearest), the cheap test of whether 16 px through ResNet's stride-4 stem starves the network.

    python benchmarks/crossval_synthetic.py                 # resnet18, 6 towns, ~15 min
    python benchmarks/crossval_synthetic.py --upsample 4    # the same pairs at 64 x 64

``--src`` names a checkout whose ``pipeline`` has the realistic generator (default: this one).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TOWNS = ("bucha", "irpin", "hostomel", "chernihiv", "kharkiv", "mykolaiv")


def pipeline(src: Path, *args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "pipeline", "-q", *args], cwd=src, env=env, check=True)


def build_town(src: Path, slug: str, seed: int, km: float, out: Path) -> Path:
    """Scenes, labels and patches of one synthetic town (cached)."""
    d = out / slug
    patches = d / "patches.npz"
    if patches.exists():
        return patches
    aoi = str(src / "aois" / f"{slug}.geojson")
    pipeline(
        src,
        "synthetic",
        aoi,
        "--out",
        str(d / "syn"),
        "--seed",
        str(seed),
        "--max-size-km",
        str(km),
        "--mode",
        "realistic",
    )
    for epoch in ("before", "after"):
        pipeline(
            src,
            "scene",
            aoi,
            "--epoch",
            epoch,
            "--out",
            str(d / f"{epoch}.tif"),
            "--source",
            "synthetic",
            "--input",
            str(d / "syn"),
            "--max-size-km",
            str(km),
            "--seed",
            str(seed),
        )
    pipeline(
        src,
        "labels",
        aoi,
        "--grid",
        str(d / "after.tif"),
        "--unosat",
        str(d / "syn" / "unosat.zip"),
        "--out",
        str(d / "labels.tif"),
    )
    pipeline(
        src,
        "patches",
        aoi,
        "--before",
        str(d / "before.tif"),
        "--after",
        str(d / "after.tif"),
        "--labels",
        str(d / "labels.tif"),
        "--out",
        str(patches),
        "--size",
        "16",
        "--stride",
        "16",
    )
    return patches


def upsampled(npz: Path, factor: int) -> Path:
    """The dataset with every patch enlarged ``factor`` times (nearest neighbour)."""
    out = npz.with_name(f"{npz.stem}_x{factor}.npz")
    if out.exists():
        return out
    with np.load(npz) as d:
        arrays = {
            k: (
                d[k].repeat(factor, axis=2).repeat(factor, axis=3)
                if k.startswith(("Xb_", "Xa_"))
                else d[k]
            )
            for k in d.files
        }
    np.savez(out, **arrays)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--src",
        type=Path,
        default=ROOT,
        help="checkout whose pipeline has the realistic generator (%(default)s)",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=ROOT / "benchmarks" / "out" / "crossval",
        help="work folder (%(default)s)",
    )
    ap.add_argument("--towns", nargs="+", default=list(TOWNS), help="catalogue AOI slugs")
    ap.add_argument("--km", type=float, default=5.0, help="town size cap in km (%(default)s)")
    ap.add_argument("--backbone", default="resnet18", help="network backbone (%(default)s)")
    ap.add_argument("--epochs", type=int, default=8, help="max epochs per fold (%(default)s)")
    ap.add_argument("--patience", type=int, default=3, help="early stopping (%(default)s)")
    ap.add_argument(
        "--upsample",
        type=int,
        default=1,
        help="enlarge patches this many times before training (%(default)s)",
    )
    ap.add_argument("--batch-size", type=int, default=128, help="pairs per batch (%(default)s)")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads; 1 is fastest on a loaded 2-core machine (%(default)s)",
    )
    ap.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch

    from damagenet.evaluation.crossval import crossval
    from damagenet.training.train import TrainConfig

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    files = [
        str(build_town(args.src, s, i + 1, args.km, args.out / "towns"))
        for i, s in enumerate(args.towns)
    ]
    npz = args.out / "dataset.npz"
    if not npz.exists():
        pipeline(args.src, "dataset", *files, "--out", str(npz), "--split", "blocks")
    t_data = time.perf_counter() - t0
    if args.upsample > 1:
        npz = upsampled(npz, args.upsample)
    cfg = TrainConfig(
        epochs=args.epochs,
        patience=args.patience,
        backbone=args.backbone,
        batch_size=args.batch_size,
        device="cpu",
        progress=False,
    )
    run = args.out / f"{args.backbone}_x{args.upsample}"
    t1 = time.perf_counter()
    report = crossval(npz, run, k=len(args.towns), cfg=cfg, n_boot=args.n_boot)
    t_cv = time.perf_counter() - t1
    print((run / "crossval.md").read_text())
    print(
        f"backbone {args.backbone} from scratch, <= {args.epochs} epochs (patience "
        f"{args.patience}, batch {args.batch_size}, {args.threads} thread), "
        f"patches {16 * args.upsample} px, {len(args.towns)} towns, {report['k']} folds"
    )
    print(
        f"wall time: data {t_data:.0f} s (cached when 0), cross-validation {t_cv:.0f} s, "
        f"total {time.perf_counter() - t0:.0f} s (2-core shared CPU)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
