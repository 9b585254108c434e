"""Bad-input suite (issue 21): every command, each kind of bad input, one line and nothing left.

Each case names the command line, how the bad input is made, the exit status, the words the one
message must contain, and then checks that the output folder holds no final file and no
temporary one (``.*.part*`` files, ``.patches-*``/``.predict-*`` or other hidden folders).

Read-only and full disks: these tests run as root in CI and here, where ``chmod 0o555`` does not
stop writes, and mounting a tmpfs needs privileges a test must not assume. So when the process
can write to a 0o555 folder, the fault is injected where the operating system reports it to
Python: ``tempfile.mkstemp``/``mkdtemp``, ``os.replace`` and ``open`` for writing raise
``OSError(EROFS)``/``PermissionError(EACCES)``/``OSError(ENOSPC)`` for paths inside the output
folder. This exercises the real code path - the writer's cleanup and the CLI boundary's
translation of the errno - since Python surfaces those failures exactly so. As a non-root user,
the read-only case uses a real 0o555 folder instead.
"""

from __future__ import annotations

import builtins
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import rasterio
from support.cli import check_one_line, leftovers, run_cli
from support.model_data import write_study_npz
from support.paths import ROOT

from contract.errors import SceneScaleError
from contract.scene_scale import check_scene_scale
from damagenet.data.pairs import Normalisation
from damagenet.models.checkpoint import save_checkpoint
from damagenet.models.siamese_resnet import SiameseResNet


@dataclass
class Case:
    id: str
    argv: list[str]  # "pipeline ..." or "damagenet ...", {name} filled in
    code: int
    words: tuple[str, ...]
    make: Callable[[Path, dict], None] | None = None  # writes the bad input
    fault: int | None = None  # errno injected for writes into the output folder
    env: dict = field(default_factory=dict)


def truncate(src_key: str, name: str):
    def make(tmp: Path, files: dict) -> None:
        data = Path(files[src_key]).read_bytes()
        (tmp / name).write_bytes(data[: len(data) // 3])
        files[name.split(".")[0]] = str(tmp / name)

    return make


def float_scene(nan: bool):
    """A float32 reflectance (0..1) copy of the after scene, optionally with NaN as nodata."""

    def make(tmp: Path, files: dict) -> None:
        with rasterio.open(files["after"]) as src:
            prof, data = src.profile, src.read().astype("float32") / 10000
        if nan:
            data[:, :4, :4] = np.nan
        prof.update(dtype="float32", nodata=np.nan if nan else None)
        with rasterio.open(tmp / "float.tif", "w", **prof) as dst:
            dst.write(data)
        files["float"] = str(tmp / "float.tif")

    return make


def aoi_edit(name: str, edit: Callable[[dict], None]):
    """A copy of the Bucha AOI file, edited."""

    def make(tmp: Path, files: dict) -> None:
        doc = json.loads(Path(files["aoi"]).read_text())
        edit(doc)
        folder = tmp / name
        folder.mkdir()
        (folder / "bucha.geojson").write_text(json.dumps(doc))
        files[name] = str(folder / "bucha.geojson")

    return make


def drop_properties(doc: dict) -> None:
    for key in ("name", "before", "unosat_aoi"):
        del doc["features"][0]["properties"][key]


def declare_web_mercator(doc: dict) -> None:
    doc["crs"] = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3857"}}


def dead_port(tmp: Path, files: dict) -> None:
    """A port on 127.0.0.1 that nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        files["deadport"] = str(probe.getsockname()[1])


def missing(flag_case: str, argv: list[str]) -> Case:
    """A named input that does not exist: a usage error (exit 2) naming it, before any work."""
    return Case(f"missing-{flag_case}", argv, 2, ("nope", "no such file"))


NOPE = "{out}/nope"
OUT = "{out}"
CASES = [
    # malformed and out-of-range options: exit 2, checked where parsed
    Case(
        "aoi-new-bad-date",
        [
            "pipeline",
            "aoi",
            "new",
            "x",
            "--bbox",
            "30.2",
            "50.5",
            "30.3",
            "50.6",
            "--before",
            "2021-13-45",
            "--aoi-dir",
            OUT,
        ],
        2,
        ("--before", "2021-13-45"),
    ),
    Case(
        "labels-bad-after-date",
        [
            "pipeline",
            "labels",
            "{aoi}",
            "--grid",
            "{after}",
            "--unosat",
            "{unosat}",
            "--out",
            OUT + "/l.tif",
            "--after-date",
            "05/05/2022",
        ],
        2,
        ("05/05/2022",),
    ),
    Case(
        "scene-mask-classes",
        [
            "pipeline",
            "scene",
            "{aoi}",
            "--epoch",
            "after",
            "--out",
            OUT + "/s.tif",
            "--source",
            "synthetic",
            "--mask-classes",
            "a,b",
        ],
        2,
        ("--mask-classes",),
    ),
    Case(
        "predict-threshold-abc",
        [
            "damagenet",
            "predict",
            "--before",
            "{before}",
            "--after",
            "{after}",
            "--ckpt",
            "{ckpt}",
            "--out",
            OUT + "/m_damage_prob.tif",
            "--threshold",
            "abc",
        ],
        2,
        ("--threshold", "abc"),
    ),
    Case(
        "train-batch-size-0",
        [
            "damagenet",
            "train",
            "--npz",
            "{npz}",
            "--out",
            OUT,
            "--ckpt",
            OUT + "/m.pt",
            "--batch-size",
            "0",
        ],
        2,
        ("--batch-size",),
    ),
    Case(
        "train-epochs-0",
        [
            "damagenet",
            "train",
            "--npz",
            "{npz}",
            "--out",
            OUT,
            "--ckpt",
            OUT + "/m.pt",
            "--epochs",
            "0",
        ],
        2,
        ("--epochs",),
    ),
    Case(
        "aggregate-threshold",
        [
            "damagenet",
            "aggregate",
            "--map",
            "{after}",
            "--buildings",
            "{after}",
            "--out",
            OUT + "/a.gpkg",
            "--threshold",
            "abc",
        ],
        2,
        ("--threshold",),
    ),
    # truncated and corrupt inputs: exit 1, the file named
    Case(
        "patches-truncated-tif",
        [
            "pipeline",
            "patches",
            "{aoi}",
            "--before",
            "{cut}",
            "--after",
            "{after}",
            "--labels",
            "{labels}",
            "--out",
            OUT + "/p.npz",
        ],
        1,
        ("cut.tif",),
        truncate("before", "cut.tif"),
    ),
    Case(
        "predict-truncated-tif",
        [
            "damagenet",
            "predict",
            "--before",
            "{cut}",
            "--after",
            "{after}",
            "--ckpt",
            "{ckpt}",
            "--out",
            OUT + "/m_damage_prob.tif",
        ],
        1,
        ("cut.tif",),
        truncate("before", "cut.tif"),
    ),
    Case(
        "labels-truncated-grid",
        [
            "pipeline",
            "labels",
            "{aoi}",
            "--grid",
            "{cut}",
            "--unosat",
            "{unosat}",
            "--out",
            OUT + "/l.tif",
        ],
        1,
        ("cut.tif",),
        truncate("after", "cut.tif"),
    ),
    Case(
        "dataset-truncated-npz",
        ["pipeline", "dataset", "{cutnpz}", "--out", OUT + "/d.npz"],
        1,
        ("cutnpz.npz", "truncated or corrupt"),
        truncate("patches", "cutnpz.npz"),
    ),
    Case(
        "dataset-empty-split",
        ["pipeline", "dataset", "{patches}", "--out", OUT + "/d.npz", "--block-m", "5000"],
        1,
        ("no damaged patch", "--allow-empty-split"),
    ),
    Case(
        "train-truncated-npz",
        [
            "damagenet",
            "train",
            "--npz",
            "{cutnpz}",
            "--out",
            OUT,
            "--ckpt",
            OUT + "/m.pt",
            "--epochs",
            "1",
        ],
        1,
        ("cutnpz.npz",),
        truncate("npz", "cutnpz.npz"),
    ),
    Case(
        "evaluate-truncated-npz",
        ["damagenet", "evaluate", "--npz", "{cutnpz}", "--ckpt", "{ckpt}", "--out", OUT],
        1,
        ("cutnpz.npz",),
        truncate("npz", "cutnpz.npz"),
    ),
    Case(
        "info-truncated-ckpt",
        ["damagenet", "info", "{cutpt}"],
        1,
        ("cutpt.pt",),
        truncate("ckpt", "cutpt.pt"),
    ),
    Case(
        "predict-truncated-ckpt",
        [
            "damagenet",
            "predict",
            "--before",
            "{before}",
            "--after",
            "{after}",
            "--ckpt",
            "{cutpt}",
            "--out",
            OUT + "/m_damage_prob.tif",
        ],
        1,
        ("cutpt.pt",),
        truncate("ckpt", "cutpt.pt"),
    ),
    Case(
        "aggregate-truncated-map",
        [
            "damagenet",
            "aggregate",
            "--map",
            "{cut}",
            "--buildings",
            "{buildings}",
            "--out",
            OUT + "/a.gpkg",
        ],
        1,
        ("cut.tif",),
        truncate("after", "cut.tif"),
    ),
    Case(
        "import-seed-truncated",
        [
            "damagenet",
            "import-seed",
            "--weights",
            "{ckpt}",
            "--stats",
            "{cutnpz}",
            "--out",
            OUT + "/seed.pt",
        ],
        1,
        ("truncated",),
        truncate("npz", "cutnpz.npz"),
    ),
    Case(
        "aoi-check-truncated",
        ["pipeline", "aoi", "check", "{cutaoi}"],
        1,
        ("cutaoi",),
        truncate("aoi", "cutaoi.geojson"),
    ),
    Case("unosat-no-url", ["pipeline", "unosat", "{aoi}", "--out", OUT + "/u.zip"], 1, ("labels",)),
    Case(
        "synthetic-truncated-aoi",
        ["pipeline", "synthetic", "{cutaoi}", "--out", OUT],
        1,
        ("cutaoi",),
        truncate("aoi", "cutaoi.geojson"),
    ),
    Case(
        "credentials-missing",
        ["pipeline", "credentials"],
        1,
        ("credentials",),
        env={"SH_CLIENT_ID": "", "SH_CLIENT_SECRET": "", "SH_CONFIG_HOME": "{out}/none"},
    ),
    # issue 31.5: messages that name what is wrong
    Case(
        "dataset-leave-out-the-only-aoi",
        [
            "pipeline",
            "dataset",
            "{patches}",
            "--out",
            OUT + "/d.npz",
            "--split",
            "aoi",
            "--test-aois",
            "bucha",
        ],
        2,
        ("--test-aois bucha", "only bucha"),
    ),
    Case(
        "aoi-missing-several-properties",
        ["pipeline", "scene", "{noprops}", "--epoch", "after", "--out", OUT + "/s.tif"],
        1,
        ("bucha.geojson", "name: missing", "before: missing", "unosat_aoi: missing"),
        aoi_edit("noprops", drop_properties),
    ),
    Case(
        "aoi-epsg3857-with-degrees",
        ["pipeline", "scene", "{mercator}", "--epoch", "after", "--out", OUT + "/s.tif"],
        1,
        ("bucha.geojson", "EPSG:3857", "look like degrees"),
        aoi_edit("mercator", declare_web_mercator),
    ),
    Case(
        "sentinelhub-unreachable",
        [
            "pipeline",
            "scene",
            "{aoi}",
            "--epoch",
            "after",
            "--out",
            OUT + "/s.tif",
            "--source",
            "sentinelhub",
            "--max-size-km",
            "0.5",
            "--max-attempts",
            "1",
            "--sh-base-url",
            "https://127.0.0.1:{deadport}",
            "--sh-token-url",
            "https://127.0.0.1:{deadport}/token",
        ],
        1,
        ("cannot reach sentinel hub at https://127.0.0.1:", "/token", "connection refused"),
        dead_port,
        env={"SH_CLIENT_ID": "test-client", "SH_CLIENT_SECRET": "test-secret"},
    ),
    missing("scene-aoi", ["pipeline", "scene", NOPE, "--epoch", "after", "--out", OUT + "/s"]),
    missing(
        "scene-input",
        [
            "pipeline",
            "scene",
            "{aoi}",
            "--epoch",
            "after",
            "--out",
            OUT + "/s.tif",
            "--source",
            "local",
            "--input",
            NOPE,
        ],
    ),
    missing("aoi-check", ["pipeline", "aoi", "check", NOPE]),
    missing("aoi-new-polygon", ["pipeline", "aoi", "new", "x", "--polygon", NOPE]),
    missing("unosat-aoi", ["pipeline", "unosat", NOPE, "--out", OUT + "/u.zip"]),
    missing(
        "labels-grid",
        ["pipeline", "labels", "{aoi}", "--grid", NOPE, "--out", OUT + "/l.tif"],
    ),
    missing(
        "patches-labels",
        [
            "pipeline",
            "patches",
            "{aoi}",
            "--before",
            "{before}",
            "--after",
            "{after}",
            "--labels",
            NOPE,
            "--out",
            OUT + "/p.npz",
        ],
    ),
    missing("dataset-input", ["pipeline", "dataset", "{patches}", NOPE, "--out", OUT + "/d"]),
    missing("train-npz", ["damagenet", "train", "--npz", NOPE, "--out", OUT, "--ckpt", OUT + "/m"]),
    missing(
        "predict-before",
        [
            "damagenet",
            "predict",
            "--before",
            NOPE,
            "--after",
            "{after}",
            "--ckpt",
            "{ckpt}",
            "--out",
            OUT + "/m_damage_prob.tif",
        ],
    ),
    missing(
        "predict-ckpt",
        [
            "damagenet",
            "predict",
            "--before",
            "{before}",
            "--after",
            "{after}",
            "--ckpt",
            NOPE,
            "--out",
            OUT + "/m_damage_prob.tif",
        ],
    ),
    # scenes not on the product's DN scale
    Case(
        "predict-float-reflectance",
        [
            "damagenet",
            "predict",
            "--before",
            "{before}",
            "--after",
            "{float}",
            "--ckpt",
            "{ckpt}",
            "--out",
            OUT + "/m_damage_prob.tif",
        ],
        1,
        ("float.tif", "float32"),
        float_scene(nan=False),
    ),
    Case(
        "predict-float-nan",
        [
            "damagenet",
            "predict",
            "--before",
            "{float}",
            "--after",
            "{after}",
            "--ckpt",
            "{ckpt}",
            "--out",
            OUT + "/m_damage_prob.tif",
        ],
        1,
        ("float.tif", "float32"),
        float_scene(nan=True),
    ),
    Case(
        "patches-float-nan",
        [
            "pipeline",
            "patches",
            "{aoi}",
            "--before",
            "{before}",
            "--after",
            "{float}",
            "--labels",
            "{labels}",
            "--out",
            OUT + "/p.npz",
        ],
        1,
        ("float.tif", "float32"),
        float_scene(nan=True),
    ),
]


def empty_file(name: str):
    def make(tmp: Path, files: dict) -> None:
        (tmp / name).write_bytes(b"")
        files[name.split(".")[0]] = str(tmp / name)

    return make


def optical_as_bytes(tmp: Path, files: dict) -> None:
    """A 'damage_probability' map scaled to 0-255 bytes, on the scenes' grid."""
    with rasterio.open(files["labels"]) as src:
        prof = src.profile
    prof.update(count=1, dtype="uint8", nodata=None)
    with rasterio.open(tmp / "bytes.tif", "w", **prof) as dst:
        dst.write(np.full((1, prof["height"], prof["width"]), 200, "uint8"))
        dst.set_band_description(1, "damage_probability")
    files["bytes"] = str(tmp / "bytes.tif")


#: values a user can type that no option means (issue-31 review): exit 2 when parsed
CASES += [
    Case(f"{name}-{value}", argv + [flag, value], 2, (flag, value))
    for name, argv, flag, value in [
        ("tiles-size", ["pipeline", "tiles", "{aoi}", "--before", "{before}", "--after",
                        "{after}", "--targets", "{labels}", "--out", OUT + "/t.npz"],
         "--size", "40"),
        ("dataset-tile-size", ["pipeline", "dataset", "{patches}", "--out", OUT + "/d.npz"],
         "--tile-size", "40"),
        ("dataset-block", ["pipeline", "dataset", "{patches}", "--out", OUT + "/d.npz"],
         "--block-m", "inf"),
        ("dataset-negatives", ["pipeline", "dataset", "{patches}", "--out", OUT + "/d.npz"],
         "--negatives-per-positive", "-1"),
        ("targets-disc", ["pipeline", "targets", "{aoi}", "--grid", "{after}", "--unosat",
                          "{unosat}", "--out", OUT + "/t.tif"], "--disc-px", "nan"),
        ("targets-ring", ["pipeline", "targets", "{aoi}", "--grid", "{after}", "--unosat",
                          "{unosat}", "--out", OUT + "/t.tif"], "--ring-px", "500"),
        ("radar-size", ["pipeline", "radar", "{aoi}", "--source", "synthetic", "--out",
                        OUT + "/r.zarr"], "--max-size-km", "inf"),
        ("train-lr", ["damagenet", "train", "--npz", "{npz}", "--out", OUT, "--ckpt",
                      OUT + "/m.pt"], "--lr-head", "nan"),
        ("train-clip", ["damagenet", "train", "--npz", "{npz}", "--out", OUT, "--ckpt",
                        OUT + "/m.pt"], "--clip-norm", "-1"),
        ("predict-device", ["damagenet", "predict", "--before", "{before}", "--after",
                            "{after}", "--ckpt", "{ckpt}", "--out", OUT + "/m.tif"],
         "--device", "tpu"),
        ("predict-memory", ["damagenet", "predict", "--before", "{before}", "--after",
                            "{after}", "--ckpt", "{ckpt}", "--out", OUT + "/m.tif"],
         "--memory-mb", "inf"),
        ("aggregate-grid", ["damagenet", "aggregate", "--map", "{after}", "--buildings",
                            "{buildings}", "--out", OUT + "/a.gpkg"], "--grid-m", "0.01"),
    ]
] + [
    missing("radar-aoi", ["pipeline", "radar", NOPE, "--source", "synthetic", "--out", OUT]),
    Case("train-ckpt-over-its-data",
         ["damagenet", "train", "--npz", "{npz}", "--out", OUT, "--ckpt", "{npz}"], 2,
         ("study.npz", "is also an input")),
    Case("fuse-over-its-input",
         ["damagenet", "fuse", "--pwtt", "{after}", "--optical", "{labels}", "--out", "{after}"],
         2, ("after.tif", "is also an input")),
    Case("tiles-over-its-input",
         ["pipeline", "tiles", "{aoi}", "--before", "{before}", "--after", "{after}",
          "--targets", "{labels}", "--out", "{labels}"], 2, ("labels.tif", "is also an input")),
    Case("info-empty-ckpt", ["damagenet", "info", "{empty}"], 1, ("empty.pt", "EOFError"),
         empty_file("empty.pt")),
    Case(
        "predict-labels-four-bands",
        ["damagenet", "predict", "--before", "{before}", "--after", "{after}", "--ckpt",
         "{ckpt}", "--labels", "{after}", "--out", OUT + "/m_damage_prob.tif"],
        1,
        ("after.tif", "4 bands", "label raster has one"),
    ),
    Case(
        "fuse-optical-bytes",
        ["damagenet", "fuse", "--pwtt", "{bytes}", "--optical", "{bytes}", "--out",
         OUT + "/f.tif"],
        1,
        ("bytes.tif",),
        optical_as_bytes,
    ),
]  # fmt: skip

DISK_CASES = [
    (
        "aoi-new",
        [
            "pipeline",
            "aoi",
            "new",
            "x",
            "--bbox",
            "30.2",
            "50.5",
            "30.3",
            "50.6",
            "--before",
            "2022-02-01",
            "--after",
            "2022-05-01",
            "--no-labels",
            "--aoi-dir",
            OUT,
        ],
    ),
    (
        "scene",
        [
            "pipeline",
            "scene",
            "{aoi}",
            "--epoch",
            "after",
            "--out",
            OUT + "/s.tif",
            "--source",
            "synthetic",
            "--max-size-km",
            "1",
        ],
    ),
    ("synthetic", ["pipeline", "synthetic", "{aoi}", "--out", OUT, "--max-size-km", "1"]),
    (
        "labels",
        [
            "pipeline",
            "labels",
            "{aoi}",
            "--grid",
            "{after}",
            "--unosat",
            "{unosat}",
            "--out",
            OUT + "/l.tif",
        ],
    ),
    (
        "patches",
        [
            "pipeline",
            "patches",
            "{aoi}",
            "--before",
            "{before}",
            "--after",
            "{after}",
            "--labels",
            "{labels}",
            "--out",
            OUT + "/p.npz",
        ],
    ),
    ("dataset", ["pipeline", "dataset", "{patches}", "{patches2}", "--out", OUT + "/d.npz"]),
    (
        "train",
        [
            "damagenet",
            "train",
            "--npz",
            "{npz}",
            "--out",
            OUT,
            "--ckpt",
            OUT + "/m.pt",
            "--epochs",
            "1",
            "--backbone",
            "resnet18",
            "--device",
            "cpu",
        ],
    ),
    (
        "evaluate",
        [
            "damagenet",
            "evaluate",
            "--npz",
            "{npz}",
            "--ckpt",
            "{ckpt}",
            "--out",
            OUT,
            "--allow-provisional",
            "--device",
            "cpu",
        ],
    ),
    (
        "predict",
        [
            "damagenet",
            "predict",
            "--before",
            "{before}",
            "--after",
            "{after}",
            "--ckpt",
            "{ckpt}",
            "--out",
            OUT + "/m_damage_prob.tif",
            "--device",
            "cpu",
        ],
    ),
]
FAULTS = {
    errno.EROFS: "read-only",
    errno.EACCES: "permission denied",
    errno.ENOSPC: "no space left",
}


@pytest.fixture(scope="module")
def files(aoi_rasters, patch_files, tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("bad_inputs")
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
    bucha = aoi_rasters["bucha"]
    return {
        "aoi": str(ROOT / "aois" / "bucha.geojson"),
        "before": str(bucha["before"]),
        "after": str(bucha["after"]),
        "labels": str(bucha["labels"]),
        "unosat": str(next((bucha["dir"] / "synthetic").glob("*.zip"))),
        "buildings": str(bucha["dir"] / "synthetic" / "buildings.gpkg"),
        "patches": str(patch_files[0]),
        "patches2": str(patch_files[1]),
        "npz": str(write_study_npz(base / "study.npz", sizes=(16, 8, 8))),
        "ckpt": str(ckpt),
    }


def fill(argv: list[str], values: dict) -> list[str]:
    return [a.format(**values) for a in argv]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, files, tmp_path, capsys, monkeypatch):
    values = dict(files)
    out = tmp_path / "out"
    values["out"] = str(out)
    if case.make:
        case.make(tmp_path, values)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value.format(**values))
    assert run_cli(fill(case.argv, values)) == case.code
    captured = capsys.readouterr()
    check_one_line(captured.err or captured.out, case.words)
    assert leftovers(out) == []


def inject_write_fault(monkeypatch, out: Path, code: int) -> None:
    """Make writes inside ``out`` fail with ``code``, where Python sees the OS's answer."""

    def inside(path) -> bool:
        try:
            return Path(os.fspath(path)).resolve().is_relative_to(out.resolve())
        except TypeError:
            return False

    def fail(path) -> OSError:
        cls = PermissionError if code == errno.EACCES else OSError
        return cls(code, os.strerror(code), os.fspath(path))

    real_mkstemp, real_mkdtemp = tempfile.mkstemp, tempfile.mkdtemp
    real_replace, real_open = os.replace, builtins.open

    def mkstemp(suffix=None, prefix=None, dir=None, text=False):
        if dir is not None and inside(dir) and code != errno.ENOSPC:
            raise fail(dir)
        return real_mkstemp(suffix, prefix, dir, text)

    def mkdtemp(suffix=None, prefix=None, dir=None):
        if dir is not None and inside(dir) and code != errno.ENOSPC:
            raise fail(dir)
        return real_mkdtemp(suffix, prefix, dir)

    def replace(src, dst, **kw):
        if inside(dst):
            raise fail(dst)
        return real_replace(src, dst, **kw)

    def open_(file, mode="r", *args, **kw):
        if (
            any(m in mode for m in "wax")
            and not isinstance(file, int)
            and inside(file)
            and code != errno.ENOSPC
        ):
            raise fail(file)
        return real_open(file, mode, *args, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(builtins, "open", open_)


def root_ignores_chmod(tmp: Path) -> bool:
    probe = tmp / "probe"
    probe.mkdir()
    probe.chmod(0o555)
    try:
        (probe / "x").write_text("x")
        return True
    except PermissionError:
        return False
    finally:
        probe.chmod(0o755)
        shutil.rmtree(probe)


@pytest.mark.parametrize("fault", list(FAULTS), ids=[errno.errorcode[f] for f in FAULTS])
@pytest.mark.parametrize("name, argv", DISK_CASES, ids=[c[0] for c in DISK_CASES])
def test_unwritable_output(name, argv, fault, files, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    real_chmod = fault == errno.EACCES and not root_ignores_chmod(tmp_path)
    if real_chmod:
        out.chmod(0o555)
    else:
        inject_write_fault(monkeypatch, out, fault)
    try:
        code = run_cli(fill(argv, {**files, "out": str(out)}))
    finally:
        out.chmod(0o755)
    assert code == 1
    check_one_line(capsys.readouterr().err, (FAULTS[fault],))
    assert leftovers(out) == []


def test_scene_scale_accepts_the_products_dn(files):
    check_scene_scale(files["before"])
    check_scene_scale(files["after"])


@pytest.mark.parametrize("nan", [False, True])
def test_scene_scale_refuses_float_reflectance(files, tmp_path, nan):
    made = dict(files)
    float_scene(nan)(tmp_path, made)
    with pytest.raises(SceneScaleError, match="float32"):
        check_scene_scale(made["float"])


def test_scene_scale_refuses_8bit_values(files, tmp_path):
    with rasterio.open(files["after"]) as src:
        prof, data = src.profile, src.read()
    with rasterio.open(tmp_path / "dark.tif", "w", **prof) as dst:
        dst.write((data // 40).astype(prof["dtype"]))
    with pytest.raises(SceneScaleError, match="medians"):
        check_scene_scale(tmp_path / "dark.tif")


@pytest.mark.parametrize(
    "sig, code, word", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")]
)
def test_interrupted_mid_run_leaves_nothing(sig, code, word, tmp_path):
    """Signal `pipeline synthetic` on a large AOI once it has started writing."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline",
            "synthetic",
            str(ROOT / "aois" / "bucha.geojson"),
            "--out",
            str(out),
            "--max-size-km",
            "30",
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while proc.poll() is None and not out.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert proc.poll() is None, "finished before it could be interrupted"
    proc.send_signal(sig)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert word in err.strip().splitlines()[-1]
    assert leftovers(out) == []


def test_zip_member_that_inflates_past_its_declared_size_is_refused(tmp_path, monkeypatch):
    """A member whose true size exceeds the cap is refused while streaming, not after."""
    import zipfile

    from pipeline.errors import InputFileError as PipelineInputFileError
    from pipeline.scenes import band_files

    monkeypatch.setattr(band_files, "MAX_TEXT_BYTES", 1000)
    path = tmp_path / "S2_MSIL2A.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("MTD_MSIL2A.xml", b"<a>" + b" " * 100_000 + b"</a>")
    with zipfile.ZipFile(path) as zf, pytest.raises(PipelineInputFileError, match="inflates past"):
        band_files.read_member(zf, "MTD_MSIL2A.xml", path)


def test_an_output_path_naming_a_folder_keeps_the_folder(files, tmp_path, capsys):
    """A review found `pipeline targets --out X.tif`, with X.tif a folder, deleted the folder."""
    kept = tmp_path / "t.tif" / "precious"
    kept.mkdir(parents=True)
    argv = ["pipeline", "targets", "{aoi}", "--grid", "{after}", "--unosat", "{unosat}"]
    assert run_cli(fill([*argv, "--out", str(kept.parent)], files)) == 2
    check_one_line(capsys.readouterr().err, ("t.tif", "is a folder"))
    assert kept.is_dir() and [p.name for p in kept.parent.iterdir()] == ["precious"]
