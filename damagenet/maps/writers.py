"""Writing one damage map's files: all of them, or none.

:class:`MapWriters` opens every output of a map at once (probability, class, agreement and split
rasters, the GeoPackage of damaged windows), takes finished rows strip by strip, and on
:meth:`MapWriters.finish` turns them into Cloud Optimized GeoTIFFs with styles. Everything is
written into a hidden temporary folder beside the outputs and published as one set
(:func:`contract.atomic.staged_folder`: signals deferred while the files move, a failed move
undone) only when the ``with`` block ends without an error; on an error every file is closed
and the folder removed, so a failed map leaves nothing that looks finished. Categorical rasters
carry their colour table inside the GeoTIFF, so no GDAL ``.aux.xml`` sidecar is written.

Rasters are written row block by row block into untiled temporary GeoTIFFs (cheap partial
writes), then copied into COGs with overviews by GDAL, which streams as well, so a map of any
size is written with bounded memory.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import rasterio
import rasterio.shutil
from rasterio.windows import Window
from shapely.geometry import box

from contract.atomic import staged_folder
from contract.cog import cog_options
from contract.gpkg import FIXED_TIME, pinned_ogr_time
from damagenet.outputs import map_outputs
from damagenet.qgis.raster_styles import (
    AGREEMENT_COLOURS,
    AGREEMENT_LABELS,
    CLASS_COLOURS,
    CLASS_LABELS,
    SPLIT_COLOURS,
    SPLIT_LABELS,
    paletted_qml,
    patches_qml,
    probability_qml,
    write_qml,
)

PROB_NODATA = -9999.0
CLASS_NODATA = 255
PATCH_LAYER = "damaged_patches"
#: GeoPackage 1.2: read without a warning by GDAL 3.6 / QGIS 3.22 (GDAL >= 3.7 writes 1.4)
GPKG_VERSION = "1.2"


@dataclass(frozen=True)
class MapGrid:
    """The scene pair's grid, shared by every raster of the map."""

    crs: Any
    transform: Any
    width: int
    height: int


@dataclass(frozen=True)
class Layer:
    """One categorical or continuous raster of the map: its name, type and meaning."""

    key: str
    description: str
    dtype: str
    nodata: float
    values: str = ""
    colours: Mapping[int, tuple[int, int, int, int]] | None = None
    labels: Mapping[int, str] | None = None


PROB = Layer("prob", "damage_probability", "float32", PROB_NODATA)
#: an ensemble's spread: the members' standard deviation, averaged over windows like PROB
UNCERTAINTY = Layer("uncertainty", "damage_probability_std", "float32", PROB_NODATA)
CLASS = Layer(
    "class",
    "damage_class",
    "uint8",
    CLASS_NODATA,
    "0 no damage, 1 damage, 255 no data",
    CLASS_COLOURS,
    CLASS_LABELS,
)
AGREEMENT = Layer(
    "agreement",
    "agreement",
    "uint8",
    CLASS_NODATA,
    "0 TN, 1 TP, 2 FP, 3 FN, 255 no data",
    AGREEMENT_COLOURS,
    AGREEMENT_LABELS,
)
SPLIT = Layer(
    "split",
    "training_split",
    "uint8",
    CLASS_NODATA,
    "0 never seen in training, 1 train, 2 validation, 3 test, 255 no data",
    SPLIT_COLOURS,
    SPLIT_LABELS,
)


class RowWriter:
    """A single-band temporary GeoTIFF filled in row blocks."""

    def __init__(self, path: Path, grid: MapGrid, layer: Layer, tags: Mapping[str, str]) -> None:
        self.path, self.layer = path, layer
        self.ds = rasterio.open(
            path,
            "w",
            driver="GTiff",
            count=1,
            dtype=layer.dtype,
            nodata=layer.nodata,
            crs=grid.crs,
            transform=grid.transform,
            width=grid.width,
            height=grid.height,
            tiled=False,
        )
        self.ds.set_band_description(1, layer.description)
        if layer.colours is not None:  # in the GeoTIFF itself: no .aux.xml sidecar to lose
            self.ds.write_colormap(1, dict(layer.colours))
        extra = {"VALUES": layer.values} if layer.values else {}
        self.ds.update_tags(**{k: str(v) for k, v in {**tags, **extra}.items()})

    def write(self, row: int, block: np.ndarray) -> None:
        self.ds.write(block, 1, window=Window(0, row, block.shape[1], block.shape[0]))

    def close(self) -> None:
        self.ds.close()

    def to_cog(self, dest: Path, resampling: str) -> None:
        """Copy into a COG with overviews; a categorical layer's colour table goes inside it."""
        self.close()
        with rasterio.open(self.path) as src:
            rasterio.shutil.copy(src, dest, driver="COG", **cog_options(resampling, src.dtypes[0]))
        self.path.unlink()


class MapWriters:
    """Every output of one map, staged in a temporary folder and published all at once."""

    def __init__(
        self,
        prob_path: str | Path,
        grid: MapGrid,
        tags: Mapping[str, Any],
        threshold: float,
        patch_size: int,
        agreement: bool,
        split: bool,
        uncertainty: bool = False,
    ) -> None:
        self.paths = map_outputs(prob_path)
        self.grid, self.threshold, self.patch_size = grid, threshold, patch_size
        self.tags = {k: str(v) for k, v in tags.items()}
        self.layers = (
            [PROB, CLASS]
            + ([AGREEMENT] if agreement else [])
            + ([SPLIT] if split else [])
            + ([UNCERTAINTY] if uncertainty else [])
        )
        self.tmpdir: Path | None = None
        self.writers: dict[str, RowWriter] = {}
        self._stage = contextlib.ExitStack()

    def __enter__(self) -> MapWriters:
        self.tmpdir = self._stage.enter_context(staged_folder(self.paths["prob"].parent))
        try:
            for layer in self.layers:
                self.writers[layer.key] = RowWriter(
                    self.tmpdir / f"{layer.key}.tmp.tif", self.grid, layer, self.tags
                )
        except BaseException:
            self._close_all(*sys.exc_info())
            raise
        return self

    def staged(self, key: str) -> Path:
        """Where output ``key`` is written until the map is published."""
        assert self.tmpdir is not None, "MapWriters used outside its with block"
        return self.tmpdir / self.paths[key].name

    def write_rows(self, row0: int, blocks: Mapping[str, np.ndarray]) -> None:
        """Finished rows of each raster (keys ``prob``, ``class``, ``agreement``, ``split``,
        ``uncertainty``)."""
        for key, block in blocks.items():
            self.writers[key].write(row0, block)

    def add_patches(self, rows: np.ndarray, cols: np.ndarray, probs: np.ndarray) -> None:
        """Append damaged windows as polygons, strip by strip (bounded memory)."""
        if len(rows):
            self._write_patches(rows, cols, probs)

    def _write_patches(self, rows: np.ndarray, cols: np.ndarray, probs: np.ndarray) -> None:
        t, size, crs = self.grid.transform, self.patch_size, self.grid.crs
        polys = [
            box(t.c + c * t.a, t.f + (r + size) * t.e, t.c + (c + size) * t.a, t.f + r * t.e)
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True)
        ]
        gdf = gpd.GeoDataFrame(
            {
                "probability": np.asarray(probs, dtype=np.float64),
                "row": np.asarray(rows, dtype=np.int64),
                "col": np.asarray(cols, dtype=np.int64),
            },
            geometry=gpd.GeoSeries(polys, crs=crs),
            crs=crs,
        )
        path = self.staged("patches")
        with pinned_ogr_time():
            pyogrio.write_dataframe(
                gdf,
                path,
                layer=PATCH_LAYER,
                driver="GPKG",
                append=path.exists(),
                geometry_type="Polygon",
                dataset_options={"VERSION": GPKG_VERSION},
            )

    def finish(self, summary: Mapping[str, Any]) -> None:
        """COGs with overviews, styles, the styled GeoPackage and the summary, all staged."""
        for layer in self.layers:
            dest = self.staged(layer.key)
            continuous = layer.colours is None
            self.writers[layer.key].to_cog(dest, "AVERAGE" if continuous else "NEAREST")
            write_qml(dest, layer_qml(layer, self.threshold))
        if not self.staged("patches").exists():  # no damaged window: an empty layer
            self._write_patches(np.zeros(0, int), np.zeros(0, int), np.zeros(0))
        qml = patches_qml(self.threshold)
        store_layer_style(self.staged("patches"), PATCH_LAYER, qml)
        write_qml(self.staged("patches"), qml)
        self.staged("summary").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._close_all(kind, exc, tb)

    def _close_all(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close every raster, then publish the staged set whole (or remove it on an error)."""
        try:
            for writer in self.writers.values():
                writer.close()
        finally:
            self._stage.__exit__(kind, exc, tb)


def layer_qml(layer: Layer, threshold: float) -> str:
    """QGIS style of a map raster: the probability ramp, or its classes' colours and names."""
    if layer.colours is None:
        return probability_qml(layer.description, threshold)
    return paletted_qml(layer.description, dict(layer.colours), dict(layer.labels or {}))


def store_layer_style(gpkg: Path, layer: str, qml: str) -> None:
    """Save ``qml`` as the default style of ``layer`` in the GeoPackage's ``layer_styles``.

    QGIS keeps styles of GeoPackage layers in this table (written through OGR, as QGIS itself
    does) and applies the default one when the layer is opened, from any folder.
    """
    info = pyogrio.read_info(gpkg, layer=layer)
    style = pd.DataFrame(
        {
            "f_table_catalog": [""],
            "f_table_schema": [""],
            "f_table_name": [layer],
            "f_geometry_column": [info.get("geometry_name") or "geom"],
            "styleName": [layer],
            "styleQML": [qml],
            "styleSLD": [""],
            "useAsDefault": [True],
            "description": ["damagenet predict"],
            "owner": [""],
            "ui": [""],
            "update_time": [pd.Timestamp(FIXED_TIME).tz_localize(None)],
        }
    )
    with pinned_ogr_time():
        pyogrio.write_dataframe(style, gpkg, layer="layer_styles", driver="GPKG", append=False)
