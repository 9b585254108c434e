"""Baselines and their scores on arrays where the answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score
from support.model_data import planted

from damagenet.data.pairs import Split
from damagenet.evaluation.baselines import baseline_scores, change_magnitude, patch_features
from damagenet.evaluation.scores import (
    Scored,
    average_precision,
    f1_at,
    precision_at,
    recall_at,
    roc_auc,
    score_model,
    threshold_for_precision,
)


def test_change_magnitude_is_the_largest_pixel_change():
    before = np.full((2, 4, 8, 8), 1000, dtype=np.uint16)
    after = before.copy()
    after[1, :, 3, 4] += 1000  # +0.1 reflectance on every band of one pixel
    after[1, 0, 0, 0] += 400  # +0.04 on one band: mean over bands 0.01
    assert change_magnitude(before, after) == pytest.approx([0.0, 0.1])


def test_features_are_finite_and_fixed_width():
    rng = np.random.default_rng(0)
    xb, xa, _ = planted(6, rng, size=8)
    f = patch_features(xb, xa)
    assert f.shape[0] == 6 and f.shape[1] == patch_features(xb[:1], xa[:1]).shape[1]
    assert np.isfinite(f).all()


def test_both_baselines_separate_planted_change():
    rng = np.random.default_rng(1)
    splits = {s: Split(*planted(n, rng)) for s, n in (("train", 120), ("val", 40), ("test", 60))}
    scores = baseline_scores(splits, seed=0)
    y = splits["test"].y
    assert roc_auc_score(y, scores["change"]["test"]) > 0.95
    assert roc_auc_score(y, scores["gbt"]["test"]) > 0.95
    assert set(scores["gbt"]) == {"val", "test"}


def test_fast_ranking_metrics_match_sklearn_with_ties():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200) + 0.4 * y, 1)  # many ties
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert average_precision(y, s) == pytest.approx(average_precision_score(y, s))


def test_weighted_metrics_match_sklearn_and_repeated_units():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 150)
    s = np.round(rng.random(150) + 0.3 * y, 1)
    w = rng.integers(1, 4, 150).astype(float)
    assert roc_auc(y, s, w) == pytest.approx(roc_auc_score(y, s, sample_weight=w))
    assert average_precision(y, s, w) == pytest.approx(
        average_precision_score(y, s, sample_weight=w)
    )
    rep_y, rep_s = np.repeat(y, w.astype(int)), np.repeat(s, w.astype(int))
    for metric in (f1_at(0.8), precision_at(0.8), recall_at(0.8)):
        assert metric(y, s, w) == pytest.approx(metric(rep_y, rep_s))


def test_score_model_reports_every_figure_with_interval():
    y = np.array([0] * 50 + [1] * 50)
    s = np.r_[np.linspace(0, 0.6, 50), np.linspace(0.4, 1, 50)]
    thr = threshold_for_precision(y, s, 0.8)
    groups = np.arange(100) % 10
    out = score_model(y, Scored(s, 0.5, thr), groups, n_boot=100)
    for key in ("roc_auc", "pr_auc", "f1", "precision", "recall", "recall_at_precision"):
        assert set(out[key]) == {"value", "low", "high"}
        assert out[key]["low"] <= out[key]["value"] <= out[key]["high"]
    assert out["precision_at_precision_threshold"]["value"] >= 0.8
    assert out["f1"]["value"] == pytest.approx(f1_at(0.5)(y, s))
    assert out["pairs"] == 100 and out["damaged"] == 50 and out["threshold"] == 0.5


def test_evaluate_reports_baselines_and_calibration(tmp_path):
    import json

    import torch
    from support.model_data import write_study_npz

    from damagenet.data.pairs import Normalisation
    from damagenet.evaluation.evaluate import evaluate
    from damagenet.models.checkpoint import save_checkpoint
    from damagenet.models.siamese_resnet import SiameseResNet

    npz = write_study_npz(tmp_path / "d.npz", sizes=(64, 32, 40))
    torch.manual_seed(0)
    save_checkpoint(
        tmp_path / "m.pt",
        SiameseResNet("resnet18").eval(),
        patch_size=16,
        norm=Normalisation([0.15] * 4, [0.05] * 4),
        threshold={"value": 0.5, "rule": "f1"},
        history=[],
        dataset={},
    )
    metrics = evaluate(npz, tmp_path / "m.pt", tmp_path / "out", device="cpu", n_boot=200)
    assert set(metrics["baselines"]) == {"siamese", "change", "gbt"}
    assert set(metrics["paired_differences"]) == {"siamese - change", "siamese - gbt"}
    diff = metrics["paired_differences"]["siamese - change"]["roc_auc"]
    assert diff["value"] == pytest.approx(
        metrics["baselines"]["siamese"]["roc_auc"]["value"]
        - metrics["baselines"]["change"]["roc_auc"]["value"]
    )
    assert metrics["interval"]["by"] == "aoi" and metrics["interval"]["groups"] == 2
    assert metrics["baselines"]["change"]["roc_auc"]["value"] > 0.95
    assert metrics["baselines"]["siamese"]["threshold"] == 0.5  # the checkpoint's own
    assert 0 <= metrics["calibration"]["raw"]["ece"] <= 1
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["calibration"]["calibration"]["method"] == "temperature"
    for png in ("roc_models.png", "reliability.png"):
        assert (tmp_path / "out" / png).stat().st_size > 1000
