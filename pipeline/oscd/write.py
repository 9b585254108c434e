"""The city's scenes, label raster and AOI file, in the project's own formats.

Scenes are the scene product's format (:mod:`pipeline.scenes.product`): a 4-band uint16 COG
(B02, B03, B04, B08, per-band tags, nodata 0) by the one COG writer with the project's COG
options, the product's tags plus the processing level under :data:`contract.processing_level.TAG`
(where ``pipeline tiles``, ``pipeline dataset`` and ``damagenet predict`` read it), and a JSON
record beside it. The label raster is a uint8 COG, 1 change, 0 no change, 255 unknown, with
nodata 255 and nearest-neighbour overviews, as every label raster of the project.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from contract.atomic import write_text_atomic
from contract.bands import BANDS, SCENE_NODATA, band_tags
from contract.labels import DAMAGE, NO_DAMAGE, UNKNOWN
from contract.processing_level import TAG as LEVEL_TAG
from pipeline.aoi.writer import dump_aoi_json
from pipeline.grid import Grid
from pipeline.oscd import SOURCE
from pipeline.rasters import write_cog
from pipeline.scenes.product import RawScene, sidecar_path

#: The meaning of the label codes, in the raster's VALUES tag.
CHANGE_VALUES_TEXT = "1 change, 0 no change, 255 unknown (no image or no change map there)"


def grid_record(grid: Grid) -> dict[str, Any]:
    """The grid as the scene product's JSON records it."""
    return {
        "crs": grid.crs.to_string(),
        "transform": list(grid.transform)[:6],
        "width": grid.width,
        "height": grid.height,
    }


def scene_record(raw: RawScene, city: str, epoch: str, level: tuple[str, str], grid: Grid) -> dict:
    """The JSON record of one scene: the product's keys, the level and how it was decided."""
    valid = float((raw.dn > 0).all(axis=0).mean())
    return {
        "aoi": city,
        "epoch": epoch,
        "source": SOURCE,
        "dates": raw.dates,
        "valid_fraction": round(valid, 4),
        "boa_add_offset_applied": list(map(int, raw.offsets)),
        "processing_level": level[0],
        "processing_level_evidence": level[1],
        "grid": grid_record(grid),
        **raw.metadata,
    }


def write_scene(path: Path, raw: RawScene, grid: Grid, record: dict[str, Any]) -> None:
    """The scene COG with the product's tags and the level, and its JSON record."""
    tags = {
        "ACQUISITION_DATE": ",".join(raw.dates),
        "SOURCE": SOURCE,
        "EPOCH": record["epoch"],
        "AOI": record["aoi"],
        "VALID_FRACTION": f"{record['valid_fraction']:.4f}",
        "HARMONISED": "pre-2022 DN scale",
        "BOA_ADD_OFFSET_APPLIED": ",".join(str(o) for o in raw.offsets),
        "INPUT_SCALE": str(raw.metadata["scale"]["input"]),
        LEVEL_TAG: record["processing_level"],
    }
    write_cog(
        path,
        raw.dn,
        grid,
        nodata=SCENE_NODATA,
        descriptions=BANDS,
        tags=tags,
        band_tags=band_tags(),
    )
    write_text_atomic(sidecar_path(path), json.dumps(record, indent=2, sort_keys=True) + "\n")


def label_counts(labels: np.ndarray) -> dict[str, Any]:
    """Pixels per code and the changed share of the labelled ones."""
    change, no_change = int((labels == DAMAGE).sum()), int((labels == NO_DAMAGE).sum())
    return {
        "change_pixels": change,
        "no_change_pixels": no_change,
        "unknown_pixels": int((labels == UNKNOWN).sum()),
        "changed_share": round(change / max(change + no_change, 1), 6),
    }


def write_labels(path: Path, labels: np.ndarray, grid: Grid, record: dict[str, Any]) -> None:
    """The label COG (nodata 255, nearest overviews) and its JSON record."""
    tags = {
        "AOI": record["aoi"],
        "SOURCE": SOURCE,
        "CHANGE_MAP": Path(record["change_map"]).name,
        "CODING_FOUND": record["coding_found"],
        "BEFORE_DATE": record["dates"][0],
        "AFTER_DATE": record["dates"][1],
        "VALUES": CHANGE_VALUES_TEXT,
    }
    write_cog(
        path,
        labels,
        grid,
        nodata=UNKNOWN,
        descriptions=["change"],
        tags=tags,
        resampling="NEAREST",
    )
    write_text_atomic(
        path.with_suffix(".json"), json.dumps(record, indent=2, sort_keys=True) + "\n"
    )


def write_aoi(path: Path, doc: dict[str, Any]) -> None:
    """The city's AOI file, in the layout ``pipeline aoi`` writes."""
    write_text_atomic(path, dump_aoi_json(doc))
