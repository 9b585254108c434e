"""Shared fixtures: the project's folders and small synthetic AOIs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

# The suite runs on pytest-xdist workers, one per core: each worker's numpy, scikit-learn and
# torch (and the commands the tests start) use one thread, so workers do not fight over cores.
# Set before any of them is imported; a value the caller set is kept.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest
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


@pytest.fixture(scope="session")
def aoi_rasters(tmp_path_factory):
    """Scenes and labels for three neighbouring AOIs, made by the pipeline's own steps."""
    from pipeline.aoi import load_aoi
    from pipeline.labels.rasterise import make_labels
    from pipeline.scenes import acquire_scene
    from pipeline.synthetic import generate_synthetic

    base = tmp_path_factory.mktemp("aoi_rasters")
    out = {}
    for i, slug in enumerate(DEMO_AOIS):
        aoi = load_aoi(ROOT / "aois" / f"{slug}.geojson")
        d = base / slug
        syn = generate_synthetic(aoi, d / "synthetic", seed=i, max_size_km=2.0)
        for epoch in ("before", "after"):
            acquire_scene(aoi, epoch, d / f"{epoch}.tif", "synthetic", max_size_km=2.0, seed=i)
        make_labels(aoi, d / "after.tif", syn.unosat_zip, d / "labels.tif")
        out[slug] = {
            "before": d / "before.tif",
            "after": d / "after.tif",
            "labels": d / "labels.tif",
            "dir": d,
        }
    return out


@pytest.fixture(scope="session")
def patch_files(aoi_rasters):
    from pipeline.patches import cut_patches

    files = []
    for slug, r in aoi_rasters.items():
        path = r["dir"] / "patches.npz"
        cut_patches(slug, r["before"], r["after"], r["labels"], path, progress=False)
        files.append(path)
    return files
