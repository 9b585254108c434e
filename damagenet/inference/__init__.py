"""Scoring scene windows with one model or an ensemble."""
