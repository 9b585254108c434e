"""Calibration error, reliability, temperature and isotonic fits on toys with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from damagenet.evaluation.calibration import (
    apply_calibration,
    calibration_report,
    expected_calibration_error,
    fit_calibration,
    fit_temperature,
    nll,
    reliability_plot,
)


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_ece_of_a_perfectly_calibrated_toy_is_zero():
    probs, ys = [], []
    for p in np.arange(0.05, 1.0, 0.1):  # one value per bin, exactly that share damaged
        probs.append(np.full(100, p))
        ys.append(np.r_[np.ones(round(p * 100)), np.zeros(100 - round(p * 100))])
    assert expected_calibration_error(np.concatenate(ys), np.concatenate(probs)) < 1e-9


def test_ece_of_an_overconfident_toy_is_large():
    y = np.r_[np.ones(50), np.zeros(50)]
    assert expected_calibration_error(y, np.full(100, 0.99)) == pytest.approx(0.49)


def test_temperature_scaling_undoes_overconfidence():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, 4000)
    y = (rng.random(4000) < _sigmoid(z)).astype(float)
    logits = 3 * z  # three times too confident
    calib = fit_temperature(logits, y)
    assert calib["method"] == "temperature" and calib["T"] == pytest.approx(3, rel=0.15)
    fixed = apply_calibration(logits, calib, logits=True)
    assert nll(y, fixed) < nll(y, _sigmoid(logits)) - 0.05
    assert expected_calibration_error(y, fixed) < expected_calibration_error(y, _sigmoid(logits))


def test_apply_calibration_on_probabilities_equals_on_logits():
    z = np.linspace(-4, 4, 9)
    calib = {"method": "temperature", "T": 2.0}
    assert apply_calibration(_sigmoid(z), calib) == pytest.approx(
        apply_calibration(z, calib, logits=True)
    )
    assert apply_calibration(_sigmoid(z), None) == pytest.approx(_sigmoid(z))
    with pytest.raises(ValueError):
        apply_calibration(z, {"method": "platt"})


def test_isotonic_is_monotone_and_plain_data():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2, 500)
    y = (rng.random(500) < _sigmoid(z)).astype(float)
    calib = fit_calibration(3 * z, y, "isotonic")
    assert all(isinstance(v, float) for v in calib["x"] + calib["y"])
    out = apply_calibration(np.linspace(0, 1, 50), calib)
    assert np.all(np.diff(out) >= 0) and out.min() >= 0 and out.max() <= 1


def test_report_and_diagram(tmp_path):
    rng = np.random.default_rng(2)
    z = rng.normal(0, 2, 600)
    y = (rng.random(600) < _sigmoid(z)).astype(float)
    rep = calibration_report(y[:300], 3 * z[:300], y[300:], 3 * z[300:])
    assert rep["temperature"]["ece"] < rep["raw"]["ece"]
    assert rep["calibration"]["method"] == "temperature"
    reliability_plot(y, {"raw": _sigmoid(z)}, tmp_path / "reliability.png")
    assert (tmp_path / "reliability.png").stat().st_size > 1000
