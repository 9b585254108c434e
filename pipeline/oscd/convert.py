"""One OSCD city to this project's scene pair, label raster and AOI file, all or nothing.

Every check and every read happens before the first byte is written; the files are then
written as one staged set (:func:`contract.atomic.staged_folder`), so a refusal or a failure
leaves no output a user or Snakemake could take for a finished one.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from contract.atomic import staged_folder
from contract.labels import UNKNOWN
from pipeline.aoi import validate_aoi_file
from pipeline.errors import InputFileError
from pipeline.grid import Grid, aoi_grid
from pipeline.oscd import output_paths
from pipeline.oscd.layout import CityFiles, find_city
from pipeline.oscd.place import city_aoi
from pipeline.oscd.read import (
    OSCD_CHANGE,
    ChangeMap,
    change_onto_grid,
    read_change_map,
    read_scene,
)
from pipeline.oscd.write import (
    label_counts,
    scene_record,
    write_aoi,
    write_labels,
    write_scene,
)

log = logging.getLogger(__name__)
EPOCHS = ("before", "after")


def convert_city(
    root: str | Path, city: str, out: str | Path, level: str | None = None
) -> dict[str, Any]:
    """Convert ``city`` under the OSCD folder ``root`` into the folder ``out``; return the
    label record. ``level`` (L1C or L2A) overrides what the band file names state (without
    either: OSCD's L1C).
    """
    start = time.perf_counter()
    files = find_city(root, city, level)
    aoi, doc = city_aoi(files)
    grid = aoi_grid(aoi)
    scenes = {
        "before": read_scene(files.before, grid, city, "before"),
        "after": read_scene(files.after, grid, city, "after"),
    }
    change = read_change_map(files)
    labels = change_onto_grid(change, grid)
    unobserved = np.zeros(grid.shape, dtype=bool)
    for raw in scenes.values():
        unobserved |= (raw.dn == 0).any(axis=0)
    labels[unobserved] = UNKNOWN
    record = label_record(files, change, labels, grid)
    if record["change_pixels"] + record["no_change_pixels"] == 0:
        raise InputFileError(f"{change.path}: no labelled pixel lies under both dates' images")
    folder = Path(out)
    with staged_folder(folder) as tmp:
        staged = output_paths(tmp, city)
        write_aoi(staged["aoi"], doc)
        _check_aoi_file(staged["aoi"], output_paths(folder, city)["aoi"])
        for epoch, raw in scenes.items():
            info = scene_record(raw, city, epoch, (files.level, files.level_evidence), grid)
            write_scene(staged[epoch], raw, grid, info)
        write_labels(staged["labels"], labels, grid, record)
    _log_done(files, grid, record, folder, time.perf_counter() - start)
    return record


def label_record(
    files: CityFiles, change: ChangeMap, labels: np.ndarray, grid: Grid
) -> dict[str, Any]:
    """What the label raster holds and where it came from, for its JSON and the log."""
    source_change = int((change.classes == OSCD_CHANGE).sum())
    return {
        "aoi": files.city,
        "change_map": str(change.path),
        "coding_found": change.coding,
        "source_grid": change.on.describe(),
        "source_change_pixels": source_change,
        "source_changed_share": round(source_change / change.classes.size, 6),
        "dates": [files.before.date.isoformat(), files.after.date.isoformat()],
        "processing_level": files.level,
        "grid": {"crs": grid.crs.to_string(), "width": grid.width, "height": grid.height},
        **label_counts(labels),
    }


def _check_aoi_file(staged: Path, final: Path) -> None:
    """The AOI file must load as every later step loads it (``pipeline tiles`` and others)."""
    _, errors, _ = validate_aoi_file(staged)
    if errors:
        found = "; ".join(e.replace(str(staged), str(final)) for e in errors)
        raise InputFileError(f"the city's AOI file would not validate: {found}")


def _log_done(
    files: CityFiles,
    grid: Grid,
    record: dict[str, Any],
    folder: Path,
    seconds: float,
) -> None:
    shapes = files.before.describe()
    if files.after.shape != files.before.shape:
        shapes += f", {files.after.describe()} resampled onto the same grid"
    log.info(
        "%s: %s %d x %d px at %g m from %s; %s -> %s (%s); %.2f %% of %d labelled px changed "
        "(%.2f %% in the change map), %d unknown; wrote %s in %.1f s",
        files.city,
        grid.crs.to_string(),
        grid.width,
        grid.height,
        grid.resolution,
        shapes,
        *record["dates"],
        files.level,
        100 * record["changed_share"],
        record["change_pixels"] + record["no_change_pixels"],
        100 * record["source_changed_share"],
        record["unknown_pixels"],
        folder,
        seconds,
    )
