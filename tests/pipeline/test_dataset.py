"""The balanced, leakage-free dataset with hard negatives (issues 6, 16)."""

from __future__ import annotations

import itertools
import json

import geopandas as gpd
import numpy as np
import pytest

from contract.built_up import built_up
from pipeline.cli import main
from pipeline.dataset import build_dataset
from pipeline.errors import InputFileError, PipelineError
from pipeline.patches import cut_patches

STUDY_KEYS = [
    "Xb_train",
    "Xa_train",
    "y_train",
    "Xb_val",
    "Xa_val",
    "y_val",
    "Xb_test",
    "Xa_test",
    "y_test",
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, patch_files):
    out = tmp_path_factory.mktemp("ds") / "FinalBalanced_splits.npz"
    summary = build_dataset(patch_files, out, block_m=320)
    return out, summary


def test_documented_keys_and_shapes(dataset):
    out, _ = dataset
    d = np.load(out)
    for key in STUDY_KEYS:
        assert key in d.files
    for s in ("train", "val", "test"):
        n = len(d[f"y_{s}"])
        assert n > 0
        assert d[f"Xb_{s}"].shape == d[f"Xa_{s}"].shape == (n, 4, 16, 16)
        assert d[f"Xb_{s}"].dtype == np.uint16 and d[f"y_{s}"].dtype == np.int64
        for meta in ("aoi", "row", "col", "lon", "lat"):
            assert d[f"{meta}_{s}"].shape == (n,)
        assert set(np.unique(d[f"y_{s}"])) == {0, 1}
    assert list(d["bands"]) == ["B02", "B03", "B04", "B08"]


def test_splits_are_spatially_disjoint(dataset):
    d = np.load(dataset[0])
    boxes = {}
    for s in ("train", "val", "test"):
        keys = list(zip(d[f"aoi_{s}"], d[f"row_{s}"], d[f"col_{s}"], strict=True))
        assert len(set(keys)) == len(keys)  # unique within a split
        boxes[s] = list(
            zip(d[f"aoi_{s}"], d[f"row_{s}"], d[f"col_{s}"], d[f"block_{s}"], strict=True)
        )
    for s1, s2 in itertools.combinations(boxes, 2):
        blocks1 = {(a, b) for a, _, _, b in boxes[s1]}
        blocks2 = {(a, b) for a, _, _, b in boxes[s2]}
        assert not blocks1 & blocks2, (s1, s2)
        for (a1, r1, c1, _), (a2, r2, c2, _) in itertools.product(boxes[s1], boxes[s2]):
            if a1 == a2:
                assert abs(int(r1) - int(r2)) >= 16 or abs(int(c1) - int(c2)) >= 16


def test_every_aoi_in_every_split(dataset):
    d = np.load(dataset[0])
    for s in ("train", "val", "test"):
        assert set(d[f"aoi_{s}"]) == {"bucha", "irpin", "hostomel"}


@pytest.mark.parametrize("ratio", [1.0, 2.0])
def test_balanced_as_asked(tmp_path, patch_files, ratio):
    summary = build_dataset(
        patch_files, tmp_path / "d.npz", block_m=320, negatives_per_positive=ratio
    )
    for row in summary["aois"].values():
        for s in ("train", "val", "test"):
            r = row[s]
            available_neg = r["available"] - r["available_damaged"]
            assert r["no_damage"] == min(available_neg, round(ratio * r["damaged"]))
    d = np.load(tmp_path / "d.npz")
    assert d["y_train"].sum() > 0


def test_leave_aoi_out(tmp_path, patch_files):
    build_dataset(patch_files, tmp_path / "d.npz", split="aoi", test_aois=["irpin"], block_m=320)
    d = np.load(tmp_path / "d.npz")
    assert set(d["aoi_test"]) == {"irpin"}
    assert "irpin" not in set(d["aoi_train"]) | set(d["aoi_val"])
    assert len(d["y_val"]) > 0


def test_overlapping_patches_never_cross_splits(tmp_path, aoi_rasters):
    files = []
    for slug, r in aoi_rasters.items():
        p = tmp_path / f"{slug}.npz"
        cut_patches(slug, r["before"], r["after"], r["labels"], p, stride=8, progress=False)
        files.append(p)
    summary = build_dataset(files, tmp_path / "d.npz", block_m=320)
    assert any(row["dropped_block_edge"] > 0 for row in summary["aois"].values())
    d = np.load(tmp_path / "d.npz")
    for s1, s2 in itertools.combinations(("train", "val", "test"), 2):
        for a in ("bucha", "irpin", "hostomel"):
            m1, m2 = d[f"aoi_{s1}"] == a, d[f"aoi_{s2}"] == a
            r1, c1 = d[f"row_{s1}"][m1][:, None], d[f"col_{s1}"][m1][:, None]
            r2, c2 = d[f"row_{s2}"][m2][None, :], d[f"col_{s2}"][m2][None, :]
            overlap = (np.abs(r1 - r2) < 16) & (np.abs(c1 - c2) < 16)
            assert not overlap.any()


def test_deterministic_bytes_and_summary(tmp_path, patch_files):
    build_dataset(patch_files, tmp_path / "a.npz", seed=7, block_m=320)
    build_dataset(list(reversed(patch_files)), tmp_path / "b.npz", seed=7, block_m=320)
    build_dataset(patch_files, tmp_path / "c.npz", seed=8, block_m=320)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    assert (tmp_path / "a.npz").read_bytes() != (tmp_path / "c.npz").read_bytes()
    md = (tmp_path / "a_summary.md").read_text()
    assert "| bucha | train |" in md and "dropped nodata" in md
    assert json.loads((tmp_path / "a_summary.json").read_text())["config"]["seed"] == 7


def test_bad_inputs(tmp_path, aoi_rasters, patch_files):
    r = aoi_rasters["bucha"]
    p8 = tmp_path / "p8.npz"
    cut_patches("bucha2", r["before"], r["after"], r["labels"], p8, size=8, progress=False)
    with pytest.raises(PipelineError, match="mix patch sizes"):
        build_dataset([patch_files[1], p8], tmp_path / "d.npz")
    empty = tmp_path / "neg.npz"
    d = dict(np.load(patch_files[0]))
    keep = d["label"] == 0
    for k in ("before", "after", "label", "damage_pixels", "row", "col", "x", "y", "lon", "lat"):
        d[k] = d[k][keep]
    np.savez(empty, **d)
    with pytest.raises(PipelineError, match="no damaged patch"):
        build_dataset([empty], tmp_path / "d.npz")
    with pytest.raises(PipelineError, match="needs --test-aois"):
        build_dataset(patch_files, tmp_path / "d.npz", split="aoi")
    assert not (tmp_path / "d.npz").exists()


def test_cli(tmp_path, patch_files):
    out = tmp_path / "processed" / "FinalBalanced_splits.npz"
    assert (
        main(
            [
                "-q",
                "dataset",
                *map(str, patch_files),
                "--out",
                str(out),
                "--block-m",
                "320",
                "--seed",
                "3",
            ]
        )
        == 0
    )
    assert out.exists() and (tmp_path / "processed" / "FinalBalanced_splits_summary.md").exists()


def _patch(spectrum, rough=False):
    """A (4, 16, 16) patch of one spectrum, or a checkerboard of it with tree canopy."""
    p = np.broadcast_to(np.array(spectrum, dtype=np.uint16)[:, None, None], (4, 16, 16)).copy()
    if rough:
        tree = np.array([250, 470, 280, 3300], dtype=np.uint16)[:, None]
        board = (np.add.outer(np.arange(16), np.arange(16)) // 2) % 2 == 1
        p[:, board] = tree
    return p


def test_built_up_index_from_the_patch_itself():
    roof, grass = (1150, 1220, 1260, 1500), (380, 680, 420, 3700)
    soil, water = (650, 900, 1150, 1800), (520, 540, 340, 190)
    patches = np.stack(
        [
            _patch(roof, rough=True),
            _patch(grass),
            _patch(soil),
            _patch(soil, rough=True),
            _patch(water),
            _patch(roof),
        ]
    )
    assert built_up(patches).tolist() == [True, False, False, False, False, False]


def test_hard_negatives_come_from_built_up_ground(tmp_path, patch_files):
    runs = {
        share: build_dataset(
            patch_files, tmp_path / f"{share}.npz", block_m=320, hard_negative_share=share
        )
        for share in (0.0, 1.0)
    }
    for share, summary in runs.items():
        assert summary["config"]["hard_negative_share"] == share
    built = {
        share: sum(t["no_damage_built_up"] for t in s["totals"].values())
        for share, s in runs.items()
    }
    assert built[1.0] > built[0.0]
    for row in runs[1.0]["aois"].values():  # all built-up ground first, as far as it goes
        for s in ("train", "val", "test"):
            r = row[s]
            assert r["no_damage_built_up"] == min(r["no_damage"], r["available_no_damage_built_up"])
    d = np.load(tmp_path / "1.0.npz")
    negatives = d["Xb_train"][d["y_train"] == 0]
    assert built_up(negatives).sum() == runs[1.0]["totals"]["train"]["no_damage_built_up"]
    md = (tmp_path / "1.0_summary.md").read_text()
    assert "no damage built-up" in md and "no damage at NVD sites" in md


def test_nvd_sites_are_preferred(tmp_path, patch_files):
    d = np.load(patch_files[0])
    negative = np.nonzero(d["label"] == 0)[0][::7][:6]
    sites = gpd.GeoDataFrame(
        geometry=gpd.points_from_xy(d["x"][negative], d["y"][negative]), crs=str(d["crs"])
    ).to_crs("EPSG:4326")
    nvd = tmp_path / "nvd.geojson"
    sites.to_file(nvd)
    summary = build_dataset(patch_files, tmp_path / "d.npz", block_m=320, nvd_files=[nvd])
    out = np.load(tmp_path / "d.npz")
    picked = {
        (str(a), int(r), int(c))
        for s in ("train", "val", "test")
        for a, r, c in zip(out[f"aoi_{s}"], out[f"row_{s}"], out[f"col_{s}"], strict=True)
    }
    wanted = {(str(d["aoi"]), int(d["row"][i]), int(d["col"][i])) for i in negative}
    assert wanted <= picked
    assert sum(t["no_damage_nvd"] for t in summary["totals"].values()) == len(wanted)
    with pytest.raises(InputFileError, match="not found"):
        build_dataset(patch_files, tmp_path / "e.npz", nvd_files=[tmp_path / "missing.gpkg"])


def test_hard_negative_share_option_checked(tmp_path, patch_files, capsys):
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "dataset",
                *map(str, patch_files),
                "--out",
                str(tmp_path / "d.npz"),
                "--hard-negative-share",
                "1.5",
            ]
        )
    assert exc.value.code == 2 and "must be in [0, 1]" in capsys.readouterr().err


def test_short_negatives_sample_damaged_down_and_say_so(tmp_path, patch_files, caplog):
    """Issue 31: at 640 m blocks some splits lack negatives; the dataset must stay balanced."""
    with caplog.at_level("WARNING", logger="pipeline.dataset"):
        summary = build_dataset(patch_files, tmp_path / "d.npz")
    short = summary["balance"]["short"]
    assert short and summary["balance"]["rule"] == "sample damaged down"
    d = np.load(tmp_path / "d.npz")
    for s in ("train", "val", "test"):
        assert 2 * int(d[f"y_{s}"].sum()) == len(d[f"y_{s}"])  # as many of each class
    first = short[0]
    row = summary["aois"][first["aoi"]][first["split"]]
    assert row["damaged"] == first["damaged_kept"] == row["no_damage"] < first["damaged"]
    assert row["damaged_dropped_for_balance"] == first["damaged"] - first["damaged_kept"]
    message = caplog.text
    assert "sampled down" in message and "--keep-imbalance" in message
    assert f"{first['aoi']} {first['split']}: {first['damaged']} damaged" in message


def test_keep_imbalance_only_on_request_with_a_warning(tmp_path, patch_files, caplog):
    with caplog.at_level("WARNING", logger="pipeline.dataset"):
        summary = build_dataset(patch_files, tmp_path / "d.npz", keep_imbalance=True)
    d = np.load(tmp_path / "d.npz")
    assert any(2 * int(d[f"y_{s}"].sum()) > len(d[f"y_{s}"]) for s in ("train", "val", "test"))
    assert json.loads(str(d["config"]))["keep_imbalance"] is True
    assert "NOT balanced (--keep-imbalance)" in caplog.text
    for r in summary["balance"]["short"]:
        assert f"{r['aoi']} {r['split']}: {r['damaged']} damaged, {r['no_damage']}" in caplog.text


def test_truncated_patch_file_named(tmp_path, patch_files, capsys):
    """Issue 31: a truncated NPZ used to fail with 'File is not a zip file' and no name."""
    cut = tmp_path / "cut.npz"
    data = patch_files[0].read_bytes()
    for size in (len(data) // 2, 100):
        cut.write_bytes(data[:size])
        with pytest.raises(InputFileError, match=r"cut\.npz: truncated or corrupt patch file"):
            build_dataset([cut, patch_files[1]], tmp_path / "d.npz")
    code = main(["-q", "dataset", str(cut), str(patch_files[1]), "--out", str(tmp_path / "d.npz")])
    err = capsys.readouterr().err
    assert code == 1 and str(cut) in err and "Traceback" not in err
    assert not (tmp_path / "d.npz").exists()


def test_leave_aoi_out_of_a_single_aoi_names_it(tmp_path, patch_files, capsys):
    """Issue 31: '--split aoi --test-aois bucha' on bucha alone must say what is wrong."""
    bucha = [p for p in patch_files if np.load(p)["aoi"] == "bucha"]
    args = ["-q", "dataset", *map(str, bucha), "--split", "aoi", "--test-aois", "bucha"]
    assert main([*args, "--out", str(tmp_path / "d.npz")]) == 2
    err = capsys.readouterr().err
    assert "--test-aois bucha" in err and "only bucha" in err and "--split blocks" in err
    assert not (tmp_path / "d.npz").exists()


def test_processing_level_carried_and_never_mixed(tmp_path, patch_files):
    from contract.npz_keys import DATASET_KIND, PROCESSING_LEVEL

    # the fixture's scene products record L2A, and their patch files carry it (issue 31.7)
    assert all(str(np.load(p)[PROCESSING_LEVEL]) == "L2A" for p in patch_files)
    files, old = [], []
    for path, level in zip(patch_files, ("L2A", "L2A", "L1C"), strict=True):
        d = dict(np.load(path))
        d[PROCESSING_LEVEL] = np.array(level)
        files.append(tmp_path / path.stem / "p.npz")
        files[-1].parent.mkdir()
        np.savez(files[-1], **d)
        del d[PROCESSING_LEVEL]  # as written before levels were recorded
        old.append(files[-1].with_name("old.npz"))
        np.savez(old[-1], **d)
    build_dataset(files[:2], tmp_path / "l2a.npz", block_m=320)
    out = np.load(tmp_path / "l2a.npz")
    assert str(out[PROCESSING_LEVEL]) == "L2A" and str(out[DATASET_KIND]) == "patches"
    with pytest.raises(InputFileError, match="different processing levels.*L1C"):
        build_dataset(files, tmp_path / "mixed.npz", block_m=320)
    build_dataset(old, tmp_path / "old.npz", block_m=320)
    assert PROCESSING_LEVEL not in np.load(tmp_path / "old.npz").files


def test_options_record_and_keyword_overrides_agree(tmp_path, patch_files):
    from pipeline.dataset import DatasetOptions

    opts = DatasetOptions(block_m=320, seed=5, test_aois=["irpin"], split="aoi")
    assert opts.test_aois == ("irpin",)
    build_dataset(patch_files, tmp_path / "a.npz", opts)
    build_dataset(
        patch_files, tmp_path / "b.npz", block_m=320, seed=5, test_aois=["irpin"], split="aoi"
    )
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
