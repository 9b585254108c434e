"""Real labelled Sentinel-2 change pairs: one city of OSCD, read as it ships.

The Onera Satellite Change Detection dataset (OSCD) ships each city as one GeoTIFF per band and
date in EPSG:4326 with a change map that has no georeference of its own. ``pipeline oscd``
turns one city into this project's own pair and label raster, so every later step (tiles,
patches, dataset, predict) reads it like any AOI:

- :mod:`.layout` finds and checks the files (band files, dates, change map, headers, level);
- :mod:`.place` derives the city's AOI record and its 10 m UTM grid;
- :mod:`.read` reprojects each date and the change map onto that grid, once;
- :mod:`.write` writes the scenes, the label raster and the AOI file;
- :mod:`.convert` runs the steps as one staged output set; :mod:`.cli` is the command line.
"""

from __future__ import annotations

from pathlib import Path

#: Files written into a city's output folder; the AOI file is ``<city>.geojson`` beside them.
BEFORE_NAME = "before.tif"
AFTER_NAME = "after.tif"
LABELS_NAME = "labels.tif"
#: The ``SOURCE`` tag and JSON ``source`` of the scenes.
SOURCE = "oscd"


def output_paths(folder: str | Path, city: str) -> dict[str, Path]:
    """Where ``pipeline oscd`` puts a city's files: ``before``, ``after``, ``labels``, ``aoi``.

    The benchmark and the downstream commands find the outputs here instead of spelling names.
    """
    folder = Path(folder)
    return {
        "before": folder / BEFORE_NAME,
        "after": folder / AFTER_NAME,
        "labels": folder / LABELS_NAME,
        "aoi": folder / f"{city}.geojson",
    }
