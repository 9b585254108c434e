"""Small scene pairs and a stand-in scorer for the damage-map tests."""

from __future__ import annotations

import numpy as np
import rasterio
import torch
from rasterio.transform import from_origin

from damagenet.data.pairs import Normalisation
from damagenet.models.checkpoint import save_checkpoint
from damagenet.models.siamese_resnet import SiameseResNet


def mean_blue(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Stand-in model with a known output: the window's mean after-minus-before blue, scaled."""
    d = after[:, 0].astype(np.float64).mean(axis=(1, 2)) - before[:, 0].mean(axis=(1, 2))
    return np.clip(0.5 + d / 2000, 0, 1)


def write_pair(folder, height, width, aoi="bigtown"):
    """A random scene pair (B02, B03, B04, B08) with a nodata corner, and labels."""
    rng = np.random.default_rng(3)
    common = dict(
        driver="GTiff",
        width=width,
        height=height,
        crs="EPSG:32636",
        transform=from_origin(300000, 5600000, 10, 10),
    )
    paths = {k: folder / f"{k}.tif" for k in ("before", "after", "labels")}
    base = rng.integers(300, 3000, (4, height, width), dtype=np.uint16)
    base[:, :40, :40] = 0
    for name, data in (
        ("before", base),
        ("after", base + rng.integers(0, 400, base.shape, dtype=np.uint16)),
    ):
        with rasterio.open(paths[name], "w", count=4, dtype="uint16", nodata=0, **common) as dst:
            dst.write(np.where(base == 0, 0, data))
            dst.descriptions = ("B02", "B03", "B04", "B08")
            dst.update_tags(AOI=aoi)
    labels = (rng.random((height, width)) < 0.002).astype(np.uint8)
    labels[:, : width // 10] = 255
    with rasterio.open(paths["labels"], "w", count=1, dtype="uint8", nodata=255, **common) as dst:
        dst.write(labels, 1)
    return paths


def tiny_checkpoint(path):
    """A ResNet-18 checkpoint with random weights and 16 px patches."""
    torch.manual_seed(0)
    save_checkpoint(
        path,
        SiameseResNet("resnet18").eval(),
        patch_size=16,
        norm=Normalisation([0.1] * 4, [0.05] * 4),
        threshold={"value": 0.5, "rule": "fixed"},
        history=[],
        dataset={"sha256": "0" * 64},
    )
    return path
