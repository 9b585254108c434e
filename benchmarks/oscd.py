"""Real Sentinel-2 change pairs (OSCD): four models, leave-city-out, with honest intervals.

Usage:

    python benchmarks/oscd.py --train-root ../shared/oscd --out DIR            # leave-city-out
    python benchmarks/oscd.py --train-root ../shared/oscd --test-root OTHER --out DIR
    python benchmarks/oscd.py --train-root ROOT --out DIR --quick               # seconds (tests)

Every city of ``--train-root`` (OSCD's layout: ``images/<city>/...``, ``labels/<city>/cm/...``)
is read by ``pipeline oscd`` (10 m UTM grid, L1C DN, labels 1 change / 0 / 255 unknown), cut
into 64 px tiles (``pipeline tiles``, the pixel model's data) and 16 px patches (``pipeline
patches``, the patch model's: a patch is changed when it holds a change pixel, the study's rule).

**Folds.** Cities that share a Sentinel-2 acquisition (the same date of the same tile, as the
band file names state it; without tile ids, the same date within :data:`SAME_PASS_KM` km) or
lie within :data:`NEAR_KM` km of each other are *related* and always held out together: they
share pixels of one image, its atmosphere and its misregistration (on OSCD: paris and bercy
share their first date, 0.3 km apart, bercy and saclay_e their second). Each fold tests one
group of related cities, validates on the next group of a seeded order and trains on the rest;
no city has two roles and no test city is ever seen before it is scored. ``--fold-by city`` gives
plain leave-one-city-out instead. With ``--test-root OTHER`` one model of each kind trains on
every city of ``--train-root`` (validation: one group of them) and scores every city of OTHER.

**Models**, the same cities and splits for all four, thresholds and early stopping on the
validation cities only:

- ``pixel``: the Siamese U-Net (``damagenet train --arch siamese-unet``, small encoder from
  scratch, width 16 (1.05 M parameters), fusion by difference, lr 1e-3), on the tiles;
  its map drawn in one pass by ``damagenet predict`` (overlapping tiles blended, no seams);
- ``patch``: the Siamese patch network (``--arch siamese-resnet``) with a **ResNet-18**
  backbone from scratch (not the study's ResNet-101: CPU time), the study's recipe, on the
  balanced patch dataset (``pipeline dataset`` defaults); its per-pixel map is ``damagenet
  predict`` sliding it every 8 px, each pixel the mean of the windows covering it;
- ``change``: the training-free change detector, per pixel the mean over bands of
  |after - before| reflectance (:func:`damagenet.evaluation.baselines.change_per_pixel`);
- ``gbt``: gradient-boosted trees per pixel on the 65 neighbourhood features of
  :mod:`damagenet.evaluation.pixel_baselines`, fitted on the fold's training tiles.

What the models see of the imagery: L1C top-of-atmosphere DN / 10000, no per-image
standardisation anywhere. The networks standardise every band with one mean and standard
deviation fitted on the fold's training tiles (patches), the trees take reflectance and indices
as they are, the change detector raw differences. Haze that differs between two dates of a city
therefore reaches every model as change; that is part of what is measured.

**Scoring**, on the labelled pixels of each whole test city (unknown 255 and pixels without an
observation in either date are never scored): precision, recall and F1 of the change class at
the threshold that maximised F1 on the fold's validation pixels (OSCD's metric), pixel ROC-AUC
and PR-AUC; and patch level on the 16 px cells of the city grid (changed when a change pixel
is in the cell, the study's rule; cells with an unobserved pixel left out): the patch model by
its own score of the cell, the others by their maximum over it (``patch_roc_auc``,
``patch_pr_auc``). The trained models' scores are temperature-calibrated on the validation
pixels of their fold, so pooled rankings over folds share a scale; pooled F1, precision and
recall use each fold's own threshold. The patch model's windows skip nodata, so its map leaves
the labelled pixels next to a grid's nodata corners unscored (2-5 % of a city): those pixels
are left out for all four models (counted per city as ``unscored_pixels``).

**Intervals** (``damagenet.evaluation.intervals``, percentile bootstrap, 95 %): pooled figures
resample whole groups of related cities (whole cities with ``--fold-by city``); a city's own
figures resample 640 m ground blocks of it; ``paired_differences`` give every pair of models
``a - b`` (positive: ``a`` better) on the same resampled groups.

**Budget** (the defaults, chosen to finish within 30 minutes on a 2-core CPU): the U-Net at
most 16 epochs and the ResNet-18 at most 8, both with patience 3 on the validation loss (a
first run capped the U-Net at 8 epochs, and its validation loss was still falling at the cap in
all six folds); batches of 16 tiles and 128 pairs; one thread per fold and two folds at once
(``--jobs``, separate processes: on a shared 2-core machine one thread per process is faster
than two); the patch map every 8 px; 1000 bootstrap resamples. The JSON records the wall time,
the CPU time (load-independent) and the load average.

Writes ``DIR/oscd.json`` (settings, seed, folds with their validation thresholds, cities,
``models.<name>.pooled|cities.<city>.<figure>`` as ``{value, low, high}``,
``paired_differences``, wall times and load), ``DIR/oscd.md`` (the printed tables) and, under
``DIR/work/``, every intermediate file (converted cities, tiles, patches, fold datasets,
checkpoints, maps, per-city scores). Nothing is written into the repository: OSCD's change maps
are CC BY-NC-SA and so is everything derived from them.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import platform
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from damagenet.data.pairs import Split

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("pixel", "patch", "change", "gbt")
#: models whose scores are temperature-calibrated on validation (the change detector is one
#: fixed function in every fold)
CALIBRATED = ("pixel", "patch", "gbt")
PIXEL_FIGURES = ("f1", "precision", "recall", "roc_auc", "pr_auc")
CELL_FIGURES = ("patch_roc_auc", "patch_pr_auc")
FIGURES = PIXEL_FIGURES + CELL_FIGURES
#: the validation rule of every threshold: the F1 of the change class, OSCD's metric
THRESHOLD_RULE = "f1"
#: the patch model's cell, px: patch-level units
CELL = 16
#: score of a unit a model left unscored: below every probability and change value
MISSING = -1.0
#: a Sentinel-2 tile id in a band file name (``..._T31UDQ_B02.tif``, ``T31UDQ_2017...``)
TILE_ID = re.compile(r"(?:^|_)T(\d{2}[A-Z]{3})_")
#: without tile ids: cities imaged on one date within this distance share an overpass
SAME_PASS_KM = 100.0
#: cities whose footprints come closer than this are neighbours whatever their dates
NEAR_KM = 2.0
PUBLISHED = (
    "F1 of the change class on OSCD's own 10 test cities (Daudt et al. 2018, from scratch): "
    "FC-EF / FC-Siam-conc / FC-Siam-diff 0.45-0.49 with RGB, 0.51-0.58 with 13 bands; "
    "comparable in spirit, not number for number"
)


@dataclass(frozen=True)
class Settings:
    """Everything that decides the figures (recorded in the JSON); defaults fit 30 min."""

    seed: int = 0
    tile_size: int = 64
    pixel_epochs: int = 16
    patch_epochs: int = 8
    patience: int = 3
    width: int = 16
    backbone: str = "resnet18"
    pixel_batch: int = 16
    patch_batch: int = 128
    stride: int = 8
    n_boot: int = 1000
    threads: int = 1
    jobs: int = 2
    fold_by: str = "related"


#: ``--quick``: seconds per fold on crops of a few cities (tests)
QUICK: dict[str, Any] = {
    "tile_size": 32,
    "pixel_epochs": 1,
    "patch_epochs": 1,
    "patience": 1,
    "width": 8,
    "stride": 16,
    "n_boot": 30,
    "jobs": 1,
}


@dataclass
class City:
    """One converted city: its files, dates and footprint."""

    name: str
    folder: Path
    tiles: Path
    patches: Path
    dates: tuple[str, str]
    #: the footprint's west, south, east, north in degrees
    bounds: tuple[float, float, float, float]
    #: the Sentinel-2 tile (MGRS id) of each date, where the band file names state it
    tiles_s2: tuple[str | None, str | None] = (None, None)

    def paths(self) -> dict[str, Path]:
        from pipeline.oscd import output_paths

        return output_paths(self.folder, self.name)


class BenchmarkUsageError(Exception):
    """A command line that cannot run (exit 2), said in one line."""


# ------------------------------------------------------------------ cities


def city_names(root: Path, wanted: list[str] | None) -> list[str]:
    """The labelled cities of an OSCD folder (all, or the ``wanted`` ones), or a refusal."""
    from pipeline.oscd.layout import labelled_cities

    if not (root / "images").is_dir():
        raise BenchmarkUsageError(f"{root}: no images/ folder; give a folder in OSCD's layout")
    names = list(labelled_cities(root))
    if not names:
        raise BenchmarkUsageError(f"{root}: no city with a change map under labels/")
    missing = sorted(set(wanted or ()) - set(names))
    if missing:
        raise BenchmarkUsageError(f"{root}: no labelled city {missing}; it holds {names}")
    return [n for n in names if not wanted or n in wanted]


def footprint(aoi_file: Path) -> tuple[float, float, float, float]:
    """West, south, east, north of the AOI polygon's outer ring, degrees."""
    doc = json.loads(aoi_file.read_text())
    ring = np.asarray(doc["features"][0]["geometry"]["coordinates"][0], dtype=float)
    west, south = ring.min(axis=0)
    east, north = ring.max(axis=0)
    return float(west), float(south), float(east), float(north)


def prepare_city(root: Path, name: str, work: Path, tile_size: int) -> City:
    """``pipeline oscd``, ``pipeline tiles`` and ``pipeline patches`` for one city."""
    from pipeline.oscd import output_paths
    from pipeline.oscd.convert import convert_city
    from pipeline.patches import cut_patches
    from pipeline.tiles.cut import cut_tiles

    start = time.perf_counter()
    record = convert_city(root, name, work / name)
    p = output_paths(work / name, name)
    tiles, patches = work / "tiles" / f"{name}.npz", work / "patches" / f"{name}.npz"
    kept = cut_tiles(name, p["before"], p["after"], p["labels"], tiles, size=tile_size)
    cut = cut_patches(name, p["before"], p["after"], p["labels"], patches, progress=False)
    dates = (str(record["dates"][0]), str(record["dates"][1]))
    granules = (s2_tile(work / name / "before.json"), s2_tile(work / name / "after.json"))
    city = City(name, work / name, tiles, patches, dates, footprint(p["aoi"]), granules)
    say(
        f"city {name}: {record['change_pixels']} change px ({record['changed_share']:.2%} of "
        f"labelled), {kept.kept} tiles, {cut.damaged} changed / {cut.no_damage} unchanged "
        f"patches ({time.perf_counter() - start:.1f} s)"
    )
    return city


def s2_tile(scene_json: Path) -> str | None:
    """The Sentinel-2 tile id a date's band files name (``..._T31UDQ_B02.tif``), if one."""
    files = json.loads(scene_json.read_text()).get("band_files", {}).values()
    found = {m.group(1) for f in files if (m := TILE_ID.search(Path(f).name))}
    return found.pop() if len(found) == 1 else None


def km_between(a: City, b: City) -> float:
    """Ground gap between two cities' footprints (0 where they overlap), locally flat."""
    (aw, as_, ae, an), (bw, bs, be, bn) = a.bounds, b.bounds
    lat = np.radians((as_ + an + bs + bn) / 4)
    dx = max(0.0, bw - ae, aw - be) * 111.32 * np.cos(lat)
    dy = max(0.0, bs - an, as_ - bn) * 110.57
    return float(np.hypot(dx, dy))


def related(a: City, b: City) -> str | None:
    """Why two cities must be held out together (None: they need not be)."""
    km = km_between(a, b)
    if km <= NEAR_KM:
        return f"{a.name} and {b.name} lie {km:.1f} km apart"
    for date, tile in zip(a.dates, a.tiles_s2, strict=True):
        for other_date, other_tile in zip(b.dates, b.tiles_s2, strict=True):
            if date != other_date:
                continue
            if tile is not None and tile == other_tile:
                return f"{a.name} and {b.name} share the acquisition of {date} (tile {tile})"
            if (tile is None or other_tile is None) and km <= SAME_PASS_KM:
                return f"{a.name} and {b.name} were imaged on {date}, {km:.0f} km apart"
    return None


def city_groups(cities: list[City], by: str) -> tuple[list[tuple[str, ...]], list[str]]:
    """Groups of related cities (connected components; each city alone with ``by="city"``)
    and the reasons that joined them."""
    label = {c.name: c.name for c in cities}
    reasons = []
    if by == "related":
        for a, b in itertools.combinations(cities, 2):
            why = related(a, b)
            if why:
                reasons.append(why)
                old, new = label[b.name], label[a.name]
                label = {k: new if v == old else v for k, v in label.items()}
    groups: dict[str, list[str]] = {}
    for c in cities:
        groups.setdefault(label[c.name], []).append(c.name)
    return sorted(tuple(sorted(g)) for g in groups.values()), reasons


# ------------------------------------------------------------------ folds


@dataclass(frozen=True)
class Fold:
    """Which cities one fold tests, validates on and trains on."""

    index: int
    test: tuple[str, ...]
    val: tuple[str, ...]
    train: tuple[str, ...]


def plan_folds(
    groups: list[tuple[str, ...]], seed: int, test_cities: list[str] | None
) -> list[Fold]:
    """Leave-one-group-out (validation: the next group of a seeded order), or one fold that
    trains on every group and tests ``test_cities``."""
    order = [groups[i] for i in np.random.default_rng(seed).permutation(len(groups))]
    if test_cities is not None:
        if len(order) < 2:
            raise BenchmarkUsageError(
                f"--train-root holds one group of related cities {order}: nothing is left to "
                "train on beside the validation cities; give more cities or --fold-by city"
            )
        rest = tuple(sorted(c for g in order[1:] for c in g))
        return [Fold(0, tuple(test_cities), order[0], rest)]
    if len(order) < 3:
        raise BenchmarkUsageError(
            f"leave-city-out needs 3 groups of unrelated cities (test, validation, training); "
            f"the cities form {len(order)}: {order}; give more cities or --fold-by city"
        )
    folds = []
    for i, test in enumerate(order):
        val = order[(i + 1) % len(order)]
        train = tuple(sorted(c for g in order if g not in (test, val) for c in g))
        folds.append(Fold(i, tuple(test), tuple(val), train))
    return folds


@dataclass(frozen=True)
class FoldJob:
    """What one worker needs for a fold: its cities' files, the settings, its folder."""

    fold: Fold
    cities: dict[str, City]
    settings: Settings
    folder: Path


def fold_datasets(job: FoldJob) -> dict[str, Path]:
    """The fold's tile and patch datasets (``pipeline dataset --split aoi``)."""
    from pipeline.dataset import DatasetOptions, build_dataset

    f, s = job.fold, job.settings
    names = [*f.train, *f.val, *f.test]
    opts = DatasetOptions(split="aoi", test_aois=f.test, val_aois=f.val, seed=s.seed)
    out = {"tiles": job.folder / "tiles.npz", "patches": job.folder / "patches.npz"}
    build_dataset([job.cities[c].tiles for c in names], out["tiles"], opts, tile_size=s.tile_size)
    build_dataset([job.cities[c].patches for c in names], out["patches"], opts)
    return out


def train_config(kind: str, s: Settings) -> Any:
    """The recipe of each network (module docstring)."""
    from damagenet.training.config import TrainConfig

    common = TrainConfig(
        device="cpu", seed=s.seed, threshold_rule=THRESHOLD_RULE, progress=False,
        threads=s.threads, patience=s.patience,
    )  # fmt: skip
    if kind == "pixel":
        return dataclasses.replace(
            common, arch="siamese-unet", encoder="small", width=s.width, fusion="diff",
            epochs=s.pixel_epochs, batch_size=s.pixel_batch, lr_backbone=1e-3, lr_head=1e-3,
        )  # fmt: skip
    return dataclasses.replace(
        common, arch="siamese-resnet", backbone=s.backbone, epochs=s.patch_epochs,
        batch_size=s.patch_batch,
    )  # fmt: skip


def train_model(job: FoldJob, kind: str, npz: Path) -> tuple[Path, dict[str, Any]]:
    """One network of the fold; its checkpoint and what training reported."""
    from damagenet.training.train import train

    start = time.perf_counter()
    ckpt = job.folder / f"{kind}.pt"
    summary = train(npz, job.folder / kind, ckpt, train_config(kind, job.settings), False)
    seconds = time.perf_counter() - start
    record = {
        "epochs_run": summary["epochs_run"],
        "best_epoch": summary["best_epoch"],
        "best_val_loss": summary["best_val_loss"],
        "seconds": round(seconds, 1),
    }
    say(
        f"fold {job.fold.index}: {kind} model trained, {record['epochs_run']} epochs "
        f"(best {record['best_epoch']}, val loss {record['best_val_loss']:.4f}), {seconds:.0f} s"
    )
    return ckpt, record


# ------------------------------------------------------------------ maps and units


@dataclass
class CityScores:
    """One city's scored units: labelled pixels and 16 px cells, every model's scores."""

    y: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    pixel: dict[str, np.ndarray]
    cell_y: np.ndarray
    cell_rows: np.ndarray
    cell_cols: np.ndarray
    cell: dict[str, np.ndarray]
    resolution: float
    unscored: dict[str, int]

    def save(self, path: Path) -> None:
        from contract.atomic import atomic_path

        arrays: dict[str, Any] = {k: v for k, v in vars(self).items() if isinstance(v, np.ndarray)}
        arrays |= {f"pixel_{m}": v for m, v in self.pixel.items()}
        arrays |= {f"cell_{m}": v for m, v in self.cell.items()}
        arrays["resolution"] = np.array(self.resolution)
        arrays["unscored"] = np.array(json.dumps(self.unscored))
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    @classmethod
    def load(cls, path: Path) -> CityScores:
        with np.load(path) as d:
            return cls(
                y=d["y"],
                rows=d["rows"],
                cols=d["cols"],
                pixel={m: d[f"pixel_{m}"] for m in MODELS},
                cell_y=d["cell_y"],
                cell_rows=d["cell_rows"],
                cell_cols=d["cell_cols"],
                cell={m: d[f"cell_{m}"] for m in MODELS},
                resolution=float(d["resolution"]),
                unscored=json.loads(str(d["unscored"])),
            )


def scene_split(city: City) -> tuple[Split, float]:
    """The whole city as one tile (1, 4, H, W), its labels as the target; the pixel size."""
    import rasterio

    from damagenet.data.pairs import Split

    p = city.paths()
    with rasterio.open(p["before"]) as b, rasterio.open(p["after"]) as a:
        before, after, res = b.read(), a.read(), float(b.res[0])
    with rasterio.open(p["labels"]) as lab:
        y = lab.read(1)
    return Split(before[None], after[None], y[None]), res


def predicted(city: City, ckpt: Path, kind: str, folder: Path, stride: int) -> np.ndarray:
    """(1, H, W) probability map of ``damagenet predict`` (NaN where it wrote nodata)."""
    import rasterio

    from damagenet.maps.predict import PredictOptions, predict_map

    p = city.paths()
    out = folder / "maps" / kind / f"{city.name}_damage_prob.tif"
    opts = PredictOptions(stride=stride, progress=False, device="cpu", compile="off")
    predict_map(p["before"], p["after"], ckpt, out, opts)
    with rasterio.open(out) as src:
        return src.read(1, masked=True).astype(np.float64).filled(np.nan)[None]


def patch_cells(ckpt: Path, split: Split) -> Any:
    """The patch model's own score of every 16 px cell of the city grid (a ScoreMap)."""
    import torch

    from damagenet.evaluation.tile_evaluate import patch_map
    from damagenet.models.checkpoint import load_checkpoint

    loaded = load_checkpoint(ckpt, map_location="cpu")
    return patch_map(loaded, cropped(split), torch.device("cpu"), 512)


def cropped(split: Split) -> Split:
    """The split cut to whole 16 px cells from the grid's top-left corner (as patches are)."""
    from damagenet.data.pairs import Split

    h, w = (n - n % CELL for n in split.y.shape[1:])
    return Split(split.before[..., :h, :w], split.after[..., :h, :w], split.y[:, :h, :w])


def city_scores(
    split: Split, maps: dict[str, np.ndarray], cells: Any, resolution: float
) -> CityScores:
    """Units of one city and every model's score of them (module docstring): the labelled
    pixels every model scores, the cells."""
    from damagenet.evaluation.levels import CellLevel, PixelLevel, ScoreMap

    px, cl = PixelLevel(), CellLevel(CELL)
    pu, cu = px.units(split), cl.units(cropped(split))
    pixel = {m: maps[m][0, pu.row, pu.col] for m in MODELS}
    unscored = {m: int(np.isnan(v).sum()) for m, v in pixel.items()}
    keep = np.all([np.isfinite(v) for v in pixel.values()], axis=0)
    cell = {
        m: cl.scores(cu, cells if m == "patch" else ScoreMap(cropped_map(maps[m]))) for m in MODELS
    }
    return CityScores(
        pu.y[keep], pu.row[keep], pu.col[keep], {m: floor(v[keep]) for m, v in pixel.items()},
        cu.y, cu.row, cu.col, {m: floor(v) for m, v in cell.items()}, resolution, unscored,
    )  # fmt: skip


def cropped_map(values: np.ndarray) -> np.ndarray:
    """A (1, H, W) map cut to whole cells, as :func:`cropped` cuts the split."""
    h, w = (n - n % CELL for n in values.shape[1:])
    return values[:, :h, :w]


def floor(values: np.ndarray) -> np.ndarray:
    """Unscored (NaN) values to :data:`MISSING`, as float32 (a cell a model left unscored
    counts as unflagged; cells with an unobserved pixel are never units)."""
    return np.where(np.isnan(values), MISSING, values).astype(np.float32)


def score_cities(job: FoldJob, ckpts: dict[str, Path], tiles_npz: Path) -> dict[str, CityScores]:
    """Every model's maps of the fold's validation and test cities, scored on their units."""
    from damagenet.data.tiles import load_tiles
    from damagenet.evaluation.levels import nodata
    from damagenet.evaluation.pixel_baselines import pixel_baseline_maps

    names = [*job.fold.val, *job.fold.test]
    scenes = {c: scene_split(job.cities[c]) for c in names}
    train = load_tiles(tiles_npz)["train"]
    splits = {"train": train, **{c: s for c, (s, _) in scenes.items()}}
    baselines = pixel_baseline_maps(splits, job.settings.seed, tuple(names))
    out = {}
    for c in names:
        split, res = scenes[c]
        hole = nodata(split)
        maps = {m: np.where(hole, np.nan, baselines[m][c]) for m in ("change", "gbt")}
        for kind in ("pixel", "patch"):
            maps[kind] = predicted(
                job.cities[c], ckpts[kind], kind, job.folder, job.settings.stride
            )
        out[c] = city_scores(split, maps, patch_cells(ckpts["patch"], split), res)
        say(f"fold {job.fold.index}: {c} mapped by all four models")
    return out


# ------------------------------------------------------------------ calibration, thresholds


def calibrate(values: np.ndarray, calib: dict[str, Any] | None) -> np.ndarray:
    """Calibrated probabilities; unscored values stay :data:`MISSING`."""
    from damagenet.evaluation.calibration import apply_calibration

    if calib is None:
        return values
    scored = values >= 0
    out = values.astype(np.float64).copy()
    out[scored] = apply_calibration(values[scored], calib)
    return out.astype(np.float32)


def operating_points(val: list[CityScores]) -> dict[str, dict[str, Any]]:
    """Per model: temperature and F1-best threshold on the validation cities' pixels."""
    from damagenet.evaluation.calibration import fit_temperature
    from damagenet.evaluation.metrics import choose_threshold
    from damagenet.evaluation.scores import f1_at
    from damagenet.logits import logit

    y = np.concatenate([v.y for v in val])
    out = {}
    for m in MODELS:
        s = np.concatenate([v.pixel[m] for v in val]).astype(np.float64)
        calib = None
        if m in CALIBRATED:
            ok = s >= 0
            calib = fit_temperature(logit(s[ok]), y[ok])
            s = calibrate(s, calib)
        threshold = choose_threshold(y, s, THRESHOLD_RULE)
        out[m] = {"threshold": threshold, "calibration": calib, "val_f1": f1_at(threshold)(y, s)}
    return out


def run_fold(job: FoldJob) -> dict[str, Any]:
    """Train, map, calibrate and threshold one fold; save each test city's scores."""
    import torch
    from threadpoolctl import threadpool_limits

    start = time.perf_counter()
    torch.set_num_threads(job.settings.threads)
    f = job.fold
    say(f"fold {f.index}: test {', '.join(f.test)}; validation {', '.join(f.val)}; "
        f"training {', '.join(f.train)}")  # fmt: skip
    job.folder.mkdir(parents=True, exist_ok=True)
    with threadpool_limits(job.settings.threads):
        data = fold_datasets(job)
        trained = {
            k: train_model(job, k, data[n]) for k, n in (("pixel", "tiles"), ("patch", "patches"))
        }
        scores = score_cities(job, {k: v[0] for k, v in trained.items()}, data["tiles"])
    points = operating_points([scores[c] for c in f.val])
    files = {}
    for c in f.test:
        cs = scores[c]
        cs.pixel = {m: calibrate(v, points[m]["calibration"]) for m, v in cs.pixel.items()}
        cs.cell = {m: calibrate(v, points[m]["calibration"]) for m, v in cs.cell.items()}
        files[c] = job.folder / f"{c}_scores.npz"
        cs.save(files[c])
    seconds = time.perf_counter() - start
    say(f"fold {f.index}: done in {seconds:.0f} s")
    return {
        **dataclasses.asdict(f),
        "models": points,
        "training": {k: v[1] for k, v in trained.items()},
        "scores": {c: str(p) for c, p in files.items()},
        "seconds": round(seconds, 1),
    }


def fold_in_worker(job: FoldJob) -> dict[str, Any]:
    """:func:`run_fold` in a worker process, its log lines marked with the fold (the process's
    own logging; a fold run in the caller's process leaves the caller's logging alone)."""
    fold_logging(job.fold.index)
    return run_fold(job)


def fold_logging(index: int) -> None:
    """Warnings, and training's one line per epoch, marked with the fold they come from."""
    import logging

    logging.basicConfig(
        level=logging.WARNING,
        format=f"[%(asctime)s] fold {index}: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    logging.getLogger("damagenet.training.train").setLevel(logging.INFO)


def run_folds(jobs: list[FoldJob], n_jobs: int) -> list[dict[str, Any]]:
    """The folds in this process, or in ``n_jobs`` worker processes (same results)."""
    if n_jobs <= 1 or len(jobs) == 1:
        return [run_fold(j) for j in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(n_jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(fold_in_worker, jobs))


# ------------------------------------------------------------------ figures


def metric_of(name: str) -> tuple[Any, bool]:
    """The metric behind a figure and whether it reads scores against the threshold."""
    from damagenet.evaluation.scores import (
        average_precision,
        f1_at,
        precision_at,
        recall_at,
        roc_auc,
    )

    return {
        "f1": (f1_at(0.0), True),
        "precision": (precision_at(0.0), True),
        "recall": (recall_at(0.0), True),
        "roc_auc": (roc_auc, False),
        "pr_auc": (average_precision, False),
        "patch_roc_auc": (roc_auc, False),
        "patch_pr_auc": (average_precision, False),
    }[name]


@dataclass
class Units:
    """Units of one level (several cities pooled, or one): labels, groups, scores per model,
    each model's threshold per unit."""

    y: np.ndarray
    groups: np.ndarray
    scores: dict[str, np.ndarray]
    thresholds: dict[str, np.ndarray]

    def shifted(self, model: str, against_threshold: bool) -> np.ndarray:
        """Scores, minus each unit's threshold for figures read at the threshold (so pooled
        folds with their own thresholds are read alike, at 0)."""
        s = self.scores[model].astype(np.float64)
        return s - self.thresholds[model] if against_threshold else s


def pixel_units(cs: CityScores, thresholds: dict[str, float], groups: np.ndarray | None) -> Units:
    """One city's pixels; groups: given (pooled), else its 640 m ground blocks."""
    from damagenet.evaluation.intervals import spatial_blocks

    if groups is None:
        groups = spatial_blocks(cs.cols * cs.resolution, cs.rows * cs.resolution)
    return Units(
        cs.y.astype(np.int64), groups, dict(cs.pixel),
        {m: np.full(len(cs.y), t) for m, t in thresholds.items()},
    )  # fmt: skip


def cell_units(cs: CityScores, groups: np.ndarray | None) -> Units:
    """One city's 16 px cells; groups: given (pooled), else the blocks of the cell centres."""
    from damagenet.evaluation.intervals import spatial_blocks

    if groups is None:
        metres = cs.resolution * CELL
        groups = spatial_blocks((cs.cell_cols + 0.5) * metres, (cs.cell_rows + 0.5) * metres)
    zero = {m: np.zeros(len(cs.cell_y)) for m in MODELS}
    return Units(cs.cell_y.astype(np.int64), groups, dict(cs.cell), zero)


def pooled(parts: list[Units]) -> Units:
    """Several cities' units as one set, each unit keeping its group and its threshold."""
    return Units(
        np.concatenate([u.y for u in parts]),
        np.concatenate([u.groups for u in parts]),
        {m: np.concatenate([u.scores[m] for u in parts]) for m in MODELS},
        {m: np.concatenate([u.thresholds[m] for u in parts]) for m in MODELS},
    )


def blocks_pooled(parts: list[Units]) -> Units:
    """Several cities' units with their own ground blocks, kept apart across cities."""
    offsets = np.cumsum([0] + [int(u.groups.max()) + 1 for u in parts[:-1]])
    moved = [
        dataclasses.replace(u, groups=u.groups + o) for u, o in zip(parts, offsets, strict=True)
    ]
    return pooled(moved)


def figures(levels: dict[str, Units], model: str, s: Settings) -> dict[str, Any]:
    """Every figure of one model with its interval over the units' groups."""
    from damagenet.evaluation.intervals import grouped_interval

    out = {}
    for name in FIGURES:
        u = levels["cell" if name in CELL_FIGURES else "pixel"]
        metric, against = metric_of(name)
        iv = grouped_interval(
            metric, u.y, u.shifted(model, against), u.groups, n_resamples=s.n_boot, seed=s.seed
        )
        out[name] = iv.as_dict()
    return out


def paired(levels: dict[str, Units], s: Settings) -> dict[str, dict[str, Any]]:
    """``a - b`` of every figure for every pair of models, on the same resampled groups."""
    from damagenet.evaluation.intervals import paired_difference
    from damagenet.evaluation.scores import fmt_diff

    out: dict[str, dict[str, Any]] = {}
    for a, b in itertools.combinations(MODELS, 2):
        row = {}
        for name in FIGURES:
            u = levels["cell" if name in CELL_FIGURES else "pixel"]
            metric, against = metric_of(name)
            iv = paired_difference(
                metric, u.y, u.shifted(a, against), u.shifted(b, against), u.groups,
                n_resamples=s.n_boot, seed=s.seed,
            )  # fmt: skip
            row[name] = iv.as_dict()
        out[f"{a}-{b}"] = row
        say(f"paired {a} - {b}: F1 {fmt_diff(row['f1'])}, PR-AUC {fmt_diff(row['pr_auc'])}")
    return out


def score_all(
    folds: list[dict[str, Any]], groups: dict[str, int], s: Settings
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Per-city and pooled figures of every model, paired differences, per-city counts."""
    from damagenet.evaluation.scores import fmt_ci

    per_city: dict[str, dict[str, Units]] = {}
    parts: dict[str, list[Units]] = {"pixel": [], "cell": []}
    counts = {}
    for fold in folds:
        thresholds = {m: fold["models"][m]["threshold"] for m in MODELS}
        for city, path in fold["scores"].items():
            cs = CityScores.load(Path(path))
            per_city[city] = {
                "pixel": pixel_units(cs, thresholds, None),
                "cell": cell_units(cs, None),
            }
            g = np.full(len(cs.y), groups[city])
            parts["pixel"].append(pixel_units(cs, thresholds, g))
            parts["cell"].append(cell_units(cs, np.full(len(cs.cell_y), groups[city])))
            counts[city] = city_counts(cs, per_city[city], fold["index"])
    pooled_levels = {k: pooled(v) for k, v in parts.items()}
    if len(np.unique(pooled_levels["pixel"].groups)) < 2:  # one group: its ground blocks
        pooled_levels = {
            k: blocks_pooled([per_city[c][k] for c in sorted(per_city)]) for k in parts
        }
    models = {}
    for m in MODELS:
        cities = {c: figures(per_city[c], m, s) for c in sorted(per_city)}
        models[m] = {"pooled": figures(pooled_levels, m, s), "cities": cities}
        say(f"{m}: pooled F1 {fmt_ci(models[m]['pooled']['f1'])}, "
            f"PR-AUC {fmt_ci(models[m]['pooled']['pr_auc'])}")  # fmt: skip
    return models, paired(pooled_levels, s), counts


def best_f1(y: np.ndarray, score: np.ndarray) -> float:
    """The F1 at the threshold best on these very units: what the ranking would allow, a
    diagnostic of what transferring a threshold costs (it reads the test labels: never an
    accuracy figure)."""
    from damagenet.evaluation.metrics import choose_threshold
    from damagenet.evaluation.scores import f1_at

    return f1_at(choose_threshold(y, score, THRESHOLD_RULE))(y, score)


def city_counts(cs: CityScores, levels: dict[str, Units], fold: int) -> dict[str, Any]:
    """What a city's figures rest on: units, change, blocks, unscored pixels, best F1."""
    return {
        "fold": fold,
        "pixels": int(len(cs.y)),
        "change_pixels": int(cs.y.sum()),
        "changed_share": round(float(cs.y.mean()), 5),
        "cells": int(len(cs.cell_y)),
        "changed_cells": int(cs.cell_y.sum()),
        "blocks": int(len(np.unique(levels["pixel"].groups))),
        "unscored_pixels": cs.unscored,
        "best_f1_on_itself": {m: best_f1(cs.y, cs.pixel[m]) for m in MODELS},
    }


# ------------------------------------------------------------------ tables


TITLES = {
    "f1": "F1",
    "precision": "precision",
    "recall": "recall",
    "roc_auc": "ROC-AUC",
    "pr_auc": "PR-AUC",
    "patch_roc_auc": "patch ROC-AUC",
    "patch_pr_auc": "patch PR-AUC",
}


def tables(report: dict[str, Any]) -> str:
    """The Markdown tables: pooled, per city (one per figure), paired differences."""
    from damagenet.evaluation.scores import fmt_ci, fmt_diff

    models, cities = report["models"], report["cities"]
    lines = ["### Pooled (95 % intervals resample whole groups of related cities)", ""]
    lines += ["| model | " + " | ".join(TITLES[f] for f in FIGURES) + " |"]
    lines += ["| --- |" + " --- |" * len(FIGURES)]
    for m in MODELS:
        row = [fmt_ci(models[m]["pooled"][f]) for f in FIGURES]
        lines.append(f"| {m} | " + " | ".join(row) + " |")
    for f in ("f1", "pr_auc", "roc_auc", "patch_roc_auc", "precision", "recall"):
        lines += ["", f"### {TITLES[f]} per city (95 % intervals resample 640 m blocks)", ""]
        lines += ["| city (changed px) | " + " | ".join(MODELS) + " |"]
        lines += ["| --- |" + " --- |" * len(MODELS)]
        for c in sorted(cities):
            head = f"{c} ({cities[c]['changed_share']:.2%})"
            row = [fmt_ci(models[m]["cities"][c][f]) for m in MODELS]
            lines.append(f"| {head} | " + " | ".join(row) + " |")
    lines += ["", "### Paired differences, pooled (a - b; positive: a better)", ""]
    cols = ("f1", "pr_auc", "roc_auc", "patch_roc_auc")
    lines += ["| a - b | " + " | ".join(TITLES[f] for f in cols) + " |"]
    lines += ["| --- |" + " --- |" * len(cols)]
    for pair, row in report["paired_differences"].items():
        lines.append(f"| {pair} | " + " | ".join(fmt_diff(row[f]) for f in cols) + " |")
    return "\n".join(lines) + "\n"


def fold_table(folds: list[dict[str, Any]]) -> str:
    """Per fold: its cities and each model's validation threshold (and F1 there)."""
    lines = ["| fold | test | validation | " + " | ".join(MODELS) + " |"]
    lines += ["| --- | --- | --- |" + " --- |" * len(MODELS)]
    for f in folds:
        cells = [
            f"{f['models'][m]['threshold']:.3g} (val F1 {f['models'][m]['val_f1']:.3f})"
            for m in MODELS
        ]
        test, val = ", ".join(f["test"]), ", ".join(f["val"])
        lines.append(f"| {f['index']} | {test} | {val} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ the run


def say(text: str) -> None:
    """A progress line, flushed (worker processes print their own)."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def settings_of(args: argparse.Namespace) -> Settings:
    """Defaults, ``--quick``'s, then every option given."""
    base = dataclasses.replace(Settings(), **QUICK) if args.quick else Settings()
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)}
    s = dataclasses.replace(base, **{k: v for k, v in given.items() if v is not None})
    if s.tile_size % CELL or s.tile_size < CELL:
        raise BenchmarkUsageError(f"--tile-size must be a multiple of {CELL}, got {s.tile_size}")
    return s


def check_out(out: Path) -> None:
    """OSCD-derived files never go into the repository (their licence is non-commercial)."""
    resolved = out.resolve()
    if resolved == ROOT or ROOT in resolved.parents:
        raise BenchmarkUsageError(
            f"--out {out} lies inside the repository {ROOT}; OSCD's change maps are CC BY-NC-SA "
            "and so is every file derived from them: write them outside it"
        )


def prepare(
    args: argparse.Namespace, s: Settings, work: Path
) -> tuple[dict[str, City], list[str] | None]:
    """Every city converted and cut; the test cities' names with ``--test-root``."""
    train_names = city_names(args.train_root, args.cities)
    cities = {c: prepare_city(args.train_root, c, work / "train", s.tile_size) for c in train_names}
    if args.test_root is None:
        return cities, None
    test_names = city_names(args.test_root, None)
    clash = sorted(set(test_names) & set(train_names))
    if clash:
        raise BenchmarkUsageError(
            f"--test-root {args.test_root} holds cities of --train-root too ({clash}): a city "
            "cannot be trained on and scored"
        )
    for c in test_names:
        cities[c] = prepare_city(args.test_root, c, work / "test", s.tile_size)
    return cities, test_names


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark: cities, folds, figures, JSON and tables."""
    start, load = time.perf_counter(), os.getloadavg()
    s = settings_of(args)
    check_out(args.out)
    work = args.out / "work"
    cities, test_names = prepare(args, s, work)
    t_data = time.perf_counter() - start
    train = [c for n, c in cities.items() if test_names is None or n not in test_names]
    groups, reasons = city_groups(train, s.fold_by)
    for why in reasons:
        say(f"related: {why} (held out together)")
    folds = plan_folds(groups, s.seed, test_names)
    jobs = [FoldJob(f, cities, s, work / f"fold{f.index}") for f in folds]
    os.environ["OMP_NUM_THREADS"] = str(s.threads)  # worker processes inherit it
    results = run_folds(jobs, s.jobs)
    t_folds = time.perf_counter() - start - t_data
    scored = [c for f in folds for c in f.test]
    test_groups, _ = city_groups([cities[c] for c in scored], s.fold_by)
    group_of = {c: i for i, g in enumerate(test_groups) for c in g}
    models, diffs, counts = score_all(results, group_of, s)
    seconds = {"data": t_data, "folds": t_folds, "total": time.perf_counter() - start}
    seconds["cpu"] = cpu_seconds()
    return record(args, s, cities, groups, reasons, results, models, diffs, counts, seconds, load)


def cpu_seconds() -> float:
    """CPU time of this process and its finished workers: the work, whatever the load."""
    import resource

    return sum(
        u.ru_utime + u.ru_stime
        for u in (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
    )


def record(
    args: argparse.Namespace,
    s: Settings,
    cities: dict[str, City],
    groups: list[tuple[str, ...]],
    reasons: list[str],
    folds: list[dict[str, Any]],
    models: dict[str, Any],
    diffs: dict[str, Any],
    counts: dict[str, Any],
    seconds: dict[str, float],
    load: tuple[float, float, float],
) -> dict[str, Any]:
    """The JSON document."""
    seconds["scoring"] = seconds["total"] - seconds["data"] - seconds["folds"]
    return {
        "benchmark": "oscd",
        "mode": "train-test" if args.test_root else "leave-city-out",
        "train_root": str(args.train_root),
        "test_root": None if args.test_root is None else str(args.test_root),
        "seed": s.seed,
        "settings": {
            **dataclasses.asdict(s),
            "quick": bool(args.quick),
            "threshold_rule": THRESHOLD_RULE,
            "cell_px": CELL,
        },  # fmt: skip
        "groups": [list(g) for g in groups],
        "related": reasons,
        "folds": folds,
        "cities": {c: {**counts[c], "dates": list(cities[c].dates)} for c in sorted(counts)},
        "models": models,
        "paired_differences": diffs,
        "figures": FIGURES_NOTE,
        "published": PUBLISHED,
        "wall_time_s": {k: round(v, 1) for k, v in seconds.items()},
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_at_start": [round(x, 2) for x in load],
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
    }


FIGURES_NOTE = {
    "pixel": "every labelled pixel of each whole test city that all four maps score (unknown "
    "and unobserved never)",
    "f1, precision, recall": "of the change class at each fold's validation threshold (F1-best "
    "on the validation cities' pixels)",
    "roc_auc, pr_auc": "pixel ranking; pooled over cities on temperature-calibrated scores",
    "patch_roc_auc, patch_pr_auc": "16 px cells of the city grid, changed when a change pixel "
    "is in the cell; the patch model by its own score, the others by their maximum over it",
    "pooled intervals": "percentile bootstrap of whole groups of related cities",
    "city intervals": "percentile bootstrap of 640 m ground blocks",
    "paired_differences": "a - b on the same resampled groups, pooled; positive: a better",
    "best_f1_on_itself": "per city, the F1 at the threshold best on the city's own labels: what "
    "the ranking allows, to read beside the F1 at the validation threshold (not an accuracy)",
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-root", type=Path, required=True, help="folder in OSCD's layout")
    p.add_argument("--test-root", type=Path, help="score these cities instead of folds")
    p.add_argument("--out", type=Path, required=True, help="output folder (outside the repo)")
    p.add_argument("--cities", nargs="+", help="only these cities of --train-root")
    p.add_argument("--quick", action="store_true", help="tiny settings for tests (seconds)")
    p.add_argument("--fold-by", choices=("related", "city"), help="hold out groups of related "
                   "cities (default) or single cities")  # fmt: skip
    p.add_argument("--seed", type=int, help="seed of everything (0)")
    p.add_argument("--tile-size", type=int, help="pixel model's tiles, px (64)")
    p.add_argument("--pixel-epochs", type=int, help="pixel model's epochs at most (16)")
    p.add_argument("--patch-epochs", type=int, help="patch model's epochs at most (8)")
    p.add_argument("--patience", type=int, help="early stopping on validation loss (3)")
    p.add_argument("--width", type=int, help="pixel model's first encoder width (16)")
    p.add_argument("--backbone", help="patch model's ResNet (resnet18)")
    p.add_argument("--pixel-batch", type=int, help="tiles per batch (16)")
    p.add_argument("--patch-batch", type=int, help="patch pairs per batch (128)")
    p.add_argument("--stride", type=int, help="patch model's map stride, px (8)")
    p.add_argument("--n-boot", type=int, help="bootstrap resamples per interval (1000)")
    p.add_argument("--threads", type=int, help="torch and OpenMP threads per fold (1)")
    p.add_argument("--jobs", type=int, help="folds run at once, one process each (2)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from contract.errors import UserError

    try:
        report = run(args)
    except BenchmarkUsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 1))
    from contract.atomic import write_text_atomic

    text = tables(report) + "\n### Folds: validation thresholds\n\n" + fold_table(report["folds"])
    write_text_atomic(args.out / "oscd.json", json.dumps(report, indent=2) + "\n")
    write_text_atomic(args.out / "oscd.md", text)
    print("\n" + text)
    w = report["wall_time_s"]
    print(
        f"wall time {w['total']:.0f} s (data {w['data']:.0f}, folds {w['folds']:.0f}, scoring "
        f"{w['scoring']:.0f}), CPU time {w['cpu']:.0f} s; load average at start "
        f"{report['machine']['load_average_at_start']}"
        f", at end {report['machine']['load_average_at_end']} ({os.cpu_count()} CPUs)"
    )
    print(PUBLISHED)
    return 0


if __name__ == "__main__":
    sys.exit(main())
