"""Ensembles and calibration in ``damagenet predict`` (issue 16, points 4-5)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch
from distributed import LocalCluster
from support.map_data import write_pair

from damagenet.cli import main
from damagenet.data.pairs import Normalisation
from damagenet.errors import CheckpointError
from damagenet.evaluation.calibration import apply_calibration
from damagenet.inference.scoring import PairScorer, optimise_for_inference
from damagenet.maps.predict import PredictOptions, predict_map
from damagenet.models.checkpoint import checkpoint_hash, load_checkpoint, norm_of, save_checkpoint
from damagenet.models.siamese_resnet import SiameseResNet

RASTERS = ("prob.tif", "class.tif", "agreement.tif")


def _ckpt(path, seed, threshold=0.5, size=16, calibration=None):
    """A random ResNet-18 checkpoint; ``calibration`` stored as ``damagenet crossval`` does."""
    torch.manual_seed(seed)
    extra = {"calibration": calibration} if calibration else None
    save_checkpoint(
        path,
        SiameseResNet("resnet18").eval(),
        patch_size=size,
        norm=Normalisation([0.1] * 4, [0.05] * 4),
        threshold={"value": threshold, "rule": "fixed"},
        history=[],
        dataset={"sha256": "0" * 64},
        extra=extra,
    )
    return path


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("ens")
    return {
        "a": _ckpt(d / "a.pt", 0, 0.4),
        "b": _ckpt(d / "b.pt", 1, 0.6),
        "a_cal": _ckpt(d / "a_cal.pt", 0, 0.4, calibration={"method": "temperature", "T": 2.5}),
        "big": _ckpt(d / "big.pt", 2, 0.5, size=32),
    }


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    # 64 x 80: windows of 16 at stride 16 tile the scene without overlap
    return write_pair(tmp_path_factory.mktemp("scene"), 64, 80)


def _map(tmp_path, pair, ckpt, name, stride=16, **kw):
    out = tmp_path / name / f"{name}_damage_prob.tif"
    summary = predict_map(
        pair["before"],
        pair["after"],
        ckpt,
        out,
        PredictOptions(stride=stride, progress=False, device="cpu", memory_mb=0.05),
        labels=pair["labels"],
        **kw,
    )
    return out, summary


def _read(path):
    with rasterio.open(path) as src:
        return src.read(1), src.profile, src.descriptions, src.tags()


def test_ensemble_mean_and_uncertainty_without_overlap(tmp_path, pair, ckpts):
    pa, _ = _map(tmp_path, pair, ckpts["a"], "a")
    pb, _ = _map(tmp_path, pair, ckpts["b"], "b")
    pe, summary = _map(tmp_path, pair, [ckpts["a"], ckpts["b"]], "e")
    a, prof, _, _ = _read(pa)
    b = _read(pb)[0]
    mean, mean_prof, _, _ = _read(pe)
    unc, unc_prof, desc, tags = _read(pe.with_name("e_damage_uncertainty.tif"))
    valid = a != prof["nodata"]
    assert valid.any() and (~valid).any()  # the nodata corner is kept out
    np.testing.assert_allclose(mean[valid], (a[valid] + b[valid]) / 2, atol=1e-5)
    np.testing.assert_allclose(unc[valid], np.abs(a[valid] - b[valid]) / 2, atol=1e-5)
    assert (unc[~valid] == prof["nodata"]).all() and (unc[valid] > 0).any()
    for key in ("crs", "transform", "width", "height", "nodata"):
        assert unc_prof[key] == mean_prof[key] == prof[key]
    assert unc_prof["dtype"] == "float32" and desc == ("damage_probability_std",)
    assert tags["MEMBER_1"] == str(ckpts["a"]) and tags["MEMBER_2"] == str(ckpts["b"])
    assert tags["MEMBER_2_CHECKPOINT_HASH"] == checkpoint_hash(ckpts["b"])
    assert summary["threshold"] == pytest.approx(0.5)  # mean of 0.4 and 0.6
    assert [m["checkpoint"] for m in summary["ensemble"]["members"]] == [
        str(ckpts["a"]),
        str(ckpts["b"]),
    ]
    on_disk = json.loads(pe.with_name("e_damage_summary.json").read_text())
    assert on_disk["outputs"]["uncertainty"] == str(pe.with_name("e_damage_uncertainty.tif"))
    assert not pa.with_name("a_damage_uncertainty.tif").exists()


def _member_scorer(path):
    model, payload = load_checkpoint(path)
    return PairScorer(model.eval(), norm_of(payload), torch.device("cpu"), 64)


def test_overlapping_windows_average_the_spread_like_the_probability(tmp_path, pair, ckpts):
    """Per pixel: the mean over covering windows of each window's member mean and std."""
    out, _ = _map(tmp_path, pair, [ckpts["a"], ckpts["b"]], "o", stride=5)
    scorers = [_member_scorer(ckpts[k]) for k in ("a", "b")]
    with rasterio.open(pair["before"]) as b, rasterio.open(pair["after"]) as a:
        before, after = b.read(), a.read()
    _, h, w = before.shape
    rows = sorted({*range(0, h - 15, 5), h - 16})
    cols = sorted({*range(0, w - 15, 5), w - 16})
    total, spread, count = np.zeros((h, w)), np.zeros((h, w)), np.zeros((h, w))
    for r in rows:
        for c in cols:
            wb, wa = before[None, :, r : r + 16, c : c + 16], after[None, :, r : r + 16, c : c + 16]
            if (wb == 0).any() or (wa == 0).any():
                continue
            p = np.array([s(wb, wa)[0] for s in scorers])
            total[r : r + 16, c : c + 16] += p.mean()
            spread[r : r + 16, c : c + 16] += p.std()
            count[r : r + 16, c : c + 16] += 1
    covered = count > 0
    mean = _read(out)[0]
    unc = _read(out.with_name("o_damage_uncertainty.tif"))[0]
    np.testing.assert_allclose(mean[covered], (total / np.maximum(count, 1))[covered], atol=1e-5)
    np.testing.assert_allclose(unc[covered], (spread / np.maximum(count, 1))[covered], atol=1e-5)
    assert (unc[~covered] == -9999).all()


def test_members_of_different_patch_size_are_refused(tmp_path, pair, ckpts):
    with pytest.raises(CheckpointError, match="patch size"):
        _map(tmp_path, pair, [ckpts["a"], ckpts["big"]], "m")
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())
    out = tmp_path / "cli" / "c_damage_prob.tif"
    assert (
        main(
            [
                "-q",
                "predict",
                "--before",
                str(pair["before"]),
                "--after",
                str(pair["after"]),
                "--ckpt",
                str(ckpts["a"]),
                "--ckpt",
                str(ckpts["big"]),
                "--out",
                str(out),
            ]
        )
        != 0
    )
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_calibration_is_applied_and_absent_calibration_changes_nothing(tmp_path, pair, ckpts):
    raw, _ = _map(tmp_path, pair, ckpts["a"], "raw")
    cal, _ = _map(tmp_path, pair, ckpts["a_cal"], "cal")
    p_raw, prof, _, _ = _read(raw)
    p_cal = _read(cal)[0]
    valid = p_raw != prof["nodata"]
    expected = apply_calibration(
        p_raw[valid].astype(np.float64), {"method": "temperature", "T": 2.5}
    )
    np.testing.assert_allclose(p_cal[valid], expected, atol=1e-5)
    assert np.abs(p_cal[valid] - p_raw[valid]).max() > 1e-3
    # no calibration key: the map is exactly the one of the plain single-member scorer
    ref, _ = _map(tmp_path, pair, ckpts["a"], "ref", scorer=_folded_scorer(ckpts["a"]))
    for suffix in RASTERS:
        assert (
            raw.with_name(f"raw_damage_{suffix}").read_bytes()
            == ref.with_name(f"ref_damage_{suffix}").read_bytes()
        )


def _folded_scorer(path):
    """The scorer ``predict`` built before ensembles: folded network, no calibration."""
    model, payload = load_checkpoint(path)
    fast = optimise_for_inference(model, torch.device("cpu"), False)
    return PairScorer(fast, norm_of(payload), torch.device("cpu"), 256)


def test_one_checkpoint_on_the_cli_maps_as_before(tmp_path, pair, ckpts):
    out = tmp_path / "cli" / "cli_damage_prob.tif"
    assert (
        main(
            [
                "-q",
                "predict",
                "--before",
                str(pair["before"]),
                "--after",
                str(pair["after"]),
                "--ckpt",
                str(ckpts["a"]),
                "--out",
                str(out),
                "--stride",
                "16",
                "--memory-mb",
                "0.05",
                "--device",
                "cpu",
                "--labels",
                str(pair["labels"]),
            ]
        )
        == 0
    )
    api, _ = _map(tmp_path, pair, ckpts["a"], "api")
    for suffix in RASTERS:
        assert (
            out.with_name(f"cli_damage_{suffix}").read_bytes()
            == api.with_name(f"api_damage_{suffix}").read_bytes()
        )
    summary = json.loads(out.with_name("cli_damage_summary.json").read_text())
    assert summary["checkpoint"] == str(ckpts["a"]) and "ensemble" not in summary
    assert not out.with_name("cli_damage_uncertainty.tif").exists()


def test_ensemble_on_a_dask_cluster_is_byte_identical(tmp_path, pair, ckpts):
    members = [str(ckpts["a"]), str(ckpts["b"])]
    args = [
        "--before",
        str(pair["before"]),
        "--after",
        str(pair["after"]),
        "--ckpt",
        members[0],
        "--ckpt",
        members[1],
        "--stride",
        "8",
        "--memory-mb",
        "0.05",
        "--device",
        "cpu",
    ]
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        for name, extra in (
            ("here", []),
            ("dask", ["--dask-scheduler", cluster.scheduler_address]),
        ):
            assert (
                main(
                    [
                        "-q",
                        "predict",
                        *args,
                        "--out",
                        str(tmp_path / name / "t_damage_prob.tif"),
                        *extra,
                    ]
                )
                == 0
            )
    for suffix in ("prob.tif", "class.tif", "uncertainty.tif"):
        assert (tmp_path / "here" / f"t_damage_{suffix}").read_bytes() == (
            tmp_path / "dask" / f"t_damage_{suffix}"
        ).read_bytes()
