"""``damagenet predict`` with a pixel model: the map in one pass over tiles (issue 28)."""

from __future__ import annotations

import json
import logging

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from distributed import LocalCluster
from support.map_data import tiny_checkpoint, write_pair

from damagenet.cli import main
from damagenet.data.pairs import Normalisation
from damagenet.inference.pixel import PixelScorer, prepare_pixel_model
from damagenet.inference.tiles import network_reach
from damagenet.maps.predict import PredictOptions, predict_map
from damagenet.models.checkpoint import load_checkpoint, norm_of, save_checkpoint
from damagenet.models.unet import SiameseUNet

RASTERS = ("prob.tif", "class.tif", "agreement.tif")


def _pixel_ckpt(path, seed, threshold=0.5, level=None):
    """A small random Siamese U-Net checkpoint, trained on scenes of ``level`` (if given)."""
    torch.manual_seed(seed)
    save_checkpoint(
        path,
        SiameseUNet("small", width=4).eval(),
        patch_size=64,
        norm=Normalisation([0.1] * 4, [0.05] * 4),
        threshold={"value": threshold, "rule": "fixed"},
        history=[],
        dataset={"sha256": "0" * 64},
        processing_level=level,
    )
    return path


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("pixel_ckpt")
    return {
        "a": _pixel_ckpt(d / "a.pt", 0, 0.45),
        "b": _pixel_ckpt(d / "b.pt", 1, 0.55),
        "l2a": _pixel_ckpt(d / "l2a.pt", 0, 0.45, level="L2A"),
        "patch": tiny_checkpoint(d / "patch.pt"),
    }


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return write_pair(tmp_path_factory.mktemp("pixel_scene"), 150, 170)


def _predict(tmp_path, pair, ckpt, name, **kw):
    out = tmp_path / name / f"{name}_damage_prob.tif"
    opts = {"progress": False, "device": "cpu", **kw}
    summary = predict_map(
        pair["before"], pair["after"], ckpt, out, PredictOptions(**opts), labels=pair["labels"]
    )
    return out, summary


def _read(path):
    with rasterio.open(path) as src:
        return src.read(1), src.profile, src.descriptions, src.tags()


def _tiles_mb(ckpt, core):
    """A budget whose tiles hold ``core`` px beside their context."""
    model, _ = load_checkpoint(ckpt)
    cpu = torch.device("cpu")
    reach = network_reach(prepare_pixel_model(model, cpu), 4, cpu)
    return reach.bytes_per_px * (2 * reach.halo + core) ** 2 / 2**20 * 1.01


def test_pixel_map_products_and_values(tmp_path, pair, ckpts):
    out, s = _predict(tmp_path, pair, ckpts["a"], "px")
    folder = out.parent
    prob, prof, desc, tags = _read(out)
    with rasterio.open(pair["before"]) as b, rasterio.open(pair["after"]) as a:
        before, after = b.read(), a.read()
        assert (prof["crs"], prof["transform"]) == (b.crs, b.transform)
    assert prof["dtype"] == "float32" and prof["nodata"] == -9999.0
    assert desc == ("damage_probability",) and tags["TILES"] == "1" and tags["CELL_SIZE"] == "16"
    model, payload = load_checkpoint(ckpts["a"])
    pad = ((0, 0), (0, 2), (0, 6))  # to the U-Net's multiple of 8 px, as nodata
    direct = PixelScorer(model, norm_of(payload), torch.device("cpu"))(
        np.pad(before, pad)[None], np.pad(after, pad)[None]
    )[:, :, :150, :170]
    nodata = (before == 0).any(0) | (after == 0).any(0)
    assert (prob[nodata] == -9999.0).all() and nodata[:40, :40].all()
    assert np.abs(prob[~nodata] - direct[0, 0][~nodata]).max() < 1e-5
    cls, *_ = _read(folder / "px_damage_class.tif")
    assert ((cls == 1) == (prob >= 0.45))[~nodata].all() and (cls[nodata] == 255).all()
    for name in ("agreement.tif", "prob.qml", "class.qml", "patches.gpkg", "summary.json"):
        assert (folder / f"px_damage_{name}").exists()
    assert (folder / "px_quicklook.png").exists()
    assert s["model"]["kind"] == "pixel" and s["patch_size"] == 16 and s["stride"] == 16
    assert s["windows"] == 10 * 11 and 0 < s["windows_scored"] < s["windows"]
    assert s["processing_level"] == {
        "model": None,
        "before": None,
        "after": None,
        "mismatch": False,
    }
    assert json.loads((folder / "px_damage_summary.json").read_text()) == json.loads(json.dumps(s))
    cells = gpd.read_file(folder / "px_damage_patches.gpkg", layer="damaged_patches")
    assert len(cells) == s["damaged_patches"] > 0
    assert (cells["probability"] >= 0.45).all()
    assert set(cells["row"]) <= {*range(0, 150 - 15, 16), 150 - 16}  # the grid, flush cells
    assert set(cells["col"]) <= {*range(0, 170 - 15, 16), 170 - 16}


def test_one_tile_and_many_tiles_give_the_same_map(tmp_path, pair, ckpts):
    one, s1 = _predict(tmp_path, pair, ckpts["a"], "one")
    many, s2 = _predict(tmp_path, pair, ckpts["a"], "many", memory_mb=_tiles_mb(ckpts["a"], 32))
    assert s1["model"]["tiles"]["tiles"] == 1 and s2["model"]["tiles"]["tiles"] == 5 * 6
    a, *_ = _read(one)
    b, *_ = _read(many)
    assert ((a == -9999) == (b == -9999)).all()
    assert np.abs(a - b).max() < 1e-5


def test_same_inputs_give_byte_identical_maps(tmp_path, pair, ckpts):
    args = [
        "-q",
        "predict",
        "--before",
        str(pair["before"]),
        "--after",
        str(pair["after"]),
        "--ckpt",
        str(ckpts["a"]),
        "--labels",
        str(pair["labels"]),
        "--device",
        "cpu",
    ]
    for name in ("x", "y"):
        assert main([*args, "--out", str(tmp_path / name / "t_damage_prob.tif")]) == 0
    for suffix in (*RASTERS, "patches.gpkg"):
        x = (tmp_path / "x" / f"t_damage_{suffix}").read_bytes()
        assert x == (tmp_path / "y" / f"t_damage_{suffix}").read_bytes()


def test_cluster_pixel_map_is_byte_identical(tmp_path, pair, ckpts):
    mb = _tiles_mb(ckpts["a"], 64)
    _predict(tmp_path, pair, ckpts["a"], "here", memory_mb=mb)
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        _, s = _predict(
            tmp_path,
            pair,
            ckpts["a"],
            "there",
            memory_mb=mb,
            dask_scheduler=cluster.scheduler_address,
        )
    assert s["model"]["tiles"]["tiles"] > 1
    for suffix in (*RASTERS, "patches.gpkg"):
        here = (tmp_path / "here" / f"here_damage_{suffix}").read_bytes()
        assert here == (tmp_path / "there" / f"there_damage_{suffix}").read_bytes()


def test_pixel_ensemble_writes_its_spread(tmp_path, pair, ckpts):
    out, s = _predict(tmp_path, pair, [ckpts["a"], ckpts["b"]], "ens")
    mean, *_ = _read(out)
    spread, prof, desc, _ = _read(out.parent / "ens_damage_uncertainty.tif")
    assert desc == ("damage_probability_std",) and prof["dtype"] == "float32"
    pa, *_ = _read(_predict(tmp_path, pair, ckpts["a"], "ma")[0])
    pb, *_ = _read(_predict(tmp_path, pair, ckpts["b"], "mb")[0])
    ok = mean != -9999
    assert np.allclose(mean[ok], (pa[ok] + pb[ok]) / 2, atol=1e-6)
    assert np.allclose(spread[ok], np.abs(pa[ok] - pb[ok]) / 2, atol=1e-6)
    assert (spread[~ok] == -9999).all()
    assert s["threshold"] == pytest.approx(0.5) and s["ensemble"]["members"][1]["threshold"] == 0.55


def test_pixel_and_patch_checkpoints_do_not_mix(tmp_path, pair, ckpts, capsys):
    code = main(
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
            str(ckpts["patch"]),
            "--out",
            str(tmp_path / "mix" / "m_damage_prob.tif"),
        ]
    )
    err = capsys.readouterr().err
    assert code != 0 and "mix pixel and patch models" in err and "Traceback" not in err
    assert not (tmp_path / "mix").exists() or not any((tmp_path / "mix").iterdir())


def test_processing_level_mismatch_is_warned_and_recorded(tmp_path, pair, ckpts, caplog):
    tagged = {}
    for key in ("before", "after"):
        tagged[key] = tmp_path / f"{key}_l1c.tif"
        tagged[key].write_bytes(pair[key].read_bytes())
        with rasterio.open(tagged[key], "r+") as dst:
            dst.update_tags(PROCESSING_LEVEL="L1C")
    out = tmp_path / "lvl" / "lvl_damage_prob.tif"
    with caplog.at_level(logging.WARNING):
        s = predict_map(
            tagged["before"],
            tagged["after"],
            ckpts["l2a"],
            out,
            PredictOptions(progress=False, device="cpu"),
        )
    assert s["processing_level"] == {
        "model": "L2A",
        "before": "L1C",
        "after": "L1C",
        "mismatch": True,
    }
    assert "trained on L2A scenes but scores L1C" in caplog.text
    same = predict_map(
        pair["before"],
        pair["after"],
        ckpts["l2a"],
        tmp_path / "same" / "s_damage_prob.tif",
        PredictOptions(progress=False, device="cpu"),
    )
    assert same["processing_level"]["mismatch"] is False


def test_a_budget_too_small_for_the_context_is_a_usage_error(tmp_path, pair, ckpts, capsys):
    out = tmp_path / "small" / "s_damage_prob.tif"
    code = main(
        [
            "-q",
            "predict",
            "--before",
            str(pair["before"]),
            "--after",
            str(pair["after"]),
            "--ckpt",
            str(ckpts["a"]),
            "--memory-mb",
            "1",
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--memory-mb 1 gives tiles of" in err and "Traceback" not in err
    assert not out.exists()


def test_dask_backed_xarray_scenes_give_the_file_map(tmp_path, pair, ckpts):
    import rioxarray

    mb = _tiles_mb(ckpts["a"], 64)
    scenes = [
        rioxarray.open_rasterio(pair[k], chunks={"band": -1, "y": 64, "x": -1})
        for k in ("before", "after")
    ]
    out = tmp_path / "xr" / "xr_damage_prob.tif"
    s = predict_map(
        *scenes,
        ckpts["a"],
        out,
        PredictOptions(progress=False, device="cpu", memory_mb=mb),
        labels=pair["labels"],
    )
    _predict(tmp_path, pair, ckpts["a"], "xr_file", memory_mb=mb)
    assert s["before"] == str(pair["before"]) and s["model"]["tiles"]["tiles"] > 1
    for suffix in (*RASTERS, "patches.gpkg"):
        a = (tmp_path / "xr" / f"xr_damage_{suffix}").read_bytes()
        b = (tmp_path / "xr_file" / f"xr_file_damage_{suffix}").read_bytes()
        assert a == b
