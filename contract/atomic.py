"""Write-then-rename, so a failed or interrupted step never leaves a half-written output behind.

Snakemake (and people) treat an existing file as a finished one. Every writer writes into a
temporary file in the destination folder and renames it into place only when complete; the
rename is atomic on POSIX file systems. The file's data is flushed to the disk (``fsync``)
before the rename and the folder's entry after it, so a power cut cannot publish an empty or
partial file under the final name.

A command that writes several files (a map and its styles, a scene and its record, a training
run's log and summary) stages them and publishes them as one set (:func:`publish`): the renames
run with SIGINT and SIGTERM deferred (delivered once the set is in place), a rename that fails
undoes those already made and brings back the versions they replaced. What this process has
published is recorded (:func:`published`), so an interrupted command can say what is true.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from contract.errors import UsageError, UserError

#: Final paths published by this process, in order (read by the command-line boundary).
_PUBLISHED: list[Path] = []
#: Staging files and folders handed out: what is renamed into them is not yet published.
_STAGING: set[Path] = set()
_ASIDE = itertools.count()
#: Free space below which a failed write is taken for a full disk (a write that fails for
#: want of space fills the file system first).
FULL_BYTES = 1 << 20
#: The errors of a file system that cannot take the output.
STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)


def published() -> list[Path]:
    """The outputs this process has published complete, in order."""
    return list(_PUBLISHED)


def forget_published() -> None:
    """Start a new record (a command line starts one per command)."""
    _PUBLISHED.clear()


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file's data, or a folder's entries, to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems cannot sync a folder; the data is synced
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _sync_tree(path: Path) -> None:
    if path.is_dir():
        for root, _dirs, files in os.walk(path):
            for name in files:
                fsync_path(Path(root) / name)
            fsync_path(root)
    else:
        fsync_path(path)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while inside, then deliver them to the usual handlers.

    Only the main thread can set handlers; elsewhere this does nothing (Python delivers
    signals to the main thread anyway).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def hold(signum: int, frame: object) -> None:
        caught.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        for signum in dict.fromkeys(caught):
            signal.raise_signal(signum)


class OutputKindError(UsageError, IsADirectoryError):
    """An output path where a folder stands for a file (or a file for a folder): replacing it
    would delete what the user keeps there."""


def _refuse_other_kind(staged: Path, final: Path) -> None:
    """Refuse, before anything moves, to publish a file over a folder or a folder over a file."""
    if final.is_symlink() or not final.exists() or final.is_dir() == staged.is_dir():
        return
    found, wanted = ("a folder", "a file") if final.is_dir() else ("a file", "a folder")
    raise OutputKindError(
        f"{final}: is {found}, and this output is {wanted}; name another path (nothing "
        "was replaced)"
    )


def _set_aside(final: Path) -> Path | None:
    """Move an existing ``final`` to a hidden name beside it, to restore if publishing fails."""
    if not final.exists() and not final.is_symlink():
        return None
    aside = final.with_name(f".{final.name}.{os.getpid()}-{next(_ASIDE)}.old")
    os.replace(final, aside)
    return aside


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _is_staging(path: Path) -> bool:
    return any(p in _STAGING for p in (path, *path.parents))


def publish(moves: Sequence[tuple[Path, Path]]) -> None:
    """Rename each ``(staged, final)`` pair into place: all of them, or none.

    Data is synced first; the renames run with SIGINT and SIGTERM deferred; if one fails, the
    ones made are undone and the files they replaced come back.
    """
    for staged, final in moves:
        _refuse_other_kind(staged, final)
    for staged, _ in moves:
        _sync_tree(staged)
    with deferred_signals():
        done: list[tuple[Path, Path, Path | None]] = []
        try:
            for staged, final in moves:
                aside = _set_aside(final)
                try:
                    os.replace(staged, final)
                except BaseException:
                    if aside is not None:
                        os.replace(aside, final)
                    raise
                done.append((staged, final, aside))
        except BaseException:
            for staged, final, aside in reversed(done):
                os.replace(final, staged)
                if aside is not None:
                    os.replace(aside, final)
            raise
        for _, _, aside in done:
            if aside is not None:
                _remove(aside)
        for folder in dict.fromkeys(final.parent for _, final in moves):
            fsync_path(folder)
        _PUBLISHED.extend(final for _, final in moves if not _is_staging(final))


def storage_problem(folder: Path, exc: BaseException) -> OSError | None:
    """The full or read-only file system behind a write that failed in a library's own words.

    GDAL, OGR's SQLite, numpy's and torch's zip writers often hide the errno ("no such table:
    gpkg_contents", "file write failed"); the state of the folder's file system, looked at
    before the partial file is removed, says what happened. None when it looks fine.
    """
    if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
        return None
    try:
        fs = os.statvfs(folder)
    except OSError:
        return None
    if fs.f_flag & os.ST_RDONLY:
        return OSError(errno.EROFS, os.strerror(errno.EROFS), str(folder))
    if fs.f_bavail * fs.f_frsize < FULL_BYTES:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder))
    return None


def _temporary_beside(dest: Path) -> Path:
    """A free hidden name beside ``dest``, keeping its real extension last (GDAL chooses
    drivers and checks names by it); the file itself is left for the writer to create."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{dest.stem}.", suffix=f".part{dest.suffix}", dir=dest.parent
        )
    except OSError as exc:  # name the output, not the temporary name it could not create
        raise OSError(exc.errno, exc.strerror, str(dest)) from exc
    os.close(fd)
    os.unlink(tmp)  # writers such as GDAL want to create the file themselves
    return Path(tmp)


def _discard(tmp: Path) -> None:
    for leftover in (tmp, Path(str(tmp) + ".aux.xml")):
        if leftover.exists():
            _remove(leftover)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; publish it as ``path`` if the block succeeds."""
    dest = Path(path)
    tmp = _temporary_beside(dest)
    try:
        yield tmp
        publish([(tmp, dest)])
    except Exception as exc:
        _raise_storage_problem(dest.parent, exc, [(tmp, dest)])
        raise
    finally:
        _discard(tmp)


def _raise_storage_problem(
    where: Path, exc: Exception, finals: Sequence[tuple[Path, Path]] = ()
) -> None:
    """Raise the full or read-only disk behind ``exc`` as an ``OSError`` naming the output
    (not its hidden temporary name); a refusal of the data is left alone."""
    if isinstance(exc, UserError):
        return
    problem = storage_problem(where, exc)
    if problem is None and isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
        problem = OSError(exc.errno, exc.strerror, exc.filename or str(where))
    if problem is None:
        return
    named = Path(os.fspath(problem.filename))
    for staged, final in finals:
        if named == staged or staged in named.parents:
            problem.filename = str(final / named.relative_to(staged) if staged != named else final)
            break
    raise problem from exc


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write a small text file (JSON summaries, Markdown tables) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


class OutputSet:
    """The files of one output set: each written to its staged path, published together."""

    def __init__(self) -> None:
        self.moves: list[tuple[Path, Path]] = []

    def path(self, final: str | os.PathLike[str]) -> Path:
        """Where to write the output ``final`` until the set is published."""
        staged = _temporary_beside(Path(final))
        _STAGING.add(staged)
        self.moves.append((staged, Path(final)))
        return staged


@contextlib.contextmanager
def output_set() -> Iterator[OutputSet]:
    """Stage several files wherever they go; publish them all if the block succeeds, else
    remove every staged file (a scene and its JSON record, a dataset and its summaries)."""
    outputs = OutputSet()
    try:
        yield outputs
        publish(outputs.moves)
    except Exception as exc:
        for folder in dict.fromkeys(final.parent for _, final in outputs.moves):
            _raise_storage_problem(folder, exc, outputs.moves)
        raise
    finally:
        for staged, _ in outputs.moves:
            _discard(staged)
            _STAGING.discard(staged)


@contextlib.contextmanager
def scratch_folder() -> Iterator[Path]:
    """A temporary folder for intermediate files, removed afterwards; what is published into
    it is not an output, so an interrupted command does not report it as written."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        _STAGING.add(path)
        try:
            yield path
        finally:
            _STAGING.discard(path)


@contextlib.contextmanager
def staged_folder(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a hidden temporary folder inside ``folder``; publish its entries into ``folder``
    as one set on success, remove it on any failure, SIGINT or SIGTERM.

    For commands that write a set of files (plots and metrics, scenes and labels): no final
    file appears until every file of the set is written, so an interrupted or failed run
    leaves nothing a user or Snakemake could take for a finished output.
    """
    dest = Path(folder)
    if dest.exists() and not dest.is_dir():
        raise OutputKindError(f"{dest}: is a file, and this output is a folder; name another path")
    dest.mkdir(parents=True, exist_ok=True)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", suffix=".part", dir=dest))
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(dest)) from exc
    _STAGING.add(tmp)
    try:
        yield tmp
        publish([(item, dest / item.name) for item in sorted(tmp.iterdir())])
    except Exception as exc:
        _raise_storage_problem(dest, exc, [(tmp, dest)])
        raise
    finally:
        _STAGING.discard(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
