"""The pipeline's failure kinds, each a :class:`PipelineError` and the matching built-in.

The command line turns any of them into a one-line message naming the file or option and the
problem (:mod:`contract.cli`), so a user sees *which file* and *what is wrong*.
"""

from __future__ import annotations

from contract.errors import UserError


class PipelineError(UserError):
    """Bad input or an unusable external resource, with a message meant for the user."""


class PipelineUsageError(PipelineError, ValueError):
    """An option value that is malformed or out of range, or a named input that is missing."""

    exit_code = 2


class InputFileError(PipelineError, ValueError):
    """An input file that is missing, unreadable, or cannot be read right."""


class GridMismatchError(InputFileError):
    """Rasters of one AOI that are not on one grid."""


class CredentialsError(PipelineError, PermissionError):
    """Missing or refused credentials of a data service."""


class ServiceError(PipelineError, ConnectionError):
    """A data service that is unreachable or answers with an error."""
