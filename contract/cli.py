"""The error boundary every command line of the project shares.

A failure becomes one line on standard error naming the file or option and the problem, and an
exit status: 2 when the command line itself is wrong, 1 when the data, the disk or a service
failed, 130/143 when interrupted by SIGINT/SIGTERM. ``-v`` adds the traceback. SIGTERM is turned
into an exception, so every ``finally`` (temporary files, temporary folders) runs before exit
and nothing partial is left behind, as after Ctrl-C.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import re
import signal
import sys
import threading
import traceback
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn

from contract.atomic import forget_published, published
from contract.errors import UserError, causes

NOISY_LOGGERS = (
    "pyogrio",
    "rasterio",
    "sentinelhub",
    "urllib3",
    "fiona",
    "matplotlib",
    "PIL",
    "requests_oauthlib",
    "oauthlib",
    "botocore",
    "distributed",
    "odc",
)
#: Plain sentences for the operating-system failures users meet.
OS_ERRORS = {
    errno.ENOSPC: "no space left on the device; free some space or write elsewhere",
    errno.EDQUOT: "disk quota exceeded; free some space or write elsewhere",
    errno.EFBIG: "file too large for the file system or the size limit; write elsewhere",
    errno.EROFS: "the file system is read-only; choose a writable output folder",
    errno.EACCES: "permission denied; choose a folder you can write to, or fix permissions",
    errno.EPERM: "operation not permitted; check the file's permissions",
    errno.ENOENT: "no such file or folder",
    errno.EISDIR: "is a folder, a file was expected",
    errno.ENOTDIR: "a path component is not a folder",
}


#: How libraries word a full disk (or a file-size limit) when they hide the errno.
DISK_FULL = re.compile(
    r"No space left|file write failed|requested and \d+ written|Disk quota|File too large|"
    r"failed to write (record|feature)|Failed to write|sqlite3_step\(\) failed|"
    r"database or disk is full",
    re.IGNORECASE,
)

#: Environment variables whose values must never reach a log.
SECRET_ENV = (
    "SH_CLIENT_SECRET",
    "SH_CLIENT_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "PC_SDK_SUBSCRIPTION_KEY",
)
SECRET_PATTERNS = re.compile(
    r"\b(client_secret|access_token|refresh_token|password|sig|token)(['\"]?\s*[=:]\s*['\"]?)"
    r"[^&'\"\s,}]+|(Bearer\s+)[A-Za-z0-9._~+/=-]+",
    re.IGNORECASE,
)


class RedactSecrets(logging.Filter):
    """Scrub credentials from every record, whatever library logs them and at any level."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        clean = redact(text)
        if clean != text:
            record.msg, record.args = clean, None
        return True


def redact(text: str) -> str:
    for name in SECRET_ENV:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return SECRET_PATTERNS.sub(
        lambda m: (m.group(1) + m.group(2) + "***") if m.group(1) else m.group(3) + "***", text
    )


class Terminated(BaseException):
    """SIGTERM, raised like KeyboardInterrupt so cleanup code runs."""


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    """INFO by default, DEBUG with ``-v``, WARNING with ``-q``; third-party chatter stays down."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactSecrets())
    for noisy in NOISY_LOGGERS:  # their DEBUG output can carry request bodies and tokens
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def describe_os_error(exc: OSError) -> str:
    """``<file>: <plain sentence>`` for an operating-system failure."""
    where = exc.filename or ""
    what = OS_ERRORS.get(exc.errno or -1)
    if what is None and DISK_FULL.search(str(exc)):  # numpy: "N requested and M written"
        what = f"{OS_ERRORS[errno.ENOSPC]} ({exc})"
    if what is None:
        what = str(exc.strerror or exc)
    return f"{where}: {what}" if where else what


def _disk_full(exc: BaseException) -> bool:
    """A full disk that a library reported in its own words: torch's zip writer and GDAL
    (RuntimeError), OGR through pyogrio (``FeatureError``: "failed to write"), numpy's zip
    writer ("requested and ... written"); anywhere in the chain of causes."""
    for cur in causes(exc):
        if isinstance(cur, OSError) and cur.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return True
        if DISK_FULL.search(str(cur)):
            return True
    return False


#: Signals received inside the boundary, by name: whatever breaks after one (an import cut in
#: half fails later with its own error) is the signal's doing, reported as the interrupt.
_RECEIVED: list[str] = []
EXIT_STATUS = {"SIGINT": 130, "SIGTERM": 143}


@contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Terminated` and SIGINT ``KeyboardInterrupt``, each
    recorded first (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        _RECEIVED.append(name)
        raise KeyboardInterrupt if name == "SIGINT" else Terminated(name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def _stopped_by_signal(exc: BaseException) -> tuple[str, int] | None:
    """(signal, exit status) when ``exc`` is an interrupt, hides one, or came after one."""
    if (stop := _signal_within(exc)) is not None:
        return stop
    return (_RECEIVED[-1], EXIT_STATUS[_RECEIVED[-1]]) if _RECEIVED else None


def exit_with(code: int) -> NoReturn:
    """End the process with ``code``. After an interrupt (130, 143) it does not wait for the
    threads libraries leave behind (zarr's I/O loop, thread pools) mid-task: waiting on them
    hung a radar store's exit for ever, and finalising under them aborted it. The command's
    outputs are already published whole or removed by then."""
    if code in EXIT_STATUS.values():
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def run_main(
    build_parser: Callable[[], argparse.ArgumentParser], argv: Sequence[str] | None = None
) -> int:
    """A whole command line inside the boundary: building the parser (which imports the
    command modules), parsing, and the command itself.

    So SIGINT or SIGTERM during the first seconds of start-up ends like one during the work:
    one line and exit 130/143, no traceback. argparse's own exits (``--help``, usage errors)
    pass through as ``SystemExit``.
    """
    _RECEIVED.clear()
    try:
        with signals_as_exceptions():
            args = build_parser().parse_args(argv)
    except KeyboardInterrupt:
        return _fail(_interrupted("SIGINT"), 130, False)
    except Terminated:
        return _fail(_interrupted("SIGTERM"), 143, False)
    except Exception as exc:
        if (stop := _stopped_by_signal(exc)) is None:
            raise
        return _fail(_interrupted(stop[0]), stop[1], False)
    setup_logging(args.verbose, args.quiet)
    return run_command(args.func, args)


def run_command(func: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a subcommand inside the boundary; return its exit status."""
    verbose = bool(getattr(args, "verbose", False))
    forget_published()
    _RECEIVED.clear()
    try:
        with signals_as_exceptions():
            return int(func(args) or 0)
    except UserError as exc:
        return _fail(str(exc), exc.exit_code, verbose)
    except KeyboardInterrupt:
        return _fail(_interrupted("SIGINT"), 130, verbose)
    except Terminated:
        return _fail(_interrupted("SIGTERM"), 143, verbose)
    except OSError as exc:
        if _from_rasterio(exc):  # RasterioIOError is an OSError without errno or filename
            return _fail(_corrupt_raster(exc), 1, verbose)
        return _fail(describe_os_error(exc), 1, verbose)
    except MemoryError:  # numpy's names the size: "Unable to allocate 168. GiB for an array"
        return _fail(
            "out of memory: the settings ask for more than this machine has (a finer grid, "
            "a larger radius or memory budget than the data needs); check the options",
            1,
            verbose,
        )
    except zipfile.BadZipFile as exc:
        return _fail(
            f"{_chain(exc)}: an input (.npz, .zip or .pt) is truncated or corrupt; "
            "re-create or re-download it",
            1,
            verbose,
        )
    except Exception as exc:
        if (stop := _stopped_by_signal(exc)) is not None:
            return _fail(_interrupted(stop[0]), stop[1], verbose)
        if _disk_full(exc):
            return _fail(f"{_chain(exc)}: {OS_ERRORS[errno.ENOSPC]}", 1, verbose)
        if _from_rasterio(exc):
            return _fail(_corrupt_raster(exc), 1, verbose)
        raise


def _signal_within(exc: BaseException) -> tuple[str, int] | None:
    """(signal, exit status) when an interrupt hides inside another error.

    Python 3.11 wraps whatever a class body's ``__set_name__`` raises in a RuntimeError, so
    Ctrl-C while a library defines its classes arrives as one; so do libraries that wrap the
    errors of callbacks.
    """
    for cur in causes(exc):
        if isinstance(cur, KeyboardInterrupt):
            return "SIGINT", 130
        if isinstance(cur, Terminated):
            return "SIGTERM", 143
    return None


def _interrupted(name: str) -> str:
    """What an interrupt left: nothing, or only outputs published complete before it."""
    what = f"{'terminated' if name == 'SIGTERM' else 'interrupted'} ({name})"
    done = published()
    if not done:
        return f"{what}; no output was written"
    shown = ", ".join(str(p) for p in done[:3]) + (
        f" and {len(done) - 3} more" if len(done) > 3 else ""
    )
    return f"{what} after writing {shown} complete; nothing partial was left"


def _from_rasterio(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("rasterio")


#: GDAL's words for a failed write (TIFFWriteDirectoryTagData: "IO error writing tag data"):
#: the output's disk, not an input, is the problem
RASTER_WRITE = re.compile(
    r"\bIO error writing|\bwrite failed|\bWrite error|TIFFWrite", re.IGNORECASE
)


def _corrupt_raster(exc: BaseException) -> str:
    text = _chain(exc)
    if RASTER_WRITE.search(text):
        return f"{text}: writing a raster output failed; is its disk full or read-only?"
    return f"{text}: a raster input is truncated or corrupt; re-create or re-download it"


def _chain(exc: BaseException) -> str:
    """The messages of an exception and its causes: GDAL names the file only in the cause."""
    parts: list[str] = []
    for cur in causes(exc):
        text = str(cur).replace("See previous exception for details.", "").strip(" .")
        if text and text not in parts:
            parts.append(text)
        if len(parts) == 4:
            break
    return "; ".join(reversed(parts)).replace("\n", " ")


def _fail(message: str, code: int, verbose: bool) -> int:
    if verbose:
        traceback.print_exc()
    print(f"error: {message}", file=sys.stderr)
    return code


def bar_disabled(progress: bool) -> bool | None:
    """tqdm's ``disable``: off with ``-q``; otherwise None, which tqdm reads as "draw only on a
    terminal", so rule logs get each stage's log lines and no progress-bar redraws."""
    return None if progress else True
