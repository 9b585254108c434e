"""The product checks every scene source's output must pass."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio

from pipeline.grid import Grid


def assert_scene_product(path: Path, grid: Grid) -> np.ndarray:
    with rasterio.open(path) as src:
        assert src.count == 4 and src.dtypes == ("uint16",) * 4
        assert src.descriptions == ("B02", "B03", "B04", "B08")
        assert src.nodata == 0
        assert src.crs == grid.crs and src.transform == grid.transform
        assert (src.width, src.height) == (grid.width, grid.height)
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.compression is not None and src.block_shapes[0] == (256, 256)
        tags = src.tags()
        for key in ("ACQUISITION_DATE", "SOURCE", "CLOUD_FRACTION", "VALID_FRACTION"):
            assert key in tags, key
        data = src.read()
    # nodata is all-or-nothing across bands
    zero = data == 0
    assert (zero.any(0) == zero.all(0)).all()
    summary = json.loads(path.with_suffix(".json").read_text())
    assert summary["valid_fraction"] == round(float(tags["VALID_FRACTION"]), 4)
    return data
