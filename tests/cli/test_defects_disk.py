"""Full disks and read-only file systems, for real (issue 31.4).

Each writer of ``tests/test_bad_inputs.py``'s ``DISK_CASES`` runs once on a free disk (to
measure what it writes), then with its output folder on a tmpfs with room for a tenth and for a
half of that (the first file fails, or a later one of the set) and on a read-only tmpfs.
The kernel, not a monkeypatch, says ENOSPC or EROFS, wherever the write happens: in Python,
in GDAL's C code, in OGR's SQLite, in numpy's or torch's zip writers. Every run must end with
exit 1, one line naming the output and the problem and no traceback, and leave the folder
empty.

A tmpfs is mounted in a private user and mount namespace (``unshare -rm``), so this needs no
privileges on the machine; where namespaces are not allowed the test is skipped with the
reason, and ``test_bad_inputs.test_unwritable_output`` still injects the same errors.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.paths import ROOT
from test_bad_inputs import DISK_CASES, files, fill  # noqa: F401 (fixture)

PAGE = 4096
#: pages a filler file takes on the tmpfs, so that the free space is exact even below a page
FILLER, FILLER_NAME = 4, ".filler"
#: fractions of a writer's output that the tmpfs has room for: the default suite fills the disk
#: halfway through the set, the slow one also at the first file and near the end
FRACTIONS = (0.5,)
ALL_FRACTIONS = (0.0, 0.1, 0.5, 0.9)
WORDS = {"full": "no space left", "ro": "read-only"}


def namespaces_work() -> str | None:
    """None when ``unshare -rm`` can mount a tmpfs here, else why not."""
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "unshare or mount is not installed"
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=8k tmpfs /mnt 2>&1 || exit 3"],
        capture_output=True,
        text=True,
    )
    return None if probe.returncode == 0 else f"no private mount namespace: {probe.stderr}"


def _mount(folder: Path, options: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], check=True)


def _run(argv: list[str]) -> tuple[int, str]:
    """One command line in this process, its exit status and what it printed."""
    if argv[0] == "pipeline":
        from pipeline.cli import main
    else:
        from damagenet.cli import main
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv[1:])
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, err.getvalue()


def _written(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def drive(spec_file: str) -> None:
    """Inside the namespace: run every case on a free, a full and a read-only folder."""
    spec = json.loads(Path(spec_file).read_text())
    base, results = Path(spec["base"]), []
    for name, argv in spec["cases"]:
        free = base / name / "free"
        free.mkdir(parents=True)
        code, err = _run(fill(argv, {**spec["files"], "out": str(free)}))
        need = _size(free)
        runs = [("free", code, err, [] if code else ["ok"], str(free))]
        limits = [("full", int(need * f) // PAGE) for f in spec["fractions"]]
        for i, (kind, free_pages) in enumerate([*limits, ("ro", 0)]):
            out = base / name / f"{kind}{i}"
            _mount(out, "ro" if kind == "ro" else f"size={(free_pages + FILLER) * PAGE}")
            if kind == "full":  # taken, so exactly ``free_pages`` remain
                (out / FILLER_NAME).write_bytes(bytes(FILLER * PAGE))
            code, err = _run(fill(argv, {**spec["files"], "out": str(out)}))
            runs.append((kind, code, err, [f for f in _written(out) if f != FILLER_NAME], str(out)))
            subprocess.run(["umount", str(out)], check=True)
        results.append({"case": name, "bytes": need, "runs": runs})
    Path(spec["results"]).write_text(json.dumps(results))


def _drive_all(inputs: dict, base: Path, fractions: tuple[float, ...]) -> dict:
    reason = namespaces_work()
    if reason:
        pytest.skip(reason)
    spec = {
        "base": str(base / "runs"),
        "files": inputs,
        "cases": DISK_CASES,
        "fractions": fractions,
        "results": str(base / "results.json"),
    }
    (base / "spec.json").write_text(json.dumps(spec))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(map(str, (ROOT, ROOT / "tests", ROOT / "tests" / "cli"))),
        "OMP_NUM_THREADS": "1",
    }
    code = f"from test_defects_disk import drive; drive({str(base / 'spec.json')!r})"
    proc = subprocess.run(
        ["unshare", "-rm", sys.executable, "-c", code],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {r["case"]: r for r in json.loads(Path(spec["results"]).read_text())}


@pytest.fixture(scope="module")
def disk_results(files, tmp_path_factory):  # noqa: F811 (the imported fixture)
    return _drive_all(files, tmp_path_factory.mktemp("disk"), FRACTIONS)


@pytest.fixture(scope="module")
def disk_results_all(files, tmp_path_factory):  # noqa: F811 (the imported fixture)
    return _drive_all(files, tmp_path_factory.mktemp("disk_all"), ALL_FRACTIONS)


def _check(name: str, result: dict) -> None:
    kind, code, err, _, _ = result["runs"][0]
    assert code == 0, f"{name} failed on a free disk: {err[-2000:]}"
    for kind, code, err, left, out in result["runs"][1:]:
        where = f"{name} on a {kind} disk ({result['bytes']} bytes needed)"
        assert code == 1, f"{where}: exit {code}: {err[-2000:]}"
        assert "Traceback" not in err, f"{where}: {err[-3000:]}"
        lines = [line for line in err.splitlines() if "error:" in line]
        assert len(lines) == 1, f"{where}: {err[-2000:]}"
        assert WORDS[kind] in lines[0].lower(), f"{where}: {lines[0]}"
        assert out in lines[0], f"{where}: the output is not named: {lines[0]}"
        assert left == [], f"{where}: left {left}"


@pytest.mark.parametrize("name", [c[0] for c in DISK_CASES])
def test_full_and_read_only_disks_fail_cleanly(name, disk_results):
    _check(name, disk_results[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", [c[0] for c in DISK_CASES])
def test_disks_full_at_every_stage_of_the_set(name, disk_results_all):
    _check(name, disk_results_all[name])
