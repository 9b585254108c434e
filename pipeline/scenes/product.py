"""The one scene product every source writes.

A 4-band uint16 COG (B02, B03, B04, B08) on the AOI grid, nodata 0 wherever there is no valid
observation, harmonised to the pre-2022 digital-number scale, with tags for dates, source, cloud
and valid fractions, and a small JSON beside it recording how it was made.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.features import geometry_mask

from contract.atomic import write_text_atomic
from contract.bands import BANDS, band_tags
from pipeline.aoi import AOI
from pipeline.errors import PipelineError
from pipeline.grid import Grid
from pipeline.rasters import write_cog

log = logging.getLogger(__name__)

#: SCL classes without a usable observation: nodata, saturated/defective, cloud shadow,
#: cloud medium and high probability, thin cirrus, snow.
DEFAULT_MASK_CLASSES: tuple[int, ...] = (0, 1, 3, 8, 9, 10, 11)
CLOUD_CLASSES = (3, 8, 9, 10)
DEFAULT_MIN_VALID_FRACTION = 0.3


@dataclass
class RawScene:
    """Digital numbers on the AOI grid as a source delivered them, before masking."""

    dn: np.ndarray                 # (4, H, W) uint16, 0 = no data
    scl: np.ndarray | None         # (H, W) uint8 scene classification on the same grid
    offsets: Sequence[int]         # BOA_ADD_OFFSET per band still present in ``dn``
    dates: list[str]               # acquisition date(s), ISO
    source: str
    extra_mask: np.ndarray | None = None   # (H, W) bool, True = invalid (service masks)
    metadata: dict[str, Any] = field(default_factory=dict)


def harmonise(dn: np.ndarray, offsets: Sequence[int]) -> np.ndarray:
    """Apply ``BOA_ADD_OFFSET`` per band: pre-2022 scale, where reflectance = DN / 10000.

    Valid pixels stay >= 1 so that 0 keeps meaning *no data*.
    """
    out = dn.astype(np.int32)
    valid = dn > 0
    for b, off in enumerate(offsets):
        if off:
            out[b] = np.where(valid[b], np.maximum(out[b] + int(off), 1), 0)
    return out.astype(np.uint16)


def finalise_scene(raw: RawScene, aoi: AOI, grid: Grid, out: str | Path, epoch: str,
                   mask_classes: Sequence[int] = DEFAULT_MASK_CLASSES,
                   min_valid_fraction: float = DEFAULT_MIN_VALID_FRACTION) -> dict[str, Any]:
    """Mask, harmonise and write the product; return the summary written beside it."""
    if raw.dn.shape != (len(BANDS), *grid.shape):
        raise PipelineError(f"{aoi.slug}: scene array {raw.dn.shape} does not match the AOI "
                            f"grid {(len(BANDS), *grid.shape)}")
    in_aoi = geometry_mask([aoi.geometry_in(grid.crs)], out_shape=grid.shape,
                           transform=grid.transform, invert=True)
    if not in_aoi.any():  # a capped grid always holds AOI ground; guard odd polygons anyway
        in_aoi = np.ones(grid.shape, dtype=bool)
    invalid = (raw.dn == 0).any(axis=0)
    cloud = np.zeros(grid.shape, dtype=bool)
    if raw.scl is not None:
        invalid |= np.isin(raw.scl, list(mask_classes))
        cloud = np.isin(raw.scl, CLOUD_CLASSES)
    if raw.extra_mask is not None:
        invalid |= raw.extra_mask
    dn = harmonise(raw.dn, raw.offsets)
    dn[:, invalid] = 0
    n_aoi = int(in_aoi.sum())
    valid_fraction = float((~invalid & in_aoi).sum() / n_aoi)
    cloud_fraction = float((cloud & in_aoi).sum() / n_aoi)
    if valid_fraction < min_valid_fraction:
        raise PipelineError(
            f"{aoi.slug} ({epoch}): only {valid_fraction:.1%} of the AOI has a valid "
            f"observation (cloud {cloud_fraction:.1%}) on {', '.join(raw.dates)}, below the "
            f"minimum {min_valid_fraction:.0%}; choose another date or lower the minimum")
    tags = {"ACQUISITION_DATE": ",".join(raw.dates), "SOURCE": raw.source, "EPOCH": epoch,
            "AOI": aoi.slug, "CLOUD_FRACTION": f"{cloud_fraction:.4f}",
            "VALID_FRACTION": f"{valid_fraction:.4f}", "HARMONISED": "pre-2022 DN scale",
            "BOA_ADD_OFFSET_APPLIED": ",".join(str(o) for o in raw.offsets),
            "MASKED_SCL_CLASSES": ",".join(str(c) for c in mask_classes)}
    if "acquisition" in raw.metadata:  # the Catalog's choice within a date window
        tags["ACQUISITION_ID"] = raw.metadata["acquisition"]["id"]
        tags["ACQUISITION_CLOUD_COVER"] = str(raw.metadata["acquisition"]["cloud_cover"])
    summary = {"aoi": aoi.slug, "epoch": epoch, "source": raw.source, "dates": raw.dates,
               "cloud_fraction": round(cloud_fraction, 4),
               "valid_fraction": round(valid_fraction, 4),
               "boa_add_offset_applied": list(map(int, raw.offsets)),
               "grid": {"crs": grid.crs.to_string(), "transform": list(grid.transform)[:6],
                        "width": grid.width, "height": grid.height}, **raw.metadata}
    out = Path(out)
    write_cog(out, dn, grid, nodata=0, descriptions=BANDS, tags=tags,
              band_tags=band_tags())
    write_text_atomic(sidecar_path(out), json.dumps(summary, indent=2, sort_keys=True) + "\n")
    log.info("%s %s: wrote %s (%s, %s; valid %.1f%%, cloud %.1f%%)", aoi.slug, epoch, out,
             raw.source, ",".join(raw.dates), 100 * valid_fraction, 100 * cloud_fraction)
    return summary


def sidecar_path(scene: str | Path) -> Path:
    """``scene.tif`` -> ``scene.json``: the acquisition record beside a scene."""
    return Path(scene).with_suffix(".json")

