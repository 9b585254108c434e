"""What a cross-validation fold trains and scores, by dataset kind.

The fold loop of :mod:`damagenet.evaluation.crossval` is the same for both kinds; what differs
lives here and the dataset's ``kind`` picks it (:func:`kind_of`):

- :class:`PatchKind` (patch datasets): the Siamese patch network, the change detector and the
  trees on patch features, scored per pair (level ``patch``);
- :class:`TileKind` (tile datasets): the Siamese U-Net, the change detector and the trees per
  pixel, scored at pixel, patch (16 px cells) and point level
  (:mod:`damagenet.evaluation.levels`).

Per fold each model's thresholds are chosen on the fold's validation AOI; the network's
temperature is fitted there and stored in its checkpoint, and its scores are calibrated, so
pooled rankings over folds share a scale. A fold hands back, per level, a
:class:`FoldLevel`: the test units with their AOI and position, and every model's
:class:`~damagenet.evaluation.scores.Scored`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from contract.atomic import atomic_path
from contract.npz import save_npz
from contract.npz_keys import DATASET_KIND, PATCHES, SPLITS, TILES, split_key
from damagenet.data import pairs, tiles
from damagenet.data.pairs import Split
from damagenet.errors import DamagenetUsageError
from damagenet.evaluation.baselines import baseline_scores
from damagenet.evaluation.calibration import apply_calibration, fit_temperature
from damagenet.evaluation.comparison import NETWORK, operating_points
from damagenet.evaluation.evaluate import probabilities
from damagenet.evaluation.levels import CellLevel, Level, PixelLevel, ScoreMap, cells_as_pairs
from damagenet.evaluation.scores import Scored
from damagenet.evaluation.tile_evaluate import (
    PATCH_MODEL,
    PIXEL_MODEL,
    LevelScores,
    levels_for,
    model_maps,
    pairs_of,
    score_level,
)
from damagenet.inference.scoring import resolve_device
from damagenet.logits import logit
from damagenet.models.checkpoint import input_of, load_checkpoint, read_payload
from damagenet.training.config import TrainConfig
from damagenet.training.train import train

#: provenance arrays a fold dataset carries when the pooled dataset has them
PROVENANCE = ("aoi", "row", "col", "lon", "lat", "prewar")
#: the settings of a network's training schedule ``crossval.json`` records per fold
SCHEDULE = ("epochs", "batch_size", "patience", "lr_backbone", "lr_head")
#: the folder of a fold holding the patch model's log, summary and cells (``--keep-data``)
PATCH_DIR = "patch"


@dataclass(frozen=True)
class FoldLevel:
    """One fold's test units at one level: labels, AOI and position, every model's scores."""

    y: np.ndarray
    aoi: np.ndarray
    lon: np.ndarray | None
    lat: np.ndarray | None
    models: dict[str, Scored]


class Kind(Protocol):
    """What differs between patch and tile datasets in a fold."""

    @property
    def name(self) -> str: ...
    @property
    def levels(self) -> tuple[str, ...]: ...
    @property
    def units(self) -> dict[str, tuple[str, str]]:
        """Per level: what a unit is called (``pairs``, ``pixels``...) and its rule."""
        ...

    def load(self, npz: str | Path) -> dict[str, Split]: ...
    def config(self, cfg: TrainConfig) -> TrainConfig: ...
    def pairs(self, models: list[str]) -> list[tuple[str, str]]: ...
    def fit(
        self, splits: dict[str, Split], fold_dir: Path, cfg: TrainConfig, keep_data: bool
    ) -> dict[str, Path]: ...
    def score(
        self, ckpts: dict[str, Path], splits: dict[str, Split], cfg: TrainConfig
    ) -> tuple[dict[str, FoldLevel], dict[str, dict[str, Any]]]: ...


@dataclass(frozen=True)
class PatchTraining:
    """How the patch model beside the pixel model trains: on its own schedule, not the pixel
    model's (a batch of 16 tiles would be a batch of 16 cells for it: several times slower
    per cell and unlike its recipe). The defaults are the patch network's own
    (:class:`~damagenet.training.config.TrainConfig`'s, the study's recipe); its learning rates
    are always the study's, whatever the pixel model's are."""

    epochs: int = TrainConfig.epochs
    batch_size: int = TrainConfig.batch_size
    patience: int = TrainConfig.patience

    def config(self, cfg: TrainConfig) -> TrainConfig:
        """The patch model's configuration: ``cfg``'s shared settings (backbone, device, seed,
        threads...) with this schedule and the study's learning rates."""
        d = TrainConfig()
        return dataclasses.replace(
            cfg, arch="siamese-resnet", lr_backbone=d.lr_backbone, lr_head=d.lr_head,
            epochs=self.epochs, batch_size=self.batch_size, patience=self.patience,
        )  # fmt: skip


def kind_of(npz: str | Path, patch: PatchTraining | None = None) -> Kind:
    """The fold behaviour of the dataset's kind (patches, or tiles; ``patch``: tiles with the
    patch model trained, on that schedule, and scored beside the pixel model)."""
    with pairs.open_npz(Path(npz)) as d:
        tiled = pairs.dataset_kind(d) == TILES
    if patch is not None and not tiled:
        raise DamagenetUsageError(
            f"{npz} is a patch dataset, whose network is the patch model already; "
            "--with-patch-model adds the patch model beside the pixel model on a tile dataset"
        )
    return TileKind(patch) if tiled else PatchKind()


def train_on(
    splits: dict[str, Split], npz: Path, ckpt: Path, cfg: TrainConfig, kind: str, keep: bool
) -> Path:
    """Train ``cfg``'s network on the fold's splits (written to ``npz`` for the loop); its
    ``train_log.csv`` and ``train_summary.json`` go beside ``npz``."""
    npz.parent.mkdir(parents=True, exist_ok=True)
    write_fold_npz(splits, npz, kind)
    train(npz, npz.parent, ckpt, cfg, run_evaluation=False)
    if not keep:
        npz.unlink()
    return ckpt


def trained_with(ckpt: Path) -> dict[str, Any]:
    """The schedule a fold's network was trained on and how far it ran, from its model card:
    what ``crossval.json`` records per fold and model."""
    card = read_payload(ckpt)["card"]["training"]
    return {k: card["recipe"][k] for k in SCHEDULE} | {
        k: card[k] for k in ("epochs_run", "best_epoch")
    }


def write_fold_npz(splits: dict[str, Split], path: Path, kind: str) -> None:
    """The fold's splits as a dataset NPZ of the pooled dataset's kind, provenance kept."""
    arrays: dict[str, Any] = {DATASET_KIND: np.array(kind)} if kind == TILES else {}
    for role in SPLITS:
        sp = splits[role]
        arrays |= {split_key("Xb", role): sp.before, split_key("Xa", role): sp.after}
        arrays[split_key("y", role)] = sp.y
        for key in PROVENANCE:
            value = getattr(sp, key)
            if value is not None:
                arrays[split_key(key, role)] = value.astype(str) if key == "aoi" else value
    save_npz(path, arrays)


def store_calibration(ckpt: Path, calib: dict[str, Any]) -> None:
    """Add the fitted calibration to the fold checkpoint (predict applies it), and move the
    checkpoint's threshold through it: maps compare calibrated probabilities with the
    threshold, and the calibration is monotone, so the threshold keeps the operating point
    it was chosen at on validation (the value before is kept as ``uncalibrated``)."""
    payload = torch.load(ckpt, map_location="cpu", weights_only=True)
    payload["calibration"] = calib
    old = float(payload["threshold"]["value"])
    new = float(apply_calibration(np.array([old]), calib)[0])
    payload["threshold"] = {**payload["threshold"], "value": new, "uncalibrated": old}
    if payload.get("card", {}).get("threshold"):
        payload["card"]["threshold"]["value"] = new
    with atomic_path(ckpt) as tmp:
        torch.save(payload, tmp)


def _fold_level(
    test: Split, tile: np.ndarray, y: np.ndarray, models: dict[str, Scored]
) -> FoldLevel:
    """Units of ``test`` (``tile``: the pair or tile each unit lies in) with their provenance."""
    return FoldLevel(
        y.astype(np.int64),
        test.aoi[tile].astype(str) if test.aoi is not None else np.full(len(tile), ""),
        None if test.lon is None else test.lon[tile],
        None if test.lat is None else test.lat[tile],
        models,
    )


class PatchKind:
    """Patch datasets: the Siamese patch network and the per-pair baselines."""

    name = PATCHES
    levels = ("patch",)

    @property
    def units(self) -> dict[str, tuple[str, str]]:
        return {"patch": ("pairs", "the dataset's patch pairs")}

    def load(self, npz: str | Path) -> dict[str, Split]:
        return pairs.load_splits(npz)

    def config(self, cfg: TrainConfig) -> TrainConfig:
        return dataclasses.replace(cfg, arch="siamese-resnet")

    def pairs(self, models: list[str]) -> list[tuple[str, str]]:
        return [(models[0], m) for m in models[1:]]

    def fit(
        self, splits: dict[str, Split], fold_dir: Path, cfg: TrainConfig, keep_data: bool
    ) -> dict[str, Path]:
        npz, ckpt = fold_dir / "dataset.npz", fold_dir / "model.pt"
        return {NETWORK: train_on(splits, npz, ckpt, cfg, self.name, keep_data)}

    def score(
        self, ckpts: dict[str, Path], splits: dict[str, Split], cfg: TrainConfig
    ) -> tuple[dict[str, FoldLevel], dict[str, dict[str, Any]]]:
        """Calibrated network scores and both baselines; thresholds on the validation AOI."""
        dev = resolve_device(cfg.device)
        ckpt = ckpts[NETWORK]
        model, payload = load_checkpoint(ckpt, map_location=dev)
        prob = {
            s: probabilities(model, splits[s], input_of(payload), cfg.eval_batch_size, dev)
            for s in ("val", "test")
        }
        calib = fit_temperature(logit(prob["val"]), splits["val"].y)
        store_calibration(ckpt, calib)
        scores = {
            NETWORK: {s: apply_calibration(p, calib) for s, p in prob.items()},
            **baseline_scores(splits, cfg.seed),
        }
        models = operating_points(splits["val"].y, scores, cfg.threshold_rule)
        test = splits["test"]
        level = _fold_level(test, np.arange(len(test.y)), test.y, models)
        return {"patch": level}, {NETWORK: calib}


@dataclass(frozen=True)
class TileKind:
    """Tile datasets: the Siamese U-Net and the per-pixel baselines at three levels, and with
    ``patch`` the patch model trained on the same training tiles' 16 px cells
    (:func:`~damagenet.evaluation.levels.cells_as_pairs`, the study's recipe) beside it."""

    patch: PatchTraining | None = None
    name = TILES
    levels = ("pixel", "patch", "point")

    @property
    def units(self) -> dict[str, tuple[str, str]]:
        return {level.name: (level.unit, level.rule) for level in levels_for()}

    def load(self, npz: str | Path) -> dict[str, Split]:
        return tiles.load_tiles(npz)

    def config(self, cfg: TrainConfig) -> TrainConfig:
        return dataclasses.replace(cfg, arch="siamese-unet")

    def pairs(self, models: list[str]) -> list[tuple[str, str]]:
        return pairs_of(models)

    def fit(
        self, splits: dict[str, Split], fold_dir: Path, cfg: TrainConfig, keep_data: bool
    ) -> dict[str, Path]:
        """The pixel model (``model.pt``: the fold ensemble's member, its log and summary in
        the fold's folder), and the patch model when asked for (``patch_model.pt``, its log,
        summary and cells in ``patch/``, so neither overwrites the other's)."""
        npz = fold_dir / "dataset.npz"
        ckpts = {PIXEL_MODEL: train_on(splits, npz, fold_dir / "model.pt", cfg, TILES, keep_data)}
        if self.patch is not None:
            cells = {role: cells_as_pairs(sp) for role, sp in splits.items()}
            ckpts[PATCH_MODEL] = train_on(
                cells, fold_dir / PATCH_DIR / "cells.npz", fold_dir / "patch_model.pt",
                self.patch.config(cfg), PATCHES, keep_data,
            )  # fmt: skip
        return ckpts

    def score(
        self, ckpts: dict[str, Path], splits: dict[str, Split], cfg: TrainConfig
    ) -> tuple[dict[str, FoldLevel], dict[str, dict[str, Any]]]:
        """Maps of every model on val and test, the networks calibrated; each level."""
        from damagenet.training.tasks import PixelTask

        dev = resolve_device(cfg.device)
        loaded = {m: load_checkpoint(c, map_location=dev) for m, c in ckpts.items()}
        batch = PixelTask().eval_batch(cfg.eval_batch_size, splits["test"].before.shape[-1])
        maps = model_maps(
            splits, loaded[PIXEL_MODEL], loaded.get(PATCH_MODEL), dev, batch, cfg.seed
        )
        native: dict[str, Level] = {PIXEL_MODEL: PixelLevel(), PATCH_MODEL: CellLevel()}
        calibs = {m: calibrate(maps, m, native[m], splits["val"], c) for m, c in ckpts.items()}
        out = {}
        for level in levels_for():
            scored = score_level(level, splits, maps, cfg.threshold_rule, {})
            if isinstance(scored, LevelScores):
                u = scored.units
                out[level.name] = _fold_level(splits["test"], u.tile, u.y, scored.models)
        return out, calibs


def calibrate(
    maps: dict[str, dict[str, ScoreMap]], model: str, level: Level, val: Split, ckpt: Path
) -> dict[str, Any]:
    """Fit ``model``'s temperature on the validation units of its own level, store it in its
    checkpoint, and calibrate its maps with it."""
    units = level.units(val)
    calib = fit_temperature(logit(level.scores(units, maps[model]["val"])), units.y)
    store_calibration(ckpt, calib)
    maps[model] = {
        s: ScoreMap(apply_calibration(m.values, calib), m.cell) for s, m in maps[model].items()
    }
    return calib
