"""A quick-look PNG of a damage map: probability over the after scene's true colour.

To see whether a map makes sense without opening a GIS: the after scene in true colour (the
scene's bands are B02, B03, B04, B08, so red, green, blue are B04, B03, B02), the damage
probability on top, and where labels are given, the damage sites outlined. Rasters are read
decimated (from the COG overviews where they exist), so the picture costs little on any scene.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from rasterio.enums import Resampling
from rasterio.windows import Window

from contract.bands import SCENE_NODATA
from contract.labels import DAMAGE

#: longest side of the picture, in pixels of the map
MAX_SIDE = 1024
#: a smaller map is drawn enlarged by a whole factor to at least this many screen pixels a
#: side (each map pixel a crisp block), so a town of 200 x 200 px is readable
MIN_SIDE = 800
#: red, green, blue of a scene whose bands are B02, B03, B04, B08
TRUE_COLOUR = ("B04", "B03", "B02")


def true_colour(rgb: np.ndarray) -> np.ndarray:
    """(rows, cols, 3) reflectance stretched to 0-1 between the 2nd and 98th percentiles."""
    rgb = rgb.astype(np.float64)
    shape = rgb.shape[1:]
    valid = (rgb != SCENE_NODATA).all(axis=0)
    out = np.zeros(shape + (3,))
    for i, band in enumerate(rgb):
        lo, hi = np.percentile(band[valid], (2, 98)) if valid.any() else (0.0, 1.0)
        out[..., i] = np.clip((band - lo) / max(hi - lo, 1e-9), 0, 1)
    out[~valid] = 0
    return out


def damage_any(labels: Path, shape: tuple[int, int]) -> np.ndarray:
    """Whether each picture pixel's block of the label raster holds damage.

    Read in row bands, so a small damaged site survives decimation and memory stays bounded.
    """
    with rasterio.open(labels) as src:
        step_r, step_c = -(-src.height // shape[0]), -(-src.width // shape[1])
        out = np.zeros(shape, dtype=bool)
        for i in range(0, shape[0], 64):
            top = i * step_r
            if top >= src.height:
                break
            block = (
                src.read(1, window=Window(0, top, src.width, min(64 * step_r, src.height - top)))
                == DAMAGE
            )
            rows = np.arange(block.shape[0]) // step_r
            cols = np.arange(block.shape[1]) // step_c
            hit = np.zeros((rows[-1] + 1, shape[1]), dtype=bool)
            np.logical_or.at(hit, (rows[:, None], cols[None, :]), block)
            out[i : i + len(hit)] = hit[: shape[0] - i]
        return out


def quicklook_shape(prob: Path) -> tuple[int, int]:
    """Size of the picture of the map ``prob``: at most :data:`MAX_SIDE` px a side."""
    with rasterio.open(prob) as src:
        scale = max(1.0, max(src.height, src.width) / MAX_SIDE)
        return max(1, round(src.height / scale)), max(1, round(src.width / scale))


def write_quicklook(
    prob: Path,
    after_rgb: np.ndarray,
    dest: Path,
    threshold: float,
    labels: Path | None = None,
    title: str = "",
) -> Path:
    """Draw the map ``prob`` over the after scene's (3, rows, cols) red, green, blue.

    ``after_rgb`` is decimated to :func:`quicklook_shape`; damage in ``labels`` is outlined. A
    map smaller than :data:`MIN_SIDE` is drawn enlarged by a whole factor.
    """
    with rasterio.open(prob) as src:
        p = src.read(1, out_shape=after_rgb.shape[1:], resampling=Resampling.average, masked=True)
    shape = p.shape
    zoom = max(1, MIN_SIDE // max(shape))
    fig = Figure(figsize=(zoom * shape[1] / 100 + 1.6, zoom * shape[0] / 100 + 0.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.02, 0.02, 0.80, 0.90))
    ax.imshow(true_colour(after_rgb), interpolation="nearest")
    shown = np.ma.masked_less(p, min(threshold, 0.5) / 2)  # let the scene show through
    image = ax.imshow(shown, cmap="YlOrRd", vmin=0, vmax=1, alpha=0.65, interpolation="nearest")
    if labels is not None:
        damage = damage_any(labels, shape)
        if damage.any() and not damage.all():
            ax.contour(damage.astype(float), levels=[0.5], colors="cyan", linewidths=0.8)
    ax.set_axis_off()
    ax.set_title(title or prob.stem, fontsize=9)
    cbar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    cbar.set_label("damage probability" + (" (labels outlined cyan)" if labels else ""))
    cbar.ax.axhline(threshold, color="black", linewidth=1)
    fig.savefig(dest, format="png", metadata={"Software": None})
    return dest
