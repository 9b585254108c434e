"""Radar + optical fusion: the standardisation and sum by hand, the learned model's behaviour."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from damagenet.radar.fusion import NullStats, fit_learned, training_free


def test_null_standardisation_by_hand():
    null = NullStats.of(np.array([1.0, 3.0, np.nan, 2.0, 2.0]))
    assert null.mean == pytest.approx(2.0)
    assert null.sd == pytest.approx(np.sqrt(0.5))  # population sd of 1, 3, 2, 2
    np.testing.assert_allclose(
        null.z(np.array([2.0, 4.0, np.nan])), [0.0, 2 / np.sqrt(0.5), np.nan]
    )
    with pytest.raises(ValueError, match="two different"):
        NullStats.of(np.array([1.0, 1.0]))


def test_training_free_sum_counts_a_missing_sensor_as_zero():
    radar = np.array([1.5, 2.0, np.nan, np.nan])
    optical = np.array([0.5, np.nan, -1.0, np.nan])
    np.testing.assert_allclose(training_free([radar, optical]), [2.0, 2.0, -1.0, np.nan])


def test_learned_fusion_uses_both_sensors_and_missing_optics():
    rng = np.random.default_rng(0)
    n = 4000
    y = rng.random(n) < 0.2
    radar = y * 1.0 + rng.normal(0, 1, n)
    optical = y * 1.0 + rng.normal(0, 1, n)
    optical[rng.random(n) < 0.3] = np.nan  # cloud
    X = np.column_stack([radar, optical])
    half = n // 2
    model = fit_learned(X[:half], y[:half], seed=0)
    p = model.scores(X[half:])
    fused, alone = roc_auc_score(y[half:], p), roc_auc_score(y[half:], radar[half:])
    assert fused > alone + 0.03
    again = fit_learned(X[:half], y[:half], seed=0).scores(X[half:])
    np.testing.assert_array_equal(p, again)
    with pytest.raises(ValueError, match="damaged and intact"):
        fit_learned(X[:10], np.zeros(10))


def test_learned_fusion_leaves_out_a_feature_never_seen():
    rng = np.random.default_rng(1)
    y = rng.random(500) < 0.3
    X = np.column_stack([y + rng.normal(0, 0.5, 500), np.full(500, np.nan)])  # all clouded
    model = fit_learned(X, y)
    assert model.columns == (0,)
    assert roc_auc_score(y, model.scores(X)) > 0.8
    with pytest.raises(ValueError, match="every feature is missing"):
        fit_learned(X[:, 1:], y)
