"""Writing the damage-map rasters: streamed row blocks into temporary GeoTIFFs, then COGs.

Maps are written row block by row block into untiled temporary GeoTIFFs (cheap partial writes),
then copied into Cloud Optimized GeoTIFFs with overviews by GDAL, which streams as well, so a
map of any size is written with bounded memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from contract.cog import cog_options


class RowWriter:
    """A single-band temporary GeoTIFF filled in row blocks."""

    def __init__(self, path: Path, profile: Mapping, dtype: str, nodata: float | int,
                 description: str, tags: Mapping[str, str],
                 colormap: Mapping[int, tuple[int, int, int, int]] | None = None) -> None:
        self.path = path
        self.ds = rasterio.open(path, "w", driver="GTiff", count=1, dtype=dtype, nodata=nodata,
                                crs=profile["crs"], transform=profile["transform"],
                                width=profile["width"], height=profile["height"], tiled=False)
        self.ds.set_band_description(1, description)
        self.ds.update_tags(**{k: str(v) for k, v in tags.items()})
        if colormap is not None:
            self.ds.write_colormap(1, dict(colormap))

    def write(self, row: int, block: np.ndarray) -> None:
        self.ds.write(block, 1, window=Window(0, row, block.shape[1], block.shape[0]))

    def close(self) -> None:
        self.ds.close()

    def to_cog(self, dest: Path, resampling: str, category_names: list[str] | None = None
               ) -> None:
        """Copy into a COG with overviews (and PAM category names QGIS can show)."""
        self.close()
        with rasterio.open(self.path) as src:
            rasterio.shutil.copy(src, dest, driver="COG", **cog_options(resampling, src.dtypes[0]))
        if category_names is not None:
            cats = "\n".join(f"      <Category>{n}</Category>" for n in category_names)
            Path(str(dest) + ".aux.xml").write_text(
                "<PAMDataset>\n  <PAMRasterBand band=\"1\">\n    <CategoryNames>\n"
                f"{cats}\n    </CategoryNames>\n  </PAMRasterBand>\n</PAMDataset>\n",
                encoding="utf-8")
