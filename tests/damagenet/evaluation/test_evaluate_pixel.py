"""The pixel model in evaluate and crossval: levels, per-pixel baselines, kinds, tiny tile data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from contract.labels import UNKNOWN
from contract.npz_keys import DATASET_KIND, TILES
from damagenet.cli import main
from damagenet.data.pairs import Normalisation, Split
from damagenet.data.tiles import load_tiles
from damagenet.evaluation import pixel_baselines
from damagenet.evaluation.calibration import apply_calibration
from damagenet.evaluation.levels import CellLevel, PixelLevel, PointLevel, ScoreMap, sites
from damagenet.evaluation.pixel_baselines import N_FEATURES, pixel_baseline_maps, pixel_features
from damagenet.evaluation.scores import roc_auc
from damagenet.models.checkpoint import save_checkpoint
from damagenet.models.siamese_resnet import SiameseResNet
from damagenet.training.config import TrainConfig
from damagenet.training.train import train

SIZE = 32


def _site(y: np.ndarray, after: np.ndarray, r: int, c: int) -> None:
    """A damaged site as ``pipeline targets`` draws it: a 1 px disc, a 3 px unknown ring."""
    rr, cc = np.mgrid[:SIZE, :SIZE]
    d2 = (rr - r) ** 2 + (cc - c) ** 2
    y[(d2 <= 9) & (y != 1)] = UNKNOWN
    disc = d2 <= 1
    y[disc] = 1
    after[:3, disc] += 1500
    after[3, disc] *= 0.5


def _tile(rng: np.random.Generator, n_sites: int) -> tuple[np.ndarray, ...]:
    base = rng.integers(500, 2500, size=(4, 1, 1)).astype(np.float64)
    before = base * (1 + 0.1 * rng.standard_normal((4, SIZE, SIZE)))
    after = before + 30 * rng.standard_normal((4, SIZE, SIZE))
    y = np.zeros((SIZE, SIZE), dtype=np.uint8)
    for _ in range(n_sites):
        r, c = rng.integers(4, SIZE - 4, size=2)
        _site(y, after, r, c)
    return before, after, y


def _split(aois: list[str], per_aoi: int, offset: int, rng: np.random.Generator) -> dict:
    """War tiles with sites on most, a cloud on one, and pre-war twins of the first two."""
    parts: dict[str, list] = {k: [] for k in ("Xb", "Xa", "y", "aoi", "row", "col", "prewar")}
    for aoi in aois:
        for i in range(per_aoi):
            b, a, y = _tile(rng, n_sites=int(i % 3 != 2) + int(i % 4 == 0))
            if i == 1:  # a cloud: unobserved in 'before', unknown in the target
                b[:, 20:26, 20:26], y[20:26, 20:26] = 0, UNKNOWN
            row, col = offset + SIZE * (i // 4), SIZE * (i % 4)
            tiles = [(b, a, y, 0)]
            if i < 2:  # the same place on two dates before the war: all negative
                tiles.append((b, b + 30 * rng.standard_normal(b.shape), (y == UNKNOWN) * y, 1))
            for tb, ta, ty, pre in tiles:
                for k, v in zip(parts, (tb, ta, ty, aoi, row, col, pre), strict=True):
                    parts[k].append(v)
    out = {k: np.array(v) for k, v in parts.items()}
    out["Xb"], out["Xa"] = (np.clip(out[k], 0, 10000).astype(np.uint16) for k in ("Xb", "Xa"))
    out["y"], out["prewar"] = out["y"].astype(np.uint8), out["prewar"].astype(np.uint8)
    out["lat"] = 50.5 - out["row"] * 10 / 111_320
    out["lon"] = 30.2 + out["col"] * 10 / (111_320 * np.cos(np.deg2rad(50.5)))
    return out


def write_tile_dataset(path: Path, roles: dict[str, list[str]], per_aoi: int = 8) -> Path:
    """A tile dataset in ``pipeline dataset --tile-size`` layout (kind, provenance, pre-war)."""
    rng = np.random.default_rng(0)
    arrays: dict[str, np.ndarray] = {DATASET_KIND: np.array(TILES)}
    for i, (split, aois) in enumerate(roles.items()):
        arrays |= {f"{k}_{split}": v for k, v in _split(aois, per_aoi, 1000 * i, rng).items()}
    np.savez(path, **arrays)
    return path


ROLES = {"train": ["a", "b"], "val": ["c"], "test": ["d"]}


def _cfg(**kw) -> TrainConfig:
    settings = dict(
        arch="siamese-unet", width=4, epochs=1, patience=1, batch_size=8, lr_backbone=3e-3,
        lr_head=3e-3, threshold_rule="f1", progress=False, threads=1, device="cpu",
    )  # fmt: skip
    return TrainConfig(**(settings | kw))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pixel_eval")
    npz = write_tile_dataset(folder / "tiles.npz", ROLES)
    train(npz, folder / "run", folder / "unet.pt", _cfg(), run_evaluation=False)
    return folder, npz


def test_cells_are_damaged_labelled_or_unknown_and_scored_by_their_maximum():
    y = np.zeros((1, SIZE, SIZE), dtype=np.uint8)
    y[0, :16, 16:] = UNKNOWN  # cell (0, 1): nothing labelled
    y[0, 20, 5] = 1  # cell (1, 0): damaged
    before = np.full((1, 4, SIZE, SIZE), 1000, dtype=np.uint16)
    before[0, :, 30, 30] = 0  # cell (1, 1): a pixel unobserved
    split = Split(before, before.copy(), y)
    units = CellLevel().units(split)
    assert list(zip(units.row, units.col, units.y, strict=True)) == [(0, 0, 0), (1, 0, 1)]
    values = np.zeros((1, SIZE, SIZE))
    values[0, 3, 4], values[0, 31, 0] = 0.7, 0.9
    assert CellLevel().scores(units, ScoreMap(values)).tolist() == [0.7, 0.9]
    px = PixelLevel().units(split)
    assert len(px.y) == SIZE * SIZE - 16 * 16 - 1 and px.y.sum() == 1


def test_far_points_on_built_up_ground_come_first_and_are_counted():
    """The point level tells negatives on built-up ground (harder than fields) by the rule
    ``pipeline dataset`` draws hard negatives with (contract.built_up)."""
    grass = np.array([380, 680, 420, 3700], dtype=np.uint16)[:, None, None]
    before = np.broadcast_to(grass, (4, SIZE, SIZE)).copy()
    roof = np.array([1150, 1220, 1260, 1500], dtype=np.uint16)[:, None, None]
    board = (np.add.outer(np.arange(16), np.arange(16)) // 2) % 2 == 1  # roofs among trees
    before[:, 16:, 16:] = np.where(board, grass, roof)  # the lower right cell is a town
    split = Split(before[None], before[None].copy(), np.zeros((1, SIZE, SIZE), np.uint8))
    units = PointLevel().units(split)
    assert units.counts["far_negatives"] == 4 and units.counts["far_negatives_built_up"] == 1
    assert (units.row[0], units.col[0]) == (24, 24) and units.y.sum() == 0


def test_sites_prewar_twins_and_far_points():
    rng = np.random.default_rng(1)
    b, a, y = _tile(rng, 0)
    _site(y, a, 10, 12)
    _site(y, a, 22, 5)
    prewar_y = np.zeros_like(y)
    split = Split(
        np.stack([b, b]).astype(np.uint16), np.stack([a, b]).astype(np.uint16),
        np.stack([y, prewar_y]), np.array(["x", "x"]), np.array([0, 0]), np.array([0, 0]),
        prewar=np.array([0, 1]),
    )  # fmt: skip
    t, r, c = sites(split.y[:1])
    assert sorted(zip(r.tolist(), c.tolist(), strict=True)) == [(10, 12), (22, 5)]
    units = PointLevel().units(split)
    assert units.counts["sites"] == 2 and units.counts["prewar_negatives"] == 2
    assert units.counts["far_negatives"] >= 1
    assert (units.tile[units.y == 1] == 0).all() and (units.tile[:4][2:] == 1).all()
    values = np.zeros((2, SIZE, SIZE))
    values[0, 11, 13] = 0.8  # diagonal neighbour of a site: inside its 3 x 3 window
    scores = PointLevel().scores(units, ScoreMap(values))
    assert 0.8 in scores[units.y == 1].tolist() and scores[units.y == 0].max() == 0
    cells = np.full((2, SIZE, SIZE), 0.2)
    cells[:, :16, :16] = 0.6  # a patch model's map: one score per 16 px cell
    cell_map = ScoreMap(cells, cell=16)
    assert PointLevel().scores(units, cell_map)[:2].tolist() == [0.6, 0.2]  # its patch


def test_pixel_baselines_separate_planted_damage(tmp_path, monkeypatch):
    monkeypatch.setattr(pixel_baselines, "MAX_TRAIN_PIXELS", 4000)  # a sample of the pixels
    splits = load_tiles(write_tile_dataset(tmp_path / "t.npz", ROLES, per_aoi=6))
    feats = pixel_features(splits["test"].before[:2], splits["test"].after[:2])
    assert feats.shape == (2, N_FEATURES, SIZE, SIZE) and np.isfinite(feats).all()
    maps = pixel_baseline_maps(splits, seed=0)
    units = PixelLevel().units(splits["test"])
    for name in ("change", "gbt"):
        assert maps[name]["test"].shape == splits["test"].y.shape
        assert roc_auc(units.y, PixelLevel().scores(units, ScoreMap(maps[name]["test"]))) > 0.95


def _patch_ckpt(path: Path) -> Path:
    torch.manual_seed(0)
    save_checkpoint(
        path, SiameseResNet("resnet18").eval(), patch_size=16,
        norm=Normalisation([0.15] * 4, [0.05] * 4), threshold={"value": 0.5, "rule": "f1"},
        history=[], dataset={},
    )  # fmt: skip
    return path


def test_evaluate_scores_the_pixel_model_at_three_levels_beside_the_others(trained, tmp_path):
    folder, npz = trained
    patch = _patch_ckpt(tmp_path / "patch.pt")
    args = ["-q", "evaluate", "--npz", str(npz), "--ckpt", str(folder / "unet.pt")]
    args += ["--out", str(tmp_path / "e"), "--n-boot", "50", "--patch-ckpt", str(patch)]
    assert main(args) == 0
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert (
        m["level"] == "pixel"
        and m["test_pixels"] == m["levels"]["pixel"]["scores"]["pixel"]["pixels"]
    )
    assert m["interval"]["by"] == "block" and m["interval"]["groups"] >= 2  # one test AOI
    assert m["patch_checkpoint"]["path"] == str(patch)
    for level, unit in (("pixel", "pixels"), ("patch", "cells"), ("point", "points")):
        entry = m["levels"][level]
        assert set(entry["scores"]) == {"pixel", "patch", "change", "gbt"}
        assert {"pixel - change", "pixel - gbt", "pixel - patch", "patch - gbt"} <= set(
            entry["paired_differences"]
        )
        assert entry["scores"]["change"]["roc_auc"]["value"] > 0.9
        assert entry["scores"]["change"][unit] > 0
        assert (tmp_path / "e" / f"roc_models_{level}.png").exists()
    for png in ("confusion_matrix_threshold.png", "roc_curve.png", "pr_curve.png"):
        assert (tmp_path / "e" / png).stat().st_size > 1000
    assert m["levels"]["point"]["prewar_negatives"] > 0
    assert m["levels"]["patch"]["scores"]["patch"]["threshold"] == 0.5  # its own, at its level


def test_models_and_datasets_of_other_kinds_are_refused(trained, tmp_path, capsys):
    from support.model_data import write_study_npz

    folder, npz = trained
    patches = write_study_npz(tmp_path / "p.npz", sizes=(16, 8, 8))
    patch = _patch_ckpt(tmp_path / "patch.pt")
    cases = [
        (patches, folder / "unet.pt", [], "is a patches dataset"),
        (npz, patch, [], "is a tiles dataset"),
        (npz, folder / "unet.pt", ["--patch-ckpt", str(folder / "unet.pt")], "give a patch"),
    ]
    for data, ckpt, extra, message in cases:
        args = ["evaluate", "--npz", str(data), "--ckpt", str(ckpt), "--out", str(tmp_path / "x")]
        assert main(args + extra) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "x").exists()


def test_crossval_on_a_tile_dataset_with_the_patch_model_beside(tmp_path):
    roles = {"train": ["a"], "val": ["b"], "test": ["c"]}
    npz = write_tile_dataset(tmp_path / "t.npz", roles, per_aoi=4)
    out = tmp_path / "cv"
    args = ["-q", "crossval", "--npz", str(npz), "--k", "3", "--out", str(out), "--epochs", "1"]
    args += ["--batch-size", "8", "--device", "cpu", "--n-boot", "30", "--lr-backbone", "3e-3"]
    args += ["--backbone", "resnet18", "--with-patch-model"]
    assert main(args + ["--patch-epochs", "2", "--patch-batch-size", "16"]) == 0
    rep = json.loads((out / "crossval.json").read_text())
    assert rep["kind"] == "tiles" and rep["arch"] == "siamese-unet"
    assert set(rep["levels"]) == {"pixel", "patch", "point"}
    assert rep["pooled"] == rep["levels"]["pixel"]["pooled"]
    assert set(rep["pooled"]) == {"pixel", "patch", "change", "gbt"}
    assert sorted(rep["per_aoi"]) == ["a", "b", "c"]
    assert set(rep["paired_differences"]) == {
        "pixel - patch", "pixel - change", "pixel - gbt", "patch - change", "patch - gbt",
    }  # fmt: skip
    assert rep["levels"]["patch"]["pooled"]["patch"]["cells"] > 0
    assert rep["folds"][0]["patch"]["calibration"]["method"] == "temperature"
    assert "### point level" in (out / "crossval.md").read_text()
    preds = np.load(out / "predictions.npz")
    assert len(preds["y"]) == rep["pooled"]["pixel"]["pixels"]
    assert (out / "predictions_point.npz").exists() and (out / "roc_models_patch.png").exists()
    payload = torch.load(rep["folds"][0]["checkpoint"], weights_only=True)
    assert payload["calibration"]["method"] == "temperature"
    # the map threshold moved through the calibration: the same operating point
    t = payload["threshold"]
    assert t["value"] == pytest.approx(
        apply_calibration(np.array([t["uncalibrated"]]), payload["calibration"])[0]
    )
    assert payload["card"]["threshold"]["value"] == t["value"]
    _each_model_trained_on_its_own_schedule(out, rep["folds"][0])


def _each_model_trained_on_its_own_schedule(out: Path, fold: dict) -> None:
    """The patch model got its own epochs and batch (its defaults the patch network's, the
    study's learning rates), and neither model's log overwrote the other's."""
    assert fold["training"] == {
        "epochs": 1, "batch_size": 8, "patience": 10, "lr_backbone": 3e-3, "lr_head": 1e-3,
        "epochs_run": 1, "best_epoch": 1,
    }  # fmt: skip
    patch = fold["patch"]["training"]
    d = TrainConfig()
    assert (patch["epochs"], patch["batch_size"], patch["patience"]) == (2, 16, d.patience)
    assert (patch["lr_backbone"], patch["lr_head"]) == (d.lr_backbone, d.lr_head)
    assert fold["patch"]["checkpoint"] == str(out / "fold0" / "patch_model.pt")
    for ckpt, folder, epochs in (("model.pt", "fold0", 1), ("patch_model.pt", "fold0/patch", 2)):
        payload = torch.load(out / "fold0" / ckpt, weights_only=True)
        recipe = payload["card"]["training"]["recipe"]
        assert recipe["epochs"] == epochs and len(payload["history"]) == epochs
        with open(out / folder / "train_log.csv") as fh:
            log = list(csv.DictReader(fh))
        assert [float(r["val_loss"]) for r in log] == pytest.approx(
            [h["val_loss"] for h in payload["history"]]
        )
        summary = json.loads((out / folder / "train_summary.json").read_text())
        assert summary["epochs_run"] == epochs
