"""Leave-town-out cross-validation on the realistic synthetic bed, every model, on CPU.

One run, the same towns and the same folds (``damagenet crossval``, seed 0) for two datasets:

1. **Patch dataset** (as before): 16 x 16 px non-overlapping patches, ``pipeline dataset
   --split blocks`` defaults (balanced, hard negatives), every split pooled. ``damagenet
   crossval`` trains the Siamese patch network (ResNet-18 from scratch, the study's recipe) and
   scores it beside the change detector and the trees per pair.
2. **Tile dataset** of the same towns: 64 x 64 px tiles with per-pixel targets from the
   UNOSAT-style points (``pipeline targets``: 1 px disc of damage around destroyed and severely
   damaged sites, 3 px ignore ring around every site), plus the temporal negatives the bed
   renders (``pipeline synthetic --prewar``: the same town half a year before the before scene,
   tiled with ``pipeline tiles --all-negative``). ``damagenet crossval --with-patch-model``
   trains the pixel model (Siamese U-Net, small encoder from scratch, fusion by difference,
   width 16, lr 1e-3) and, on the training tiles' 16 px cells, the patch network (ResNet-18,
   the study's learning rates), and scores both beside the change detector and the trees per
   pixel at pixel, patch and point level (``docs/evaluation.md``).

Per town a synthetic scene set (``pipeline synthetic --mode realistic --prewar``, seeds 1, 2,
..., capped to ``--km``) is harmonised (``pipeline scene --source synthetic``), rasterised
(``pipeline labels`` for patches, ``pipeline targets`` for tiles) and cut; everything is cached
under ``--out/towns``. ``--prewar`` draws from a generator of its own, so the war pair is the
one a run without it renders.

The default run (:data:`DEFAULTS`): the six towns of :data:`TOWNS` at 3.2 km (5 x 5 tiles
of 64 px each); patch network at most 8 epochs, batch 128; pixel model at most 20 epochs,
batch 16; the patch model beside it at most 8 epochs, batch 128 (its own schedule in
``crossval``, ``--patch-epochs`` and ``--patch-batch-size``); patience 3; 1 torch thread; 1000
resamples. About 40 minutes on the shared 2-core CPU.

Intervals (95 %, percentile bootstrap): pooled figures resample whole towns, a town's own
figures its 640 m ground blocks; every comparison carries a paired interval on the difference.
Prints both ``crossval.md`` tables (per town and pooled, per level), the paired differences per
town with verdicts, wall time, CPU time and machine load, and writes
``--out/crossval_synthetic.json`` (settings, times, load, both runs' folds, epochs run and
levels as ``crossval.json`` has them).

    python benchmarks/crossval_synthetic.py             # the default run, ~40 min
    python benchmarks/crossval_synthetic.py --quick     # 3 towns of 2.5 km, 1 epoch: ~3 min
    python benchmarks/crossval_synthetic.py --km 5 --skip-tiles   # the earlier patch-only run
    python benchmarks/crossval_synthetic.py --upsample 4    # patch pairs enlarged 4x (nearest)

``--src`` names a checkout whose ``pipeline`` has the realistic generator (default: this one).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TOWNS = ("bucha", "irpin", "hostomel", "chernihiv", "kharkiv", "mykolaiv")
#: the default run: 6 towns of 3.2 km (5 x 5 tiles of 64 px each), about 40 min on 2 loaded cores
DEFAULTS: dict[str, Any] = {
    "towns": list(TOWNS),
    "km": 3.2,
    "epochs": 8,
    "batch_size": 128,
    "pixel_epochs": 20,
    "pixel_batch": 16,
    "beside_epochs": 8,
    "beside_batch": 128,
    "patience": 3,
    "n_boot": 1000,
}
#: ``--quick``: three small towns and one epoch, for a smoke run in minutes
QUICK: dict[str, Any] = {
    "towns": ["bucha", "irpin", "hostomel"],
    "km": 2.5,
    "epochs": 1,
    "pixel_epochs": 1,
    "beside_epochs": 1,
    "patience": 1,
    "n_boot": 200,
}
TILE = 64
#: land cover code of a building in the synthetic truth raster (docs/synthetic-data.md)
BUILDING = 5


def pipeline(src: Path, *args: str) -> None:
    """One ``pipeline`` command in a child process (single-threaded, quiet)."""
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "pipeline", "-q", *args], cwd=src, env=env, check=True)


def town_scenes(src: Path, slug: str, seed: int, km: float, d: Path, prewar: bool) -> str:
    """Synthetic town (with its pre-war date when ``prewar``), harmonised before/after scenes
    (cached).

    ``--prewar`` draws from a generator of its own, so every other file is the one a run
    without it writes: the patch dataset is the same either way."""
    aoi = str(src / "aois" / f"{slug}.geojson")
    syn = d / "syn"
    if not (syn / ("prewar.tif" if prewar else "before.tif")).exists():
        pipeline(
            *(src, "synthetic", aoi, "--out", str(syn), "--seed", str(seed)),
            *("--max-size-km", str(km), "--mode", "realistic", *(["--prewar"] * prewar)),
        )
    for epoch in ("before", "after"):
        if not (d / f"{epoch}.tif").exists():
            pipeline(
                *(src, "scene", aoi, "--epoch", epoch, "--out", str(d / f"{epoch}.tif")),
                *("--source", "synthetic", "--input", str(syn), "--max-size-km", str(km)),
                *("--seed", str(seed)),
            )
    return aoi


def town_patches(src: Path, aoi: str, d: Path) -> Path:
    """Label raster and 16 px patches at stride 16 (cached)."""
    patches = d / "patches.npz"
    if not patches.exists():
        if not (d / "labels.tif").exists():
            pipeline(
                *(src, "labels", aoi, "--grid", str(d / "after.tif")),
                *("--unosat", str(d / "syn" / "unosat.zip"), "--out", str(d / "labels.tif")),
            )
        pipeline(
            *(src, "patches", aoi, "--before", str(d / "before.tif")),
            *("--after", str(d / "after.tif"), "--labels", str(d / "labels.tif")),
            *("--out", str(patches), "--size", "16", "--stride", "16"),
        )
    return patches


def town_tiles(src: Path, aoi: str, d: Path) -> list[Path]:
    """Per-pixel targets, the war tiles and the pre-war (temporal negative) tiles (cached)."""
    war, prewar = d / f"tiles{TILE}.npz", d / f"prewar_tiles{TILE}.npz"
    if not (d / "targets.tif").exists():
        pipeline(
            *(src, "targets", aoi, "--grid", str(d / "after.tif")),
            *("--unosat", str(d / "syn" / "unosat.zip"), "--out", str(d / "targets.tif")),
        )
    if not war.exists():
        pipeline(
            *(
                src,
                "tiles",
                aoi,
                "--before",
                str(d / "before.tif"),
                "--after",
                str(d / "after.tif"),
            ),
            *("--targets", str(d / "targets.tif"), "--out", str(war), "--size", str(TILE)),
        )
    if not prewar.exists():  # (pre-war date, before): two dates before the war, all negative
        pipeline(
            *(src, "tiles", aoi, "--before", str(d / "syn" / "prewar.tif")),
            *("--after", str(d / "before.tif"), "--all-negative", "--out", str(prewar)),
            *("--size", str(TILE)),
        )
    return [war, prewar]


def build_towns(args: argparse.Namespace) -> tuple[Path, Path | None]:
    """Every town's files, then the patch dataset and (unless ``--skip-tiles``) the tile
    dataset over all towns."""
    patch_files, tile_files = [], []
    for i, slug in enumerate(args.towns):
        d = args.out / "towns" / slug
        print(f"town {slug} (seed {i + 1}, {args.km:g} km) ...", flush=True)
        aoi = town_scenes(args.src, slug, i + 1, args.km, d, not args.skip_tiles)
        patch_files.append(str(town_patches(args.src, aoi, d)))
        if not args.skip_tiles:
            tile_files += [str(p) for p in town_tiles(args.src, aoi, d)]
    patches, tiles = args.out / "patch_dataset.npz", args.out / f"tile_dataset_{TILE}.npz"
    if not patches.exists():
        pipeline(args.src, "dataset", *patch_files, "--out", str(patches), "--split", "blocks")
    if args.skip_tiles:
        return patches, None
    if not tiles.exists():
        pipeline(
            *(args.src, "dataset", *tile_files, "--out", str(tiles)),
            *("--split", "blocks", "--tile-size", str(TILE)),
        )
    return patches, tiles


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


class LoadSampler:
    """The machine's 1-minute load average every ``every`` s while the benchmark runs: the
    figures of a shared 2-core machine mean little without it."""

    def __init__(self, every: float = 15.0) -> None:
        self.samples: list[float] = [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._every = every
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self.samples.append(os.getloadavg()[0])
        s = np.array(self.samples)
        return {
            "mean": float(s.mean()),
            "min": float(s.min()),
            "max": float(s.max()),
            "samples": len(s),
        }


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (user + system)."""
    own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def configs(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """Training settings of the patch crossval, of the tile crossval's pixel model, and the
    schedule of the patch model beside it."""
    from damagenet.evaluation.crossval_kinds import PatchTraining
    from damagenet.training.config import TrainConfig

    common = TrainConfig(
        patience=args.patience,
        backbone=args.backbone,
        device="cpu",
        progress=False,
        threads=args.threads,
    )
    patch = dataclasses.replace(common, epochs=args.epochs, batch_size=args.batch_size)
    pixel = dataclasses.replace(
        common,
        arch="siamese-unet",
        epochs=args.pixel_epochs,
        batch_size=args.pixel_batch,
        lr_backbone=1e-3,
        lr_head=1e-3,
    )
    beside = PatchTraining(args.beside_epochs, args.beside_batch, args.patience)
    return patch, pixel, beside


def run_crossvals(args: argparse.Namespace, patches: Path, tiles: Path | None) -> dict[str, Any]:
    """Both leave-town-out runs through the library's crossval; their reports and times."""
    from damagenet.evaluation.crossval import crossval

    patch_cfg, pixel_cfg, beside = configs(args)
    k = len(args.towns)
    runs: dict[str, Any] = {}
    t = time.perf_counter()
    runs["patches"] = crossval(patches, patch_dir(args), k=k, cfg=patch_cfg, n_boot=args.n_boot)
    runs["patches_s"] = time.perf_counter() - t
    print(f"patch dataset cross-validated in {runs['patches_s']:.0f} s", flush=True)
    if tiles is not None:
        t = time.perf_counter()
        runs["tiles"] = crossval(
            tiles, tile_dir(args), k=k, cfg=pixel_cfg, n_boot=args.n_boot, patch=beside
        )
        runs["tiles_s"] = time.perf_counter() - t
        print(f"tile dataset cross-validated in {runs['tiles_s']:.0f} s", flush=True)
    return runs


def patch_dir(args: argparse.Namespace) -> Path:
    """Where the patch dataset's crossval writes."""
    return args.out / f"patches_{args.backbone}_x{args.upsample}"


def tile_dir(args: argparse.Namespace) -> Path:
    """Where the tile dataset's crossval writes."""
    return args.out / f"tiles{TILE}_unet_{args.backbone}"


def per_town_differences(level: dict[str, Any]) -> list[str]:
    """Markdown: each town's paired ROC-AUC differences (its 640 m blocks resampled)."""
    from damagenet.evaluation.scores import fmt_diff

    per = level.get("per_aoi_paired_differences", {})
    if not per:
        return []
    pairs = list(next(iter(per.values())))
    lines = ["| AOI (test) | " + " | ".join(f"{p} ROC-AUC" for p in pairs) + " |"]
    lines.append("|" + " --- |" * (1 + len(pairs)))
    for aoi, diffs in per.items():
        lines.append(
            f"| {aoi} | " + " | ".join(fmt_diff(diffs[p]["roc_auc"]) for p in pairs) + " |"
        )
    return lines


def verdicts(level: dict[str, Any]) -> list[str]:
    """Plain words per pooled paired ROC-AUC difference: which model is better, or neither."""
    out = []
    for pair, d in level.get("paired_differences", {}).items():
        a, b = pair.split(" - ")
        v, lo, hi = (d["roc_auc"].get(x) for x in ("value", "low", "high"))
        if v is None:
            continue
        if lo is not None and lo > 0:
            word = f"{a} better"
        elif hi is not None and hi < 0:
            word = f"{b} better"
        else:
            word = "no difference shown (interval holds 0)"
        span = "" if lo is None else f" ({lo:+.3f} to {hi:+.3f})"
        out.append(f"- {pair}: ROC-AUC {v:+.3f}{span}: {word}")
    return out


def report_text(name: str, out_dir: Path, report: dict[str, Any]) -> str:
    """crossval.md of one run, the per-town paired differences and the verdicts per level."""
    parts = [f"## {name}", "", (out_dir / "crossval.md").read_text()]
    for level_name, level in report["levels"].items():
        if "skipped" in level:
            continue
        parts += [f"Paired ROC-AUC differences per town, {level_name} level (640 m blocks):", ""]
        parts += per_town_differences(level) + [""]
        parts += [f"Pooled verdicts, {level_name} level (whole towns resampled):"]
        parts += verdicts(level) + [""]
    return "\n".join(parts)


def fold_epochs(out_dir: Path) -> dict[str, list[int]]:
    """Epochs each fold's networks ran (from their training logs' rows)."""
    from damagenet.models.checkpoint import load_checkpoint

    epochs: dict[str, list[int]] = {}
    for name in ("model.pt", "patch_model.pt"):
        for fold in sorted(out_dir.glob("fold*")):
            if (fold / name).exists():
                _, payload = load_checkpoint(fold / name, map_location="cpu")
                epochs.setdefault(name, []).append(len(payload.get("history", [])))
    return epochs


def fold_tests(report: dict[str, Any], npz: Path) -> dict[int, Any]:
    """Each fold's test tiles, rebuilt from the dataset and the folds crossval recorded."""
    from damagenet.evaluation.crossval import Fold, fold_splits, pooled

    pool = pooled(npz)
    return {
        i: fold_splits(pool, Fold(tuple(f["test"]), tuple(f["val"]), tuple(f["train"])))["test"]
        for i, f in enumerate(report["folds"])
    }


def pixel_ground(test: Any, towns: Path) -> np.ndarray:
    """Per pixel-level test unit of a fold, in crossval's order: on a pre-war tile, on a
    building (the synthetic truth's land cover), or on other ground."""
    import rasterio

    from damagenet.evaluation.levels import PixelLevel

    u = PixelLevel().units(test)
    aoi = test.aoi[u.tile].astype(str)
    rows, cols = test.row[u.tile] + u.row, test.col[u.tile] + u.col
    ground = np.full(len(u.y), "other ground")
    for name in np.unique(aoi):
        with rasterio.open(towns / name / "syn" / "truth.tif") as src:
            cover = src.read(1)
        sel = aoi == name
        ground[sel] = np.where(cover[rows[sel], cols[sel]] == BUILDING, "building", "other ground")
    ground[np.asarray(test.prewar)[u.tile].astype(bool)] = "pre-war date"
    return ground


def point_ground(test: Any, towns: Path) -> np.ndarray:
    """Per point-level test unit of a fold, in crossval's order: site or which negative."""
    from damagenet.evaluation.levels import PointLevel

    c = PointLevel().units(test).counts
    kinds = ["site", "pre-war copy", "far from sites"]
    return np.repeat(kinds, [c["sites"], c["prewar_negatives"], c["far_negatives"]])


def by_negative(args: argparse.Namespace, report: dict[str, Any]) -> dict[str, Any]:
    """Per level, each model's ROC-AUC of the damaged units against each kind of negative
    (whole towns resampled): does a model separate damage from buildings and from the same
    place before the war, or only from fields?"""
    from damagenet.evaluation.intervals import grouped_interval
    from damagenet.evaluation.scores import roc_auc

    towns, out_dir = args.out / "towns", tile_dir(args)
    tests, out = fold_tests(report, args.out / f"tile_dataset_{TILE}.npz"), {}
    for level, name, ground_of in (("pixel", "", pixel_ground), ("point", "_point", point_ground)):
        with np.load(out_dir / f"predictions{name}.npz") as d:
            pred = {k: d[k] for k in d.files}
        ground = np.concatenate([ground_of(tests[i], towns) for i in np.unique(pred["fold"])])
        assert len(ground) == len(pred["y"]), "units out of step with crossval's predictions"
        y, groups = pred["y"], np.unique(pred["aoi"], return_inverse=True)[1]
        models = [m for m in pred if m not in ("aoi", "fold", "y")]
        table = {}
        for kind in sorted(set(ground[y == 0].tolist())):
            sel = (y == 1) | ((y == 0) & (ground == kind))
            table[kind] = {"negatives": int(((y == 0) & sel).sum())} | {
                m: grouped_interval(
                    roc_auc, y[sel], pred[m][sel], groups[sel], n_resamples=args.n_boot
                ).as_dict()
                for m in models
            }
        out[level] = table
    return out


def negatives_text(table: dict[str, Any]) -> str:
    """Markdown of :func:`by_negative`."""
    from damagenet.evaluation.scores import fmt_ci

    lines = []
    for level, rows in table.items():
        models = [m for m in next(iter(rows.values())) if m != "negatives"]
        lines += [f"ROC-AUC of the damaged {level}s against one kind of negative at a time:", ""]
        lines += ["| negatives | count | " + " | ".join(models) + " |"]
        lines += ["|" + " --- |" * (2 + len(models))]
        for kind, row in rows.items():
            cells = " | ".join(fmt_ci(row[m]) for m in models)
            lines.append(f"| {kind} | {row['negatives']} | {cells} |")
        lines.append("")
    return "\n".join(lines)


def settings_record(args: argparse.Namespace) -> dict[str, Any]:
    """What was run, for the JSON file."""
    keep = [*DEFAULTS, "backbone", "threads", "upsample", "quick", "skip_tiles"]
    return {k: getattr(args, k) for k in keep} | {"tile_size": TILE, "crossval_seed": 0}


def write_json(args: argparse.Namespace, runs: dict[str, Any], times: dict[str, Any]) -> Path:
    """``crossval_synthetic.json``: settings, times and load, each run's folds and levels."""
    record: dict[str, Any] = {"settings": settings_record(args), "time": times}
    record["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform()}
    for key in ("patches", "tiles"):
        if key in runs:
            rep = runs[key]
            keep = ("dataset", "kind", "k", "arch", "backbone", "epochs", "protocol", "interval")
            record[key] = {k: rep[k] for k in keep}
            record[key]["folds"] = rep["folds"]
            record[key]["levels"] = rep["levels"]
            record[key]["epochs_run"] = fold_epochs(Path(rep["folds"][0]["checkpoint"]).parents[1])
    if "negatives" in runs:
        record["tiles"]["by_negative"] = runs["negatives"]
    path = args.out / "crossval_synthetic.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Options; ``--quick`` sets its small values where an option is not given explicitly."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add = ap.add_argument
    add("--src", type=Path, default=ROOT, help="checkout with the realistic generator (here)")
    add("--out", type=Path, default=ROOT / "benchmarks" / "out" / "crossval", help="work folder")
    add("--towns", nargs="+", help=f"catalogue AOI slugs ({' '.join(TOWNS)})")
    add("--km", type=float, help="town size cap in km; 3.2 holds 5 x 5 tiles of 64 px")
    add("--backbone", default="resnet18", help="patch network backbone (%(default)s)")
    add("--epochs", type=int, help="patch network on the patch dataset: epochs at most (8)")
    add("--batch-size", type=int, help="patch network on the patch dataset: pairs per batch")
    add("--pixel-epochs", type=int, help="pixel model: epochs at most (20)")
    add("--pixel-batch", type=int, help="pixel model: tiles per batch (16)")
    add("--beside-epochs", type=int, help="patch model beside it on the tiles' cells (8)")
    add("--beside-batch", type=int, help="patch model beside it: cells per batch (128)")
    add("--patience", type=int, help="early stopping on validation loss, every network (3)")
    add("--threads", type=int, default=1, help="torch threads; 1 suits a loaded 2-core machine")
    add("--n-boot", type=int, help="bootstrap resamples (1000)")
    add("--upsample", type=int, default=1, help="enlarge patch pairs this many times (1)")
    add("--skip-tiles", action="store_true", help="only the patch dataset (the earlier run)")
    add("--quick", action="store_true", help="3 towns of 2.5 km, 1 epoch, 200 resamples")
    add(
        "--report-only",
        action="store_true",
        help="print and write the figures of the run "
        "already in --out (its settings options must match), training nothing",
    )
    args = ap.parse_args(argv)
    for key, value in (DEFAULTS | (QUICK if args.quick else {})).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def summary_line(args: argparse.Namespace, times: dict[str, Any]) -> str:
    """Settings, wall and CPU time, machine load, in words."""
    line = f"settings: {json.dumps(settings_record(args))}"
    if not times:
        return line
    load, total = times["load_1min"], times["total_s"]
    return line + (
        f"\nwall time: data {times['data_s']:.0f} s (cached when ~0), crossval patches "
        f"{times['crossval_patches_s']:.0f} s, tiles {times['crossval_tiles_s'] or 0:.0f} s, "
        f"total {total:.0f} s; CPU time {times['cpu_s']:.0f} s ({times['cpu_s'] / total:.2f} "
        f"cores on average); 1-min load average mean {load['mean']:.1f} (min {load['min']:.1f}, "
        f"max {load['max']:.1f}) on {os.cpu_count()} cores"
    )


def run_all(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """Towns, datasets and both cross-validations; their reports, times and the load."""
    load, t0, c0 = LoadSampler(), time.perf_counter(), cpu_seconds()
    args.out.mkdir(parents=True, exist_ok=True)
    patches, tiles = build_towns(args)
    t_data = time.perf_counter() - t0
    if args.upsample > 1:
        patches = upsampled(patches, args.upsample)
    runs = run_crossvals(args, patches, tiles)
    times = {
        "data_s": t_data,
        "crossval_patches_s": runs.pop("patches_s"),
        "crossval_tiles_s": runs.pop("tiles_s", None),
        "total_s": time.perf_counter() - t0,
        "cpu_s": cpu_seconds() - c0,
        "load_1min": load.stop(),
    }
    return runs, times


def previous_run(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """``--report-only``: the reports and times an earlier run left in ``--out``."""
    runs = {"patches": json.loads((patch_dir(args) / "crossval.json").read_text())}
    if (tile_dir(args) / "crossval.json").exists() and not args.skip_tiles:
        runs["tiles"] = json.loads((tile_dir(args) / "crossval.json").read_text())
    earlier = args.out / "crossval_synthetic.json"
    return runs, json.loads(earlier.read_text())["time"] if earlier.exists() else {}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # trees and filters too, before imports
    import torch

    torch.set_num_threads(args.threads)
    runs, times = previous_run(args) if args.report_only else run_all(args)
    title = "Patch dataset: patch network, change detector, trees"
    text = [report_text(title, patch_dir(args), runs["patches"])]
    if "tiles" in runs:
        title = "Tile dataset: pixel model, patch model, change detector, trees"
        text.append(report_text(title, tile_dir(args), runs["tiles"]))
        runs["negatives"] = by_negative(args, runs["tiles"])
        text.append(negatives_text(runs["negatives"]))
    print("\n".join(text))
    path = write_json(args, runs, times)
    print(summary_line(args, times) + f"\nfigures: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
