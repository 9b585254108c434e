"""A quick-look PNG of a PWTT or fused map: T (or the fused z) over the radar's own pre-war view
of the town.

Like the Sentinel-2 maps' quick-look, to see whether a map makes sense without a GIS; the
backdrop is the pre-war mean VV backscatter (bright: buildings), since a radar map is used
precisely when no clear optical scene exists (black where there is none). The statistic is
shown from just under the threshold up, in PWTT's own colours (yellow, red, purple). Both
rasters are read decimated from their COG overviews, so the picture costs little on any map.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from rasterio.enums import Resampling

from damagenet.maps.quicklook import quicklook_shape

T_COLOURS = LinearSegmentedColormap.from_list("pwtt", ["yellow", "red", "purple"])


def _read(path: Path, shape: tuple[int, int]) -> np.ma.MaskedArray:
    with rasterio.open(path) as src:
        return src.read(1, out_shape=shape, resampling=Resampling.average, masked=True)


def grey(backdrop: np.ma.MaskedArray) -> np.ndarray:
    """Backscatter in dB stretched between its 2nd and 98th percentiles; black where missing."""
    data = backdrop.filled(np.nan).astype(np.float64)
    finite = np.isfinite(data)
    lo, hi = np.percentile(data[finite], (2, 98)) if finite.any() else (0.0, 1.0)
    return np.where(finite, np.clip((data - lo) / max(hi - lo, 1e-9), 0, 1), 0.0)


def write_radar_quicklook(
    t_map: Path,
    backscatter: Path | None,
    dest: Path,
    threshold: float,
    label: str = "PWTT T (pre-war VV backscatter behind)",
) -> Path:
    """Draw ``t_map`` over ``backscatter``; the colour bar, named ``label``, marks the
    threshold."""
    shape = quicklook_shape(t_map)
    t = _read(t_map, shape)
    back = grey(_read(backscatter, shape)) if backscatter else np.zeros(shape)
    fig = Figure(figsize=(shape[1] / 100 + 1.6, shape[0] / 100 + 0.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.02, 0.02, 0.80, 0.90))
    ax.imshow(back, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    shown = np.ma.masked_less(t, threshold - 0.5)
    image = ax.imshow(
        shown,
        cmap=T_COLOURS,
        vmin=threshold - 0.5,
        vmax=threshold + 2.0,
        alpha=0.7,
        interpolation="nearest",
    )
    ax.set_axis_off()
    ax.set_title(t_map.stem, fontsize=9)
    cbar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    cbar.set_label(label)
    cbar.ax.axhline(threshold, color="black", linewidth=1)
    fig.savefig(dest, format="png", metadata={"Software": None})
    return dest
