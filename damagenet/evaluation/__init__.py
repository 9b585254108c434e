"""Honest evaluation: metrics, baselines, calibration, model comparison and cross-validation."""
