"""Shared fixtures: the project's folders and small synthetic AOIs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference"


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
