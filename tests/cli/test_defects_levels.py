"""The processing level travels from the scene product to ``predict`` (issue 31.7).

Scene products record L1C or L2A (tag ``PROCESSING_LEVEL``); ``pipeline patches`` carries it
into the patch file, ``pipeline dataset`` into the dataset, ``damagenet train`` into the
checkpoint, and ``damagenet predict`` warns and records a mismatch when the checkpoint's level
differs from the scenes'. Here one chain runs end to end on the synthetic demo towns.
"""

from __future__ import annotations

import logging

import numpy as np
import rasterio
from support.model_data import write_study_npz

from contract.npz_keys import PROCESSING_LEVEL
from contract.processing_level import TAG as LEVEL_TAG
from damagenet.maps.predict import PredictOptions, predict_map
from damagenet.models.checkpoint import load_checkpoint
from damagenet.training.config import TrainConfig
from damagenet.training.train import train
from pipeline.dataset import build_dataset


def test_level_from_scene_to_checkpoint_to_predict_warning(
    tmp_path, aoi_rasters, patch_files, caplog
):
    bucha = aoi_rasters["bucha"]
    with rasterio.open(bucha["after"]) as src:
        assert src.tags()[LEVEL_TAG] == "L2A"  # the product records its level
    assert {str(np.load(p)[PROCESSING_LEVEL]) for p in patch_files} == {"L2A"}
    build_dataset(patch_files, tmp_path / "d.npz", block_m=320)
    assert str(np.load(tmp_path / "d.npz")[PROCESSING_LEVEL]) == "L2A"
    # a small dataset of the study's layout that records the level, trained for one epoch
    npz = write_study_npz(tmp_path / "study.npz", sizes=(16, 8, 8))
    np.savez(npz, **dict(np.load(npz)), **{PROCESSING_LEVEL: np.array("L2A")})
    ckpt = tmp_path / "m.pt"
    cfg = TrainConfig(epochs=1, backbone="resnet18", device="cpu", progress=False, batch_size=8)
    train(npz, tmp_path / "train", ckpt, cfg, run_evaluation=False)
    _, payload = load_checkpoint(ckpt, map_location="cpu")
    assert payload["processing_level"] == "L2A"

    l1c = {}
    for key in ("before", "after"):  # the same scenes, as an L1C download would record them
        l1c[key] = tmp_path / f"{key}_l1c.tif"
        l1c[key].write_bytes(bucha[key].read_bytes())
        with rasterio.open(l1c[key], "r+", IGNORE_COG_LAYOUT_BREAK="YES") as dst:
            dst.update_tags(**{LEVEL_TAG: "L1C"})
    with caplog.at_level(logging.WARNING):
        summary = predict_map(
            l1c["before"],
            l1c["after"],
            ckpt,
            tmp_path / "maps" / "bucha_damage_prob.tif",
            PredictOptions(progress=False, device="cpu", stride=16),
        )
    assert summary["processing_level"]["mismatch"] is True
    assert summary["processing_level"]["model"] == "L2A"
    assert "trained on L2A scenes but scores L1C scenes" in caplog.text
