"""Tiles with per-pixel targets and the tile dataset for the pixel model (issue 28)."""

from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pytest
import rasterio
from support.cli import leftovers, refuse_move_into
from support.paths import DEMO_AOIS, ROOT

from contract.labels import DAMAGE, NO_DAMAGE, UNKNOWN
from contract.npz_keys import DATASET_KIND, PROCESSING_LEVEL, SPLITS, TILES
from pipeline import cli
from pipeline.aoi import load_aoi
from pipeline.dataset import build_dataset
from pipeline.errors import InputFileError, PipelineUsageError
from pipeline.synthetic import generate_synthetic
from pipeline.tiles.cut import cut_tiles
from pipeline.tiles.targets import make_point_targets

T = 64


@pytest.fixture(scope="module")
def tiles(aoi_rasters, tmp_path_factory):
    """Per AOI: targets from its UNOSAT points, its tile file, and bucha's pre-war tiles."""
    base = tmp_path_factory.mktemp("tiles")
    out = {}
    for slug, r in aoi_rasters.items():
        aoi = load_aoi(ROOT / "aois" / f"{slug}.geojson")
        targets = base / f"{slug}_targets.tif"
        make_point_targets(aoi, r["after"], r["dir"] / "synthetic" / "unosat.zip", targets)
        cut_tiles(slug, r["before"], r["after"], targets, base / f"{slug}.npz", size=T)
        out[slug] = {"targets": targets, "tiles": base / f"{slug}.npz"}
    aoi = load_aoi(ROOT / "aois" / "bucha.geojson")
    syn = generate_synthetic(aoi, base / "pre", seed=0, max_size_km=2.0, prewar=True)
    prewar = base / "bucha_prewar.npz"
    cut_tiles("bucha", syn.prewar, aoi_rasters["bucha"]["before"], None, prewar, size=T)
    out["prewar"] = prewar
    return out


def test_tile_file_layout_and_contents(tiles, aoi_rasters):
    d = np.load(tiles["bucha"]["tiles"])
    n = len(d["label"])
    assert n > 0 and str(d[DATASET_KIND]) == TILES and str(d["pair"]) == "war"
    assert d["before"].shape == d["after"].shape == (n, 4, T, T)
    assert d["before"].dtype == np.uint16 and d["label"].dtype == np.uint8
    assert d["label"].shape == (n, T, T)
    assert set(np.unique(d["label"])) <= {DAMAGE, NO_DAMAGE, UNKNOWN}
    assert (d["damage_pixels"] == (d["label"] == DAMAGE).sum(axis=(1, 2))).all()
    r = aoi_rasters["bucha"]
    with (
        rasterio.open(r["before"]) as b,
        rasterio.open(r["after"]) as a,
        rasterio.open(tiles["bucha"]["targets"]) as t,
    ):
        before, after, target = b.read(), a.read(), t.read(1)
    for i in range(n):
        rows = slice(int(d["row"][i]), int(d["row"][i]) + T)
        cols = slice(int(d["col"][i]), int(d["col"][i]) + T)
        assert (d["before"][i] == before[:, rows, cols]).all()
        assert (d["after"][i] == after[:, rows, cols]).all()
        nodata = (before[:, rows, cols] == 0).any(0) | (after[:, rows, cols] == 0).any(0)
        want = np.where(nodata, UNKNOWN, target[rows, cols])
        assert (d["label"][i] == want).all()  # cloud and nodata of either date are ignored
    summary = json.loads(tiles["bucha"]["tiles"].with_suffix(".json").read_text())
    assert summary["kept"] == n and summary["damage_pixels"] == int(d["damage_pixels"].sum())


def test_tiles_deterministic_and_unlabelled_tiles_dropped(tiles, aoi_rasters, tmp_path):
    r = aoi_rasters["irpin"]
    again = tmp_path / "irpin.npz"
    cut_tiles("irpin", r["before"], r["after"], tiles["irpin"]["targets"], again, size=T)
    assert again.read_bytes() == tiles["irpin"]["tiles"].read_bytes()
    counts = cut_tiles(
        "irpin",
        r["before"],
        r["after"],
        tiles["irpin"]["targets"],
        tmp_path / "m.npz",
        size=T,
        min_labelled=T * T,
    )
    assert counts.dropped_unlabelled > 0 and counts.kept + counts.dropped_unlabelled == 9
    assert (np.load(tmp_path / "m.npz")["label"] != UNKNOWN).all()


def test_prewar_pair_is_all_negative(tiles, aoi_rasters, tmp_path):
    d = np.load(tiles["prewar"])
    assert str(d["pair"]) == "prewar" and len(d["label"]) > 0
    assert set(np.unique(d["label"])) <= {NO_DAMAGE, UNKNOWN}
    assert (d["label"] == NO_DAMAGE).mean() > 0.5
    r = aoi_rasters["bucha"]
    with pytest.raises(InputFileError, match="not before 2022-02-24"):
        cut_tiles("bucha", r["before"], r["after"], None, tmp_path / "x.npz", size=T)
    assert not (tmp_path / "x.npz").exists()


def _tag_level(path, level):
    with rasterio.open(path, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as dst:
        dst.update_tags(PROCESSING_LEVEL=level)


def test_scenes_of_two_processing_levels_refused(aoi_rasters, tiles, tmp_path):
    r, targets = aoi_rasters["hostomel"], tiles["hostomel"]["targets"]
    before = shutil.copy(r["before"], tmp_path / "before.tif")
    after = shutil.copy(r["after"], tmp_path / "after.tif")
    _tag_level(before, "L2A")
    _tag_level(after, "L2A")
    cut_tiles("hostomel", before, after, targets, tmp_path / "same.npz")
    assert str(np.load(tmp_path / "same.npz")[PROCESSING_LEVEL]) == "L2A"
    _tag_level(before, "L1C")
    with pytest.raises(InputFileError, match="different processing levels"):
        cut_tiles("hostomel", before, after, targets, tmp_path / "mixed.npz")
    assert not (tmp_path / "mixed.npz").exists()


@pytest.fixture(scope="module")
def tile_dataset(tiles, tmp_path_factory):
    out = tmp_path_factory.mktemp("tile_ds") / "tiles.npz"
    inputs = [tiles[s]["tiles"] for s in DEMO_AOIS] + [tiles["prewar"]]
    summary = build_dataset(inputs, out, tile_size=T)
    return out, summary


def test_tile_dataset_keys_and_targets(tile_dataset, tiles):
    out, summary = tile_dataset
    d = np.load(out)
    assert str(d[DATASET_KIND]) == TILES
    assert json.loads(str(d["config"]))["tile_size"] == T
    for s in SPLITS:
        n = len(d[f"y_{s}"])
        assert n > 0 and d[f"y_{s}"].shape == (n, T, T) and d[f"y_{s}"].dtype == np.uint8
        assert d[f"Xb_{s}"].shape == d[f"Xa_{s}"].shape == (n, 4, T, T)
        assert d[f"Xb_{s}"].dtype == np.uint16
        for meta in ("aoi", "row", "col", "lon", "lat", "block", "damage_pixels", "prewar"):
            assert d[f"{meta}_{s}"].shape == (n,)
        assert (d[f"damage_pixels_{s}"] == (d[f"y_{s}"] == DAMAGE).sum(axis=(1, 2))).all()
        assert (d[f"y_{s}"] == DAMAGE).any()
        assert not (d[f"y_{s}"][d[f"prewar_{s}"] == 1] == DAMAGE).any()
        assert summary["totals"][s]["tiles"] == n
    assert summary["config"]["prewar_inputs"] == ["bucha"]
    prewar = len(np.load(tiles["prewar"])["label"])
    assert sum(summary["totals"][s]["prewar_tiles"] for s in SPLITS) == prewar


def test_tile_ground_never_crosses_splits(tile_dataset):
    d = np.load(tile_dataset[0])
    where = {s: set(zip(d[f"aoi_{s}"], d[f"row_{s}"], d[f"col_{s}"], strict=True)) for s in SPLITS}
    blocks = {s: set(zip(d[f"aoi_{s}"], d[f"block_{s}"], strict=True)) for s in SPLITS}
    for s1, s2 in itertools.combinations(SPLITS, 2):
        assert not where[s1] & where[s2]  # a pre-war tile sits in its war tile's split
        assert not blocks[s1] & blocks[s2]
    prewar = {
        (a, r, c)
        for s in SPLITS
        for a, r, c, p in zip(
            d[f"aoi_{s}"], d[f"row_{s}"], d[f"col_{s}"], d[f"prewar_{s}"], strict=True
        )
        if p
    }
    assert prewar and all(sum(k in where[s] for s in SPLITS) == 1 for k in prewar)


def test_tile_dataset_deterministic_and_leave_aoi_out(tiles, tmp_path):
    inputs = [tiles[s]["tiles"] for s in DEMO_AOIS]
    build_dataset(inputs, tmp_path / "a.npz", tile_size=T, seed=4)
    build_dataset(list(reversed(inputs)), tmp_path / "b.npz", tile_size=T, seed=4)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    build_dataset(inputs, tmp_path / "c.npz", tile_size=T, split="aoi", test_aois=["irpin"])
    d = np.load(tmp_path / "c.npz")
    assert set(d["aoi_test"]) == {"irpin"} and "irpin" not in set(d["aoi_train"])


def test_tiles_and_patches_not_mixed_up(tiles, patch_files, tmp_path):
    inputs = [tiles[s]["tiles"] for s in DEMO_AOIS]
    with pytest.raises(PipelineUsageError, match=r"bucha\.npz: a tile file.*--tile-size 64"):
        build_dataset(inputs, tmp_path / "d.npz")
    with pytest.raises(PipelineUsageError, match="a patch file from 'pipeline patches'"):
        build_dataset(patch_files, tmp_path / "d.npz", tile_size=T)
    with pytest.raises(PipelineUsageError, match="tiles of 64 px, but --tile-size 32"):
        build_dataset(inputs, tmp_path / "d.npz", tile_size=32)
    with pytest.raises(PipelineUsageError, match="straddles"):
        build_dataset(inputs, tmp_path / "d.npz", tile_size=T, block_m=320)
    assert not (tmp_path / "d.npz").exists()


def test_tile_levels_carried_and_never_mixed(tiles, tmp_path):
    files = []
    for slug, level in zip(DEMO_AOIS, ("L2A", "L2A", "L1C"), strict=True):
        d = dict(np.load(tiles[slug]["tiles"]))
        d[PROCESSING_LEVEL] = np.array(level)
        files.append(tmp_path / f"{slug}.npz")
        np.savez(files[-1], **d)
    unknown = dict(np.load(tiles["hostomel"]["tiles"]))
    unknown.pop(PROCESSING_LEVEL, None)  # tiles of scenes that record no level
    np.savez(tmp_path / "hostomel_unknown.npz", **unknown)
    build_dataset(files[:2] + [tmp_path / "hostomel_unknown.npz"], tmp_path / "u.npz", tile_size=T)
    assert PROCESSING_LEVEL not in np.load(tmp_path / "u.npz").files  # one input unknown
    with pytest.raises(InputFileError, match=r"different processing levels.*hostomel\.npz: L1C"):
        build_dataset(files, tmp_path / "d.npz", tile_size=T)


def test_cli_targets_tiles_dataset(tiles, aoi_rasters, tmp_path, monkeypatch, capsys):
    if "pipeline.tiles.cli" not in cli.COMMAND_MODULES:
        monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "pipeline.tiles.cli"))
    r = aoi_rasters["bucha"]
    aoi = str(ROOT / "aois" / "bucha.geojson")
    unosat = str(r["dir"] / "synthetic" / "unosat.zip")
    t = tmp_path / "t.tif"
    assert (
        cli.main(
            ["-q", "targets", aoi, "--grid", str(r["after"]), "--unosat", unosat, "--out", str(t)]
        )
        == 0
    )
    assert t.read_bytes() == tiles["bucha"]["targets"].read_bytes()
    args = ["-q", "tiles", aoi, "--before", str(r["before"]), "--after", str(r["after"])]
    assert cli.main([*args, "--targets", str(t), "--out", str(tmp_path / "b.npz")]) == 0
    assert (tmp_path / "b.npz").read_bytes() == tiles["bucha"]["tiles"].read_bytes()
    assert cli.main([*args, "--out", str(tmp_path / "x.npz")]) == 2
    assert "--targets, or --all-negative" in capsys.readouterr().err
    inputs = [str(tiles[s]["tiles"]) for s in ("irpin", "hostomel")] + [str(tmp_path / "b.npz")]
    out = tmp_path / "ds.npz"
    assert cli.main(["-q", "dataset", *inputs, "--tile-size", "64", "--out", str(out)]) == 0
    assert str(np.load(out)[DATASET_KIND]) == TILES
    assert "| bucha | train |" in (tmp_path / "ds_summary.md").read_text()


def test_change_map_is_the_target_itself(aoi_rasters, tmp_path):
    """OSCD-style change maps (1 change, 0 no change, 255 unknown) go through unchanged."""
    from pipeline.grid import grid_of
    from pipeline.rasters import write_cog

    r = aoi_rasters["irpin"]
    grid = grid_of(r["after"])
    change = np.zeros(grid.shape, dtype=np.uint8)
    change[20:30, 40:90], change[150:, :] = DAMAGE, UNKNOWN
    cm = tmp_path / "cm.tif"
    write_cog(cm, change, grid, nodata=UNKNOWN, descriptions=["change"], resampling="NEAREST")
    cut_tiles("irpin", r["before"], r["after"], cm, tmp_path / "t.npz", size=T)
    d = np.load(tmp_path / "t.npz")
    with rasterio.open(r["before"]) as b, rasterio.open(r["after"]) as a:
        nodata = (b.read() == 0).any(0) | (a.read() == 0).any(0)
    for i in range(len(d["label"])):
        win = np.s_[
            int(d["row"][i]) : int(d["row"][i]) + T, int(d["col"][i]) : int(d["col"][i]) + T
        ]
        assert (d["label"][i] == np.where(nodata[win], UNKNOWN, change[win])).all()
    assert int(d["damage_pixels"].sum()) == int((d["label"] == DAMAGE).sum()) > 0


def test_tiles_and_their_summary_published_together(aoi_rasters, tiles, tmp_path, monkeypatch):
    """The NPZ and its JSON are one set: a failure at the last file leaves neither."""
    r = aoi_rasters["irpin"]
    out = tmp_path / "out" / "irpin.npz"
    refuse_move_into(monkeypatch, out.with_suffix(".json"))
    with pytest.raises(OSError, match="Input/output"):
        cut_tiles("irpin", r["before"], r["after"], tiles["irpin"]["targets"], out, size=T)
    assert leftovers(tmp_path / "out") == []
