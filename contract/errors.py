"""The failure kinds both packages share, and how a command line reports them.

Each package derives its own base error from :class:`UserError` and its typed failures from
that base *and* the matching built-in (``ValueError``, ``PermissionError``, ...), so callers and
tests catch kinds instead of matching message text.
"""

from __future__ import annotations


class UserError(Exception):
    """A refusal with a message meant for the user; the command line prints it in one line."""

    #: Exit status of the command line: 1 for failed data or services; usage errors use 2.
    exit_code = 1


class SceneScaleError(UserError, ValueError):
    """A scene that is not L2A digital numbers (reflectance x 10000), checked before use."""
