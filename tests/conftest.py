"""Shared fixtures: the project's folders and small synthetic AOIs."""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

# The suite runs on pytest-xdist workers, one per core: each worker's numpy, scikit-learn and
# torch (and the commands the tests start) use one thread, so workers do not fight over cores.
# Set before any of them is imported; a value the caller set is kept.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

# A suite started in the background by a non-interactive shell inherits SIGINT ignored, and so
# would every command it starts: the tests of interrupts need Python's usual handler, as in a
# terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

import pytest
from filelock import FileLock
from support.paths import DEMO_AOIS, REFERENCE, ROOT


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def reference() -> Path:
    if not REFERENCE.exists():
        pytest.skip("../shared/reference is not beside the project")
    return REFERENCE


@pytest.fixture
def aoi_copy(tmp_path: Path):
    """Copy a catalogue AOI into tmp and optionally edit its properties/geometry."""

    def make(slug: str = "bucha", edit=None, name: str | None = None) -> Path:
        doc = json.loads((ROOT / "aois" / f"{slug}.geojson").read_text())
        if edit is not None:
            edit(doc)
        path = tmp_path / (name or f"{slug}.geojson")
        path.write_text(json.dumps(doc))
        return path

    return make


@pytest.fixture(scope="session")
def bucha_aoi_path() -> Path:
    return ROOT / "aois" / "bucha.geojson"


@pytest.fixture(scope="session")
def session_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("session")


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def made_once(tmp_path_factory, name: str, make: Callable[[Path], None]) -> Path:
    """A folder that one test process fills and the others read: under pytest-xdist each
    worker has its own session, so a fixture that costs seconds would otherwise be made once
    per worker. The first worker to take the lock makes it; the others wait, then read."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # this run's folder, above each worker's own
    folder = base / name
    with FileLock(str(base / f"{name}.lock")):
        if not (folder / ".complete").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            make(folder)
            (folder / ".complete").touch()
    return folder


def _make_aoi_rasters(base: Path) -> None:
    from pipeline.aoi import load_aoi
    from pipeline.labels.rasterise import make_labels
    from pipeline.scenes import acquire_scene
    from pipeline.synthetic import generate_synthetic

    for i, slug in enumerate(DEMO_AOIS):
        aoi = load_aoi(ROOT / "aois" / f"{slug}.geojson")
        d = base / slug
        syn = generate_synthetic(aoi, d / "synthetic", seed=i, max_size_km=2.0)
        for epoch in ("before", "after"):
            acquire_scene(aoi, epoch, d / f"{epoch}.tif", "synthetic", max_size_km=2.0, seed=i)
        make_labels(aoi, d / "after.tif", syn.unosat_zip, d / "labels.tif")


@pytest.fixture(scope="session")
def aoi_rasters(tmp_path_factory):
    """Scenes and labels for three neighbouring AOIs, made by the pipeline's own steps."""
    base = made_once(tmp_path_factory, "aoi_rasters", _make_aoi_rasters)
    return {
        slug: {
            "before": base / slug / "before.tif",
            "after": base / slug / "after.tif",
            "labels": base / slug / "labels.tif",
            "dir": base / slug,
        }
        for slug in DEMO_AOIS
    }


@pytest.fixture(scope="session")
def patch_files(aoi_rasters, tmp_path_factory):
    from pipeline.patches import cut_patches

    def make(folder: Path) -> None:
        for slug, r in aoi_rasters.items():
            cut_patches(
                slug, r["before"], r["after"], r["labels"], folder / f"{slug}.npz", progress=False
            )

    base = made_once(tmp_path_factory, "patch_files", make)
    return [base / f"{slug}.npz" for slug in aoi_rasters]
