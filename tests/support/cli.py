"""Running the two command lines in-process, and what a failed command may leave behind."""

from __future__ import annotations

import os
from pathlib import Path


def run_cli(argv: list[str]) -> int:
    """``pipeline ...`` or ``damagenet ...`` in this process; argparse's exits become codes."""
    if argv[0] == "pipeline":
        from pipeline.cli import main
    else:
        from damagenet.cli import main
    try:
        return main(argv[1:])
    except SystemExit as exc:  # argparse
        return int(exc.code)


def check_one_line(err: str, words: tuple[str, ...]) -> None:
    """No traceback, exactly one ``error:`` line, and the words in what the user reads."""
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    for word in words:
        assert word.lower() in err.lower(), err


def leftovers(out: Path) -> list[str]:
    """Every file or folder under ``out``: a final output, or a temporary one left behind."""
    if not out.exists():
        return []
    return sorted(str(p.relative_to(out)) for p in out.rglob("*"))


def refuse_move_into(monkeypatch, final: Path) -> None:
    """Fail the first rename that publishes ``final`` (an I/O error at the set's last file;
    putting back a version it replaced works); other test modules use it to check that a
    writer's set is published whole or not at all."""
    real_replace, failed = os.replace, []

    def replace(src, dst, **kw):
        if Path(dst) == Path(final) and not failed:
            failed.append(dst)
            raise OSError(5, "Input/output error", os.fspath(dst))
        return real_replace(src, dst, **kw)

    monkeypatch.setattr(os, "replace", replace)
