"""The model package's user-facing exception."""

from __future__ import annotations


class DamagenetError(Exception):
    """Bad input (dataset, checkpoint, rasters) with a message meant for the user."""
