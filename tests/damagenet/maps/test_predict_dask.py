"""Maps scored as dask tasks on a distributed cluster (issue 19)."""

from __future__ import annotations

import pytest
import rioxarray
from distributed import LocalCluster
from support.map_data import tiny_checkpoint, write_pair

from damagenet.cli import main
from damagenet.maps.predict import PredictOptions, predict_map


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as c:
        yield c


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return write_pair(tmp_path_factory.mktemp("dask"), 150, 170)


def _bytes(folder, stem):
    return {
        suffix: (folder / f"{stem}_damage_{suffix}").read_bytes()
        for suffix in ("prob.tif", "class.tif", "agreement.tif", "patches.gpkg")
    }


def test_cluster_map_is_byte_identical(tmp_path, pair, ckpt, cluster):
    args = [
        "--before",
        str(pair["before"]),
        "--after",
        str(pair["after"]),
        "--ckpt",
        str(ckpt),
        "--labels",
        str(pair["labels"]),
        "--stride",
        "8",
        "--memory-mb",
        "0.05",
    ]
    assert main(["-q", "predict", *args, "--out", str(tmp_path / "one" / "t_damage_prob.tif")]) == 0
    assert (
        main(
            [
                "-q",
                "predict",
                *args,
                "--out",
                str(tmp_path / "two" / "t_damage_prob.tif"),
                "--dask-scheduler",
                cluster.scheduler_address,
            ]
        )
        == 0
    )
    one, two = _bytes(tmp_path / "one", "t"), _bytes(tmp_path / "two", "t")
    assert one == two
    assert len(one["prob.tif"]) > 1000


def test_dask_backed_xarray_scenes(tmp_path, pair, ckpt, cluster):
    opts = PredictOptions(stride=8, memory_mb=0.05, progress=False)
    scenes = [
        rioxarray.open_rasterio(pair[k], chunks={"band": -1, "y": 64, "x": -1})
        for k in ("before", "after")
    ]
    s = predict_map(
        *scenes,
        ckpt,
        tmp_path / "x" / "t_damage_prob.tif",
        PredictOptions(
            stride=8, memory_mb=0.05, progress=False, dask_scheduler=cluster.scheduler_address
        ),
        labels=pair["labels"],
    )
    ref = predict_map(
        pair["before"],
        pair["after"],
        ckpt,
        tmp_path / "f" / "t_damage_prob.tif",
        opts,
        labels=pair["labels"],
    )
    assert s["before"] == str(pair["before"]) and s["windows_scored"] == ref["windows_scored"]
    assert _bytes(tmp_path / "x", "t") == _bytes(tmp_path / "f", "t")
    local = predict_map(
        *scenes, ckpt, tmp_path / "l" / "t_damage_prob.tif", opts, labels=pair["labels"]
    )  # the same arrays, no cluster
    assert local["windows_scored"] == ref["windows_scored"]
    assert _bytes(tmp_path / "l", "t") == _bytes(tmp_path / "f", "t")
