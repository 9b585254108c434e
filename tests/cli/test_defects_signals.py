"""SIGINT and SIGTERM at any moment of every command (issue 31.3, 31.9).

Each command runs in its own process and is sent SIGINT or SIGTERM 0.5, 1, 2 or 4 s after it
starts: during start-up (imports, parsing), the work, or the publication of its outputs. It must
end with exit 130 (SIGINT) or 143 (SIGTERM), one ``error:`` line naming the signal and no
traceback, and leave no temporary file; a final file may remain only when the message names it
as written complete (a set published before the signal, or training's provisional checkpoint).
A command that finished before the signal must have succeeded.

The processes start as the console commands will once their ``main`` is
:func:`contract.cli.run_main` (``test_console_commands_run_inside_the_boundary`` checks that
wiring). The full grid (every command x both signals x four moments) is marked ``slow``; the
default suite sends one signal per command, one second in, alternating SIGINT and SIGTERM.
"""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from support.model_data import write_study_npz
from support.paths import ROOT
from support.radar_stores import make_store, schedule, speckled

from damagenet.data.pairs import Normalisation
from damagenet.models.checkpoint import save_checkpoint
from damagenet.models.siamese_resnet import SiameseResNet

DELAYS = (0.5, 1.0, 2.0, 4.0)
SIGNALS = {"SIGINT": (signal.SIGINT, 130), "SIGTERM": (signal.SIGTERM, 143)}
ENTRY = (
    "import sys; from contract.cli import exit_with, run_main; "
    "from {pkg}.cli import build_parser; exit_with(run_main(build_parser, sys.argv[1:]))"
)
OUT = "{out}"
COMMANDS: dict[str, list[str]] = {
    "aoi-check": ["pipeline", "aoi", "check", "{aoi}"],
    "aoi-new": ["pipeline", "aoi", "new", "x", "--bbox", "30.2", "50.5", "30.3", "50.6",
                "--before", "2022-02-01", "--after", "2022-05-01", "--no-labels",
                "--aoi-dir", OUT],
    "synthetic": ["pipeline", "synthetic", "{aoi}", "--out", OUT, "--max-size-km", "20"],
    "scene": ["pipeline", "scene", "{aoi}", "--epoch", "after", "--out", OUT + "/s.tif",
              "--source", "synthetic", "--max-size-km", "8"],
    "radar": ["pipeline", "radar", "{aoi}", "--out", OUT + "/r.zarr", "--source",
              "synthetic", "--max-size-km", "3"],
    "labels": ["pipeline", "labels", "{aoi}", "--grid", "{after}", "--unosat", "{unosat}",
               "--out", OUT + "/l.tif"],
    "patches": ["pipeline", "patches", "{aoi}", "--before", "{before}", "--after", "{after}",
                "--labels", "{labels}", "--out", OUT + "/p.npz", "--stride", "2"],
    "tiles": ["pipeline", "tiles", "{aoi}", "--before", "{before}", "--after", "{after}",
              "--targets", "{labels}", "--out", OUT + "/t.npz", "--size", "32"],
    "dataset": ["pipeline", "dataset", "{patches}", "{patches2}", "{patches3}", "--out",
                OUT + "/d.npz"],
    "train": ["damagenet", "train", "--npz", "{npz}", "--out", OUT, "--ckpt", OUT + "/m.pt",
              "--epochs", "40", "--backbone", "resnet18", "--device", "cpu"],
    "evaluate": ["damagenet", "evaluate", "--npz", "{npz}", "--ckpt", "{ckpt}", "--out", OUT,
                 "--allow-provisional", "--device", "cpu"],
    "predict": ["damagenet", "predict", "--before", "{before}", "--after", "{after}",
                "--ckpt", "{ckpt}", "--out", OUT + "/m_damage_prob.tif", "--stride", "2",
                "--device", "cpu"],
    "crossval": ["damagenet", "crossval", "--npz", "{npz}", "--k", "2", "--out", OUT,
                 "--epochs", "5", "--backbone", "resnet18", "--device", "cpu"],
    "pwtt": ["damagenet", "pwtt", "--radar", "{store}", "--out", OUT + "/t_pwtt.tif"],
    "aggregate": ["damagenet", "aggregate", "--map", "{map}", "--buildings", "{buildings}",
                  "--out", OUT + "/a.gpkg"],
    "info": ["damagenet", "info", "{ckpt}"],
}  # fmt: skip
#: commands left out, and why: they need a TLS server (unosat), the OSCD data (oscd), a radar
#: map and an optical map on one grid (fuse), the study's weights (import-seed), or they only
#: look at the environment (credentials); their boundary is the same ``run_main``.


@pytest.fixture(scope="module")
def inputs(aoi_rasters, patch_files, tmp_path_factory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("signals")
    ckpt = base / "tiny.pt"
    save_checkpoint(
        ckpt,
        SiameseResNet("resnet18").eval(),
        patch_size=16,
        norm=Normalisation([0.1] * 4, [0.05] * 4),
        threshold={"value": 0.5, "rule": "fixed"},
        history=[],
        dataset={"sha256": "0" * 64},
    )
    rng = np.random.default_rng(0)
    times, orbits = schedule({21: (6, 3), 36: (6, 3)})
    shape = (len(times), 600, 600)
    store = make_store(base / "town.zarr", speckled(rng, shape), speckled(rng, shape, 0.05),
                       times, orbits)  # fmt: skip
    bucha = aoi_rasters["bucha"]
    from damagenet.maps.predict import PredictOptions, predict_map

    prob = base / "maps" / "bucha_damage_prob.tif"
    predict_map(bucha["before"], bucha["after"], ckpt, prob, PredictOptions(progress=False))
    return {
        "aoi": str(ROOT / "aois" / "bucha.geojson"),
        "before": str(bucha["before"]),
        "after": str(bucha["after"]),
        "labels": str(bucha["labels"]),
        "unosat": str(next((bucha["dir"] / "synthetic").glob("*.zip"))),
        "buildings": str(bucha["dir"] / "synthetic" / "buildings.gpkg"),
        "patches": str(patch_files[0]),
        "patches2": str(patch_files[1]),
        "patches3": str(patch_files[2]),
        "npz": str(write_study_npz(base / "study.npz", sizes=(512, 128, 128))),
        "ckpt": str(ckpt),
        "store": str(store),
        "map": str(prob),
    }


def interrupt(argv: list[str], sig_name: str, delay: float) -> tuple[bool, int, str, str]:
    """Start the command, signal it ``delay`` s later; (it was still running, exit, stdout,
    stderr)."""
    pkg, *args = argv
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", ENTRY.format(pkg=pkg), *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(delay)
    running = proc.poll() is None
    if running:
        proc.send_signal(SIGNALS[sig_name][0])
    printed, err = proc.communicate(timeout=120)
    return running, proc.returncode, printed, err


def check_outcome(
    running: bool, code: int, printed: str, err: str, out: Path, sig_name: str
) -> None:
    left = sorted(p for p in out.rglob("*") if p.is_file()) if out.exists() else []
    hidden = [p for p in left if any(part.startswith(".") for part in p.relative_to(out).parts)]
    assert not hidden, f"temporary files left: {hidden}\n{err}"
    if not running or code in (0, -signal.SIGINT, -signal.SIGTERM):
        # finished before the signal, or as it came: a process killed outside the boundary
        # must have done its work (outputs or its report), i.e. it was already exiting
        assert code in (0, -signal.SIGINT, -signal.SIGTERM), err
        assert code == 0 or left or printed.strip(), f"killed before it could answer: {err}"
        return
    assert code == SIGNALS[sig_name][1], err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and sig_name in lines[0], err
    if left:  # only outputs published complete, and the message says so
        assert "complete" in lines[0], (lines[0], left)
        named = [p for p in left if str(p) in lines[0]]
        assert named or "more" in lines[0], (lines[0], left)
    else:
        assert "no output was written" in lines[0], lines[0]


def _run_case(name: str, sig_name: str, delay: float, inputs: dict, tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = [a.format(**inputs, out=out) for a in COMMANDS[name]]
    running, code, printed, err = interrupt(argv, sig_name, delay)
    check_outcome(running, code, printed, err, out, sig_name)


DEFAULT_CASES = [
    (name, ("SIGINT", "SIGTERM")[i % 2], 1.0) for i, name in enumerate(sorted(COMMANDS))
]


@pytest.mark.parametrize(
    "name, sig_name, delay", DEFAULT_CASES, ids=[f"{n}-{s}-{d}s" for n, s, d in DEFAULT_CASES]
)
def test_one_signal_per_command(name, sig_name, delay, inputs, tmp_path):
    _run_case(name, sig_name, delay, inputs, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("delay", DELAYS)
@pytest.mark.parametrize("sig_name", sorted(SIGNALS))
@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_every_signal_every_moment(name, sig_name, delay, inputs, tmp_path):
    _run_case(name, sig_name, delay, inputs, tmp_path)


@pytest.mark.parametrize("package", ["pipeline", "damagenet"])
def test_console_commands_run_inside_the_boundary(package):
    """Issue 31.3: Ctrl-C while the command modules import gave a traceback and exit 1."""
    import importlib

    cli = importlib.import_module(f"{package}.cli")
    assert "run_main(build_parser" in inspect.getsource(cli.main)
    assert "exit_with(main())" in inspect.getsource(cli.entry)
    assert f'{package} = "{package}.cli:entry"' in (ROOT / "pyproject.toml").read_text()


def test_an_interrupted_command_does_not_wait_for_library_threads():
    """A SIGTERM mid-write left zarr's I/O thread waiting: the radar command never exited."""
    code = (
        "import threading, time; from contract.cli import exit_with; "
        "threading.Thread(target=time.sleep, args=(60,)).start(); exit_with(143)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], env=env, timeout=30)
    assert proc.returncode == 143 and time.monotonic() - start < 20
