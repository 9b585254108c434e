"""Are the map's probabilities probabilities? Calibration error, and fixing it on validation.

A network trained on balanced pairs, early-stopped on loss, is rarely calibrated: its 0.9 need
not mean nine in ten. Expected calibration error (ECE, equal-width bins) and a reliability
diagram measure it on test; two fits on *validation* can correct it:

- temperature scaling, ``sigmoid(logit / T)``: one number, keeps the ranking (ROC-AUC
  unchanged), the default;
- isotonic regression: a monotone step function of the probability, more flexible, can merge
  close scores into ties.

A fit is a small plain dict (``{"method": "temperature", "T": 1.7}`` or ``{"method":
"isotonic", "x": [...], "y": [...]}``) that a checkpoint carries under ``calibration`` and
:func:`apply_calibration` applies to probabilities or logits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.isotonic import IsotonicRegression

from damagenet.logits import logit, sigmoid

METHODS = ("temperature", "isotonic")
_EPS = 1e-7


def nll(y: np.ndarray, prob: np.ndarray) -> float:
    """Mean negative log-likelihood (binary cross-entropy) of the probabilities."""
    p = np.clip(np.asarray(prob, dtype=np.float64), _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def reliability(
    y: np.ndarray, prob: np.ndarray, bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin: mean predicted probability, observed damage rate, pair count."""
    prob = np.asarray(prob, dtype=np.float64)
    idx = np.minimum((prob * bins).astype(int), bins - 1)
    count = np.bincount(idx, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(idx, weights=prob, minlength=bins) / count
        rate = np.bincount(idx, weights=np.asarray(y, dtype=np.float64), minlength=bins) / count
    return conf, rate, count


def expected_calibration_error(y: np.ndarray, prob: np.ndarray, bins: int = 10) -> float:
    """Pair-weighted mean |observed rate - mean probability| over equal-width bins."""
    conf, rate, count = reliability(y, prob, bins)
    used = count > 0
    return float(np.sum(count[used] * np.abs(rate[used] - conf[used])) / count.sum())


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """The temperature minimising validation NLL of ``sigmoid(logits / T)``."""
    z = np.asarray(logits, dtype=np.float64)
    res = minimize_scalar(
        lambda log_t: nll(y, sigmoid(z / np.exp(log_t))),
        bounds=(np.log(0.05), np.log(20.0)),
        method="bounded",
    )
    return {"method": "temperature", "T": float(np.exp(res.x))}


def fit_isotonic(prob: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """A monotone map of probability to damage rate, stored as its breakpoints."""
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    iso.fit(np.asarray(prob, dtype=np.float64), y)
    return {"method": "isotonic", "x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}


def fit_calibration(
    logits: np.ndarray, y: np.ndarray, method: str = "temperature"
) -> dict[str, Any]:
    if method == "temperature":
        return fit_temperature(logits, y)
    if method == "isotonic":
        return fit_isotonic(sigmoid(logits), y)
    raise ValueError(f"calibration method must be one of {METHODS}, got {method!r}")


def apply_calibration(
    probs_or_logits: np.ndarray, calib: dict[str, Any] | None, logits: bool = False
) -> np.ndarray:
    """Calibrated probabilities from probabilities (default) or logits (``logits=True``).

    ``calib`` None returns the probabilities unchanged, so callers need no branch for
    uncalibrated checkpoints.
    """
    x = np.asarray(probs_or_logits, dtype=np.float64)
    if calib is None:
        return sigmoid(x) if logits else x
    method = calib.get("method")
    if method == "temperature":
        z = x if logits else logit(x)
        return sigmoid(z / float(calib["T"]))
    if method == "isotonic":
        p = sigmoid(x) if logits else x
        return np.interp(
            p, np.asarray(calib["x"], dtype=np.float64), np.asarray(calib["y"], dtype=np.float64)
        )
    raise ValueError(f"unknown calibration method {method!r}; expected one of {METHODS}")


def calibration_report(
    y_val: np.ndarray,
    logits_val: np.ndarray,
    y_test: np.ndarray,
    logits_test: np.ndarray,
    bins: int = 10,
) -> dict[str, Any]:
    """ECE and NLL on test, raw and after each fit on validation; the temperature fit is the
    one to store (it keeps the ranking)."""
    out: dict[str, Any] = {
        "bins": bins,
        "fitted_on": "val",
        "raw": _quality(y_test, sigmoid(logits_test), bins),
    }
    for method in METHODS:
        calib = fit_calibration(logits_val, y_val, method)
        prob = apply_calibration(logits_test, calib, logits=True)
        out[method] = {**_quality(y_test, prob, bins), "fit": calib}
    out["calibration"] = out["temperature"]["fit"]
    return out


def _quality(y: np.ndarray, prob: np.ndarray, bins: int) -> dict[str, float]:
    return {"ece": expected_calibration_error(y, prob, bins), "nll": nll(y, prob)}


def reliability_plot(
    y: np.ndarray, probs: dict[str, np.ndarray], path: str | Path, bins: int = 10
) -> None:
    """Observed damage rate against mean predicted probability per bin, one line per curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=0.8, label="perfectly calibrated")
    for name, prob in probs.items():
        conf, rate, count = reliability(y, prob, bins)
        used = count > 0
        ece = expected_calibration_error(y, prob, bins)
        ax.plot(conf[used], rate[used], "o-", ms=3, label=f"{name} (ECE {ece:.3f})")
    ax.set_xlabel("mean predicted damage probability")
    ax.set_ylabel("observed damage rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
