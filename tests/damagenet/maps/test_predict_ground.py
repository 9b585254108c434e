"""Honest maps: training ground of the checkpoint, split raster, held-out metrics (issue 15)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch
from support.map_data import mean_blue, write_pair

from damagenet.data.pairs import Normalisation
from damagenet.maps.predict import PredictOptions, predict_map
from damagenet.models.checkpoint import save_checkpoint
from damagenet.models.siamese_resnet import SiameseResNet

H, W, S = 200, 240, 16


def _ground() -> dict:
    """Patches on a 16 px grid: columns < 64 px train, < 112 px validation, the rest test."""
    rc = np.array([(r, c) for r in range(0, H - S + 1, S) for c in range(0, W - S + 1, S)])
    parts = {
        "train": rc[rc[:, 1] < 64],
        "val": rc[(rc[:, 1] >= 64) & (rc[:, 1] < 112)],
        "test": rc[(rc[:, 1] >= 112) & (rc[:, 0] < 160)],
    }  # rows >= 160: never seen
    return {
        "patch_size": S,
        "aois": {"bigtown": {k: torch.tensor(v, dtype=torch.int32) for k, v in parts.items()}},
    }


def _ckpt(path, aois_ground):
    save_checkpoint(
        path,
        SiameseResNet("resnet18").eval(),
        patch_size=S,
        norm=Normalisation([0.1] * 4, [0.05] * 4),
        threshold={"value": 0.5, "rule": "fixed"},
        history=[],
        dataset={"sha256": "0" * 64},
        extra={"training_ground": aois_ground},
    )
    return path


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return write_pair(tmp_path_factory.mktemp("ground"), H, W)


def test_split_raster_and_metrics_on_the_test_part_only(tmp_path, pair):
    ckpt = _ckpt(tmp_path / "trained.pt", _ground())
    out = tmp_path / "m" / "bigtown_damage_prob.tif"
    s = predict_map(
        pair["before"],
        pair["after"],
        ckpt,
        out,
        PredictOptions(stride=8, progress=False),
        labels=pair["labels"],
        scorer=mean_blue,
    )
    split_path = tmp_path / "m" / "bigtown_damage_split.tif"
    assert s["outputs"]["split"] == str(split_path)
    with rasterio.open(split_path) as src, rasterio.open(out) as prob_src:
        split = src.read(1)
        prob = prob_src.read(1)
        assert (src.crs, src.transform) == (prob_src.crs, prob_src.transform)
        assert src.nodata == 255 and src.descriptions == ("training_split",)
        assert src.dtypes[0] == "uint8" and src.colormap(1)[3][:3] == (27, 158, 119)
    assert (split[prob == -9999] == 255).all() and (split[prob != -9999] != 255).all()
    assert split[100, 50] == 1 and split[100, 80] == 2 and split[100, 200] == 3
    assert split[180, 200] == 0  # rows below the test patches: never seen
    assert split[5, 5] == 255  # the nodata corner
    assert s["training_ground"]["status"] == "training_aoi"
    assert s["training_ground"]["patches"] == {"train": 48, "val": 36, "test": 80}
    # brute force: windows with known labels, their part by train > val > test precedence
    with rasterio.open(pair["labels"]) as src:
        labels = src.read(1)
    rows = list(range(0, H - S + 1, 8)) + ([H - S] if (H - S) % 8 else [])
    cols = list(range(0, W - S + 1, 8)) + ([W - S] if (W - S) % 8 else [])
    n_test = n_train = 0
    for r in rows:
        for c in cols:
            win, lab = split[r : r + S, c : c + S], labels[r : r + S, c : c + S]
            if (win == 255).any() or (lab == 255).any():
                continue
            n_train += bool((win == 1).any())
            n_test += bool((win == 3).any() and not ((win == 1) | (win == 2)).any())
    assert s["patch_metrics"]["windows"] == n_test > 0
    parts = s["patch_metrics_by_part"]
    assert parts["train (seen in training, optimistic)"]["windows"] == n_train > 0
    assert parts["test"] == s["patch_metrics"]
    assert "test part only" in s["patch_metrics_ground"]
    by_part = s["agreement_pixels_by_part"]
    total = {k: sum(p[k] for p in by_part.values()) for k in s["agreement_pixels"]}
    assert total == s["agreement_pixels"]
    assert json.loads((tmp_path / "m" / "bigtown_damage_summary.json").read_text()) == s


def test_a_map_over_an_aoi_the_model_never_saw_says_so(tmp_path, pair):
    ground = _ground()
    ground["aois"] = {"othertown": ground["aois"]["bigtown"]}
    ckpt = _ckpt(tmp_path / "other.pt", ground)
    out = tmp_path / "n" / "bigtown_damage_prob.tif"
    s = predict_map(
        pair["before"],
        pair["after"],
        ckpt,
        out,
        PredictOptions(stride=16, progress=False),
        labels=pair["labels"],
        scorer=mean_blue,
    )
    assert s["training_ground"]["status"] == "never_seen"
    assert "never saw" in s["training_ground"]["note"]
    assert s["training_ground"]["trained_on"] == ["othertown"]
    assert not (tmp_path / "n" / "bigtown_damage_split.tif").exists()
    assert "split" not in s["outputs"] and "patch_metrics_by_part" not in s
    assert s["patch_metrics"]["windows"] > 0
