"""Messages that say what is true, and defaults that agree (issue 31.5, 31.6, 31.8).

The one-line refusals of bad inputs are cases of ``tests/test_bad_inputs.py``; here: a named
input that does not exist exits 2 in every command, an AOI file declaring a projected CRS is
read in it, and the scene source defaults agree between library, command line and workflow.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import yaml
from pyproj import Transformer
from support.cli import check_one_line, run_cli
from support.paths import ROOT

from pipeline.aoi import load_aoi
from pipeline.errors import InputFileError
from pipeline.scenes import acquire_scene
from pipeline.scenes.cli import add_parser as scene_parser
from pipeline.scenes.defaults import DEFAULT_SOURCE, SOURCES
from pipeline.scenes.sources import READERS

AOI = str(ROOT / "aois" / "bucha.geojson")
#: commands whose parsers do not yet check their inputs (not this module's files): each needs
#: ``type=contract.options.existing_path`` on the argument named
PENDING: dict[str, str] = {}  # commands whose parser does not yet check its inputs
EVERY_COMMAND = [
    ("aoi", ["pipeline", "aoi", "check", "{nope}"]),
    ("synthetic", ["pipeline", "synthetic", "{nope}", "--out", "{out}"]),
    ("scene", ["pipeline", "scene", "{nope}", "--epoch", "after", "--out", "{out}/s.tif"]),
    (
        "radar",
        ["pipeline", "radar", AOI, "--out", "{out}/r", "--source", "local", "--input", "{nope}"],
    ),
    ("unosat", ["pipeline", "unosat", "{nope}", "--out", "{out}/u.zip"]),
    ("labels", ["pipeline", "labels", AOI, "--grid", "{nope}", "--out", "{out}/l.tif"]),
    (
        "patches",
        [
            "pipeline",
            "patches",
            "{nope}",
            "--before",
            AOI,
            "--after",
            AOI,
            "--labels",
            AOI,
            "--out",
            "{out}/p.npz",
        ],
    ),  # fmt: skip
    ("targets", ["pipeline", "targets", AOI, "--grid", "{nope}", "--out", "{out}/t.tif"]),
    (
        "targets-unosat",
        ["pipeline", "targets", AOI, "--grid", AOI, "--unosat", "{nope}", "--out", "{out}/t.tif"],
    ),
    (
        "tiles",
        [
            "pipeline",
            "tiles",
            AOI,
            "--before",
            "{nope}",
            "--after",
            "{nope}",
            "--all-negative",
            "--out",
            "{out}/t.npz",
        ],
    ),  # fmt: skip
    ("oscd", ["pipeline", "oscd", "--root", "{nope}", "--city", "x", "--out", "{out}"]),
    ("dataset", ["pipeline", "dataset", "{nope}", "--out", "{out}/d.npz"]),
    ("train", ["damagenet", "train", "--npz", "{nope}", "--out", "{out}", "--ckpt", "{out}/m.pt"]),
    (
        "evaluate",
        ["damagenet", "evaluate", "--npz", "{nope}", "--ckpt", "{nope}", "--out", "{out}"],
    ),
    (
        "predict",
        [
            "damagenet",
            "predict",
            "--before",
            "{nope}",
            "--after",
            "{nope}",
            "--ckpt",
            "{nope}",
            "--out",
            "{out}/m_damage_prob.tif",
        ],
    ),  # fmt: skip
    ("crossval", ["damagenet", "crossval", "--npz", "{nope}", "--k", "2", "--out", "{out}"]),
    ("pwtt", ["damagenet", "pwtt", "--radar", "{nope}", "--out", "{out}/p.tif"]),
    ("fuse", ["damagenet", "fuse", "--pwtt", "{nope}", "--optical", "{nope}", "--out", "{out}/f"]),
    (
        "aggregate",
        [
            "damagenet",
            "aggregate",
            "--map",
            "{nope}",
            "--buildings",
            "{nope}",
            "--out",
            "{out}/a.gpkg",
        ],
    ),  # fmt: skip
    (
        "import-seed",
        [
            "damagenet",
            "import-seed",
            "--weights",
            "{nope}",
            "--stats",
            "{nope}",
            "--out",
            "{out}/s.pt",
        ],
    ),  # fmt: skip
    ("info", ["damagenet", "info", "{nope}"]),
]


@pytest.mark.parametrize(
    "name, argv",
    [
        pytest.param(
            name,
            argv,
            marks=[pytest.mark.xfail(strict=True, reason=f"pending: {PENDING[name]}")]
            if name in PENDING
            else [],
        )
        for name, argv in EVERY_COMMAND
    ],
    ids=[name for name, _ in EVERY_COMMAND],
)
def test_every_command_refuses_a_missing_input_with_exit_2(name, argv, tmp_path, capsys):
    """Issue 31.5: the documented rule is exit 2 for a named input that is missing."""
    nope = tmp_path / "nope.file"
    out = tmp_path / "out"
    code = run_cli([a.format(nope=nope, out=out) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    check_one_line(err, ("nope.file",))
    assert not out.exists() or not any(out.iterdir())


def _bucha_in(crs_name: str, to_metres: bool) -> dict:
    doc = json.loads(Path(AOI).read_text())
    doc["crs"] = {"type": "name", "properties": {"name": crs_name}}
    if to_metres:
        t = Transformer.from_crs(4326, 3857, always_xy=True)
        geom = doc["features"][0]["geometry"]
        geom["coordinates"] = [[list(t.transform(*p)) for p in r] for r in geom["coordinates"]]
    return doc


def test_aoi_file_is_read_in_the_crs_it_declares(tmp_path):
    """Issue 31.6: a ``crs`` member is read, never ignored: Web Mercator metres are brought
    to lon/lat; Web Mercator with degrees is refused naming the CRS and the coordinates."""
    for sub, crs, metres in (
        ("merc", "urn:ogc:def:crs:EPSG::3857", True),
        ("deg", "EPSG:4326", False),
    ):  # noqa: E501
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "bucha.geojson").write_text(json.dumps(_bucha_in(crs, metres)))
    original = load_aoi(AOI)
    for sub in ("merc", "deg"):
        aoi = load_aoi(tmp_path / sub / "bucha.geojson")
        assert aoi.geometry.equals_exact(original.geometry, 1e-7), sub
    (tmp_path / "bad").mkdir()
    bad = tmp_path / "bad" / "bucha.geojson"
    bad.write_text(json.dumps(_bucha_in("urn:ogc:def:crs:EPSG::3857", False)))
    with pytest.raises(InputFileError, match=r"crs: declares EPSG:3857 \(metres\).*degrees"):
        load_aoi(bad)


def test_library_command_line_and_workflow_default_to_the_same_source():
    """Issue 31.8: ``acquire_scene`` defaulted to sentinelhub while the CLI and config said
    stac."""
    import argparse

    assert inspect.signature(acquire_scene).parameters["source"].default == DEFAULT_SOURCE
    parser = argparse.ArgumentParser()
    scene_parser(parser.add_subparsers())
    args = parser.parse_args(["scene", AOI, "--epoch", "after", "--out", "x.tif"])
    assert args.source == DEFAULT_SOURCE == "stac"
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    scenes = schema["properties"]["scenes"]["properties"]["source"]
    assert scenes["default"] == DEFAULT_SOURCE and tuple(scenes["enum"]) == SOURCES
    assert tuple(READERS) == SOURCES
