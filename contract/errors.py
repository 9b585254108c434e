"""The failure kinds both packages share, and how a command line reports them.

Each package derives its own base error from :class:`UserError` and its typed failures from
that base *and* the matching built-in (``ValueError``, ``PermissionError``, ...), so callers and
tests catch kinds instead of matching message text.
"""

from __future__ import annotations

from collections.abc import Iterator


class UserError(Exception):
    """A refusal with a message meant for the user; the command line prints it in one line."""

    #: Exit status of the command line: 1 for failed data or services; usage errors use 2.
    exit_code = 1


class UsageError(UserError):
    """A command line that cannot be right whatever the data: exit 2, as argparse's own."""

    exit_code = 2


class SceneScaleError(UserError, ValueError):
    """A scene that is not L2A digital numbers (reflectance x 10000), checked before use."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an error's message, at most ``limit`` characters; its type's name when
    the message is empty (an empty checkpoint file fails with a bare ``EOFError``)."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from (``__cause__``, else ``__context__``),
    each once: libraries wrap the error a user needs to hear about (a refused connection, a
    full disk, Ctrl-C), and a chain can loop back on itself, which a plain walk never leaves."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__
