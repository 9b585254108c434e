"""Publishing outputs: synced before the rename, whole sets or nothing (issue 31.4, 31.9).

``contract.atomic`` is the one mechanism behind every writer: a file's data reaches the disk
before its rename (a power cut cannot publish an empty file), and a set of files is moved into
place with SIGINT and SIGTERM held back, a failed move undone, and the command line's message
saying what was written.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

import pytest

from contract import atomic
from contract.atomic import atomic_path, output_set, published, staged_folder
from contract.cli import run_command


def _record_syncs(monkeypatch) -> list[tuple[str, str]]:
    """Log ``("fsync", path)`` and ``("replace", src)`` in the order they happen."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst, **kw):
        events.append(("replace", os.fspath(src)))
        return real_replace(src, dst, **kw)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc to name descriptors")
def test_data_is_synced_before_the_rename(tmp_path, monkeypatch):
    events = _record_syncs(monkeypatch)
    with atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("data")
        staged = str(tmp)
    assert events.index(("fsync", staged)) < events.index(("replace", staged))
    assert ("fsync", str(tmp_path)) in events[events.index(("replace", staged)) :]
    events.clear()
    with staged_folder(tmp_path / "set") as stage:
        (stage / "x.json").write_text("{}")
        staged = str(stage / "x.json")
    assert events.index(("fsync", staged)) < events.index(("replace", staged))


def _fail_on(monkeypatch, nth: int, action) -> None:
    """Run ``action`` when ``os.replace`` is called the ``nth`` time (1-based)."""
    real_replace, calls = os.replace, [0]

    def replace(src, dst, **kw):
        calls[0] += 1
        if calls[0] == nth:
            action()
        return real_replace(src, dst, **kw)

    monkeypatch.setattr(os, "replace", replace)


def test_a_signal_during_publication_waits_for_the_whole_set(tmp_path, monkeypatch):
    """SIGINT between two moves: every file of the set is published, then the interrupt."""
    out = tmp_path / "maps"
    _fail_on(monkeypatch, 2, lambda: os.kill(os.getpid(), signal.SIGINT))
    with pytest.raises(KeyboardInterrupt), staged_folder(out) as stage:
        for name in ("a.tif", "b.qml", "c.json"):
            (stage / name).write_text(name)
    assert sorted(p.name for p in out.iterdir()) == ["a.tif", "b.qml", "c.json"]


def test_a_failed_move_undoes_the_set_and_restores_what_it_replaced(tmp_path, monkeypatch):
    out = tmp_path / "maps"
    out.mkdir()
    (out / "a.tif").write_text("old a")
    (out / "c.json").write_text("old c")

    def refuse():
        raise OSError(5, "Input/output error", str(out / "b.qml"))

    _fail_on(monkeypatch, 3, refuse)  # old a set aside, new a in, then b's move fails
    with pytest.raises(OSError, match="Input/output"), staged_folder(out) as stage:
        for name in ("a.tif", "b.qml", "c.json"):
            (stage / name).write_text("new")
    assert {p.name: p.read_text() for p in out.iterdir()} == {"a.tif": "old a", "c.json": "old c"}


def test_output_set_publishes_files_of_several_folders_together(tmp_path, monkeypatch):
    """A scene and its record, a dataset and its summaries: both or neither."""
    with pytest.raises(RuntimeError), output_set() as outputs:
        outputs.path(tmp_path / "s.tif").write_text("scene")
        raise RuntimeError("the JSON record failed")
    assert list(tmp_path.iterdir()) == []
    _fail_on(monkeypatch, 2, lambda: os.kill(os.getpid(), signal.SIGINT))
    with pytest.raises(KeyboardInterrupt), output_set() as outputs:
        outputs.path(tmp_path / "s.tif").write_text("scene")
        outputs.path(tmp_path / "sub" / "s.json").write_text("{}")
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "s.tif",
        "sub",
        "sub/s.json",
    ]


def test_the_message_says_what_an_interrupt_left(tmp_path, monkeypatch, capsys):
    """Issue 31.9: a set published as the signal came was reported as "no output was written"."""

    def work(args: argparse.Namespace) -> int:
        with staged_folder(tmp_path / "maps") as stage:
            (stage / "m_damage_prob.tif").write_text("p")
            (stage / "m_damage_class.tif").write_text("c")
        return 0

    _fail_on(monkeypatch, 1, lambda: os.kill(os.getpid(), signal.SIGINT))
    assert run_command(work, argparse.Namespace(verbose=False)) == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: interrupted (SIGINT) after writing ")
    assert str(tmp_path / "maps" / "m_damage_class.tif") in err and "complete" in err
    monkeypatch.undo()

    def nothing(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    assert run_command(nothing, argparse.Namespace(verbose=False)) == 130
    assert "no output was written" in capsys.readouterr().err
    assert published() == []


def test_staged_paths_are_not_reported_as_published(tmp_path):
    """Writers inside a set write through atomic_path onto staged names: only finals count."""
    atomic.forget_published()
    with output_set() as outputs, atomic_path(outputs.path(tmp_path / "s.tif")) as tmp:
        tmp.write_text("scene")
    assert published() == [tmp_path / "s.tif"]


@pytest.mark.parametrize("kind", ["file over a folder", "folder over a file"])
def test_an_output_never_replaces_a_thing_of_the_other_kind(tmp_path, kind):
    """A folder the user keeps where a file goes (or the reverse) is refused before anything
    moves, not deleted to make room (exit 2: the path is the mistake)."""
    from contract.atomic import OutputKindError

    if kind == "file over a folder":
        kept = tmp_path / "map.tif"
        (kept / "precious").mkdir(parents=True)
        with pytest.raises(OutputKindError, match="is a folder"), atomic_path(kept) as tmp:
            tmp.write_text("map")
        assert (kept / "precious").is_dir()
    else:
        kept = tmp_path / "store.zarr"
        kept.write_text("a file the user keeps")
        with pytest.raises(OutputKindError, match="is a file"), output_set() as outputs:
            (outputs.path(kept) / "zarr.json").parent.mkdir()
        assert kept.read_text() == "a file the user keeps"
        with pytest.raises(OutputKindError, match="is a file"), staged_folder(kept):
            pass
    assert OutputKindError.exit_code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [kept.name]
