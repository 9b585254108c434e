"""The model package's failure kinds, each a :class:`DamagenetError` and the matching built-in."""

from __future__ import annotations

from contract.errors import UserError


class DamagenetError(UserError):
    """Bad input (dataset, checkpoint, rasters) with a message meant for the user."""


class DamagenetUsageError(DamagenetError, ValueError):
    """An option value that is malformed or out of range, or a named input that is missing."""

    exit_code = 2


class InputFileError(DamagenetError, ValueError):
    """A dataset or raster that is missing, unreadable, or cannot be read right."""


class GridMismatchError(InputFileError):
    """Before, after and label rasters that are not on one grid."""


class CheckpointError(DamagenetError, ValueError):
    """A file that is not a usable checkpoint of this project."""
