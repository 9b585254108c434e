"""Write-then-rename, so a failed step never leaves a half-written output behind.

Snakemake (and people) treat an existing file as a finished one. Every writer in the pipeline
writes into a temporary file in the destination folder and renames it into place only when
complete; the rename is atomic on POSIX file systems.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it to ``path`` if the block succeeds."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # keep the real extension last: GDAL chooses drivers and checks names by it
    fd, tmp = tempfile.mkstemp(
        prefix=f".{dest.stem}.", suffix=f".part{dest.suffix}", dir=dest.parent
    )
    os.close(fd)
    os.unlink(tmp)  # writers such as GDAL want to create the file themselves
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    finally:
        for leftover in (tmp_path, Path(str(tmp_path) + ".aux.xml")):
            if leftover.exists():
                leftover.unlink()


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write a small text file (JSON summaries, Markdown tables) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def staged_folder(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a hidden temporary folder inside ``folder``; move its entries into ``folder`` on
    success, remove it on any failure, SIGINT or SIGTERM.

    For commands that write a set of files (plots and metrics, scenes and labels): no final
    file appears until every file of the set is written, so an interrupted or failed run
    leaves nothing a user or Snakemake could take for a finished output.
    """
    dest = Path(folder)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", suffix=".part", dir=dest))
    try:
        yield tmp
        for item in sorted(tmp.iterdir()):
            os.replace(item, dest / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
