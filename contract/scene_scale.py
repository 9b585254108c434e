"""Refuse scenes that are not on the product's documented scale before cutting or mapping them.

Why: the model was trained on L2A surface reflectance as digital numbers (reflectance x 10000,
uint16, the +1000 BOA offset removed), the scale `pipeline scene` writes. A float32 reflectance
GeoTIFF (0..1) or an 8-bit true-colour export runs through the network without error and yields
a plausible-looking but meaningless damage map. The scene writer's gate
(``pipeline/scenes/product.py``) measures land medians while writing; this check is for
scenes read back by ``pipeline patches`` and ``damagenet predict``, which may come from
anywhere: dtype and tags first, then the medians of a decimated sample against the per-band
ranges of :data:`contract.bands.PLAUSIBLE_MEDIANS`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling

from contract.bands import PLAUSIBLE_MEDIANS
from contract.errors import SceneScaleError

#: The lowest lower bound and highest upper bound across bands: the whole scene is sampled,
#: water and cloud-free urban ground included, not land alone.
MEDIAN_RANGE = (
    float(min(lo for lo, _ in PLAUSIBLE_MEDIANS.values())),
    float(max(hi for _, hi in PLAUSIBLE_MEDIANS.values())),
)
#: Sample at most this many pixels per side: enough for a stable median, cheap on any scene.
SAMPLE_SIDE = 512


def check_scene_scale(path: str | Path) -> None:
    """Raise :class:`SceneScaleError` naming ``path`` unless it looks like L2A DN."""
    path = Path(path)
    try:
        with rasterio.open(path) as src:
            dtype, tags, nodata = src.dtypes[0], src.tags(), src.nodata
            factor = max(1, int(np.ceil(max(src.width, src.height) / SAMPLE_SIDE)))
            sample = src.read(
                out_shape=(src.count, max(1, src.height // factor), max(1, src.width // factor)),
                resampling=Resampling.nearest,
                masked=True,
            )
    except rasterio.errors.RasterioError as exc:
        raise SceneScaleError(f"{path}: cannot read the scene ({exc})") from exc
    scale = tags.get("SCALE") or tags.get("scale")
    if scale and scale.strip() not in ("10000", "1/10000", "0.0001"):
        raise SceneScaleError(
            f"{path}: tag SCALE={scale}, the model needs L2A digital numbers "
            "(reflectance x 10000); re-create it with `pipeline scene`"
        )
    if dtype not in ("uint16", "int16", "int32", "uint32"):
        raise SceneScaleError(
            f"{path}: {dtype} values, the model needs L2A digital numbers as integers "
            "(reflectance x 10000, uint16); re-create the scene with `pipeline scene` "
            "(for a float reflectance file: --source local --scale reflectance)"
        )
    _check_medians(path, sample, nodata)


def _check_medians(path: Path, sample: np.ma.MaskedArray, nodata: float | None) -> None:
    data = np.ma.masked_equal(sample, 0) if nodata is None else sample
    valid = ~np.ma.getmaskarray(data).any(axis=0)
    if not valid.any():
        raise SceneScaleError(f"{path}: no valid pixel in the scene")
    medians = [float(np.median(np.asarray(band)[valid])) for band in data]
    lo, hi = MEDIAN_RANGE
    if all(lo <= m <= hi for m in medians):
        return
    found = ", ".join(f"{m:.0f}" for m in medians)
    raise SceneScaleError(
        f"{path}: band medians {found} are outside {lo:.0f}..{hi:.0f}, not L2A digital "
        "numbers (reflectance x 10000); likely reflectance 0..1, an 8-bit export or the +1000 "
        "offset scaled wrong; re-create the scene with `pipeline scene`"
    )
