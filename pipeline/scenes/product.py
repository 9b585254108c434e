"""The one scene product every source writes.

A 4-band uint16 COG (B02, B03, B04, B08) on the AOI grid, nodata 0 wherever there is no valid
observation, harmonised to the pre-2022 digital-number scale, with tags for dates, source,
processing level (:mod:`contract.processing_level`), cloud and valid fractions, and a small JSON
beside it recording how it was made; the two are published together or not at all.
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

from contract.atomic import output_set
from contract.bands import BANDS, PLAUSIBLE_MEDIANS, band_tags
from contract.processing_level import TAG as LEVEL_TAG
from pipeline.aoi import AOI
from pipeline.errors import InputFileError, PipelineError
from pipeline.grid import Grid
from pipeline.rasters import write_cog
from pipeline.scenes.defaults import (
    CLOUD_CLASSES,
    DEFAULT_MASK_CLASSES,
    DEFAULT_MIN_VALID_FRACTION,
)

log = logging.getLogger(__name__)

#: SCL classes of land (vegetation, not vegetated) over which the plausibility gate measures.
LAND_CLASSES = (4, 5)
MIN_LAND_PIXELS = 100


@dataclass
class RawScene:
    """Digital numbers on the AOI grid as a source delivered them, before masking."""

    dn: np.ndarray  # (4, H, W) uint16, 0 = no data
    scl: np.ndarray | None  # (H, W) uint8 scene classification on the same grid
    offsets: Sequence[int]  # BOA_ADD_OFFSET per band still present in ``dn``
    dates: list[str]  # acquisition date(s), ISO
    source: str
    extra_mask: np.ndarray | None = None  # (H, W) bool, True = invalid (service masks)
    metadata: dict[str, Any] = field(default_factory=dict)
    #: L1C (top of atmosphere) or L2A (surface reflectance); None when nothing says
    level: str | None = None


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


def finalise_scene(
    raw: RawScene,
    aoi: AOI,
    grid: Grid,
    out: str | Path,
    epoch: str,
    mask_classes: Sequence[int] = DEFAULT_MASK_CLASSES,
    min_valid_fraction: float = DEFAULT_MIN_VALID_FRACTION,
) -> dict[str, Any]:
    """Mask, harmonise and write the product; return the summary written beside it."""
    if raw.dn.shape != (len(BANDS), *grid.shape):
        raise PipelineError(
            f"{aoi.slug}: scene array {raw.dn.shape} does not match the AOI "
            f"grid {(len(BANDS), *grid.shape)}"
        )
    in_aoi = aoi_mask(aoi, grid)
    invalid, cloud = _masks(raw, grid, mask_classes)
    dn = harmonise(raw.dn, raw.offsets)
    dn[:, invalid] = 0
    n_aoi = int(in_aoi.sum())
    cover = Cover(
        valid=float((~invalid & in_aoi).sum() / n_aoi),
        cloud=float((cloud & in_aoi).sum() / n_aoi),
    )
    if cover.valid < min_valid_fraction:
        raise PipelineError(
            f"{aoi.slug} ({epoch}): only {cover.valid:.1%} of the AOI has a valid "
            f"observation (cloud {cover.cloud:.1%}) on {', '.join(raw.dates)}, below the "
            f"minimum {min_valid_fraction:.0%}; choose another date or lower the minimum"
        )
    check_plausible(
        dn,
        ~invalid & in_aoi,
        raw.scl,
        f"{aoi.slug} ({epoch}) from {raw.metadata.get('input', raw.source)}",
    )
    summary = scene_summary(raw, aoi, epoch, grid, cover)
    write_scene(Path(out), dn, grid, scene_tags(raw, aoi, epoch, cover, mask_classes), summary)
    log.info(
        "%s %s: wrote %s (%s %s, %s; valid %.1f%%, cloud %.1f%%)",
        *(aoi.slug, epoch, out, raw.source, raw.level or "level unknown", ",".join(raw.dates)),
        *(100 * cover.valid, 100 * cover.cloud),
    )
    return summary


@dataclass(frozen=True)
class Cover:
    """Shares of the AOI with a valid observation, and under cloud by the SCL."""

    valid: float
    cloud: float


def aoi_mask(aoi: AOI, grid: Grid) -> np.ndarray:
    """The AOI's pixels on its grid (all of it, should an odd polygon cover no pixel centre)."""
    in_aoi = geometry_mask(
        [aoi.geometry_in(grid.crs)], out_shape=grid.shape, transform=grid.transform, invert=True
    )
    if not in_aoi.any():  # a capped grid always holds AOI ground; guard odd polygons anyway
        in_aoi = np.ones(grid.shape, dtype=bool)
    return in_aoi


def _masks(raw: RawScene, grid: Grid, mask_classes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(invalid, cloud): no data, a masked SCL class or a service's mask; cloud by the SCL."""
    invalid = (raw.dn == 0).any(axis=0)
    cloud = np.zeros(grid.shape, dtype=bool)
    if raw.scl is not None:
        invalid |= np.isin(raw.scl, list(mask_classes))
        cloud = np.isin(raw.scl, CLOUD_CLASSES)
    if raw.extra_mask is not None:
        invalid |= raw.extra_mask
    return invalid, cloud


def scene_tags(
    raw: RawScene, aoi: AOI, epoch: str, cover: Cover, mask_classes: Sequence[int]
) -> dict[str, str]:
    """The product's GeoTIFF tags: dates, source, level, shares and how values were scaled."""
    tags = {
        "ACQUISITION_DATE": ",".join(raw.dates),
        "SOURCE": raw.source,
        "EPOCH": epoch,
        "AOI": aoi.slug,
        "CLOUD_FRACTION": f"{cover.cloud:.4f}",
        "VALID_FRACTION": f"{cover.valid:.4f}",
        "HARMONISED": "pre-2022 DN scale",
        "BOA_ADD_OFFSET_APPLIED": ",".join(str(o) for o in raw.offsets),
        "MASKED_SCL_CLASSES": ",".join(str(c) for c in mask_classes),
    }
    if raw.level is not None:
        tags[LEVEL_TAG] = raw.level
    if "scale" in raw.metadata:  # how a local input's values were brought to DN
        tags["INPUT_SCALE"] = str(raw.metadata["scale"]["input"])
    if "acquisition" in raw.metadata:  # the Catalog's choice within a date window
        tags["ACQUISITION_ID"] = raw.metadata["acquisition"]["id"]
        tags["ACQUISITION_CLOUD_COVER"] = str(raw.metadata["acquisition"]["cloud_cover"])
    return tags


def scene_summary(raw: RawScene, aoi: AOI, epoch: str, grid: Grid, cover: Cover) -> dict[str, Any]:
    """The JSON record beside the product: the tags' facts, the grid and the source's story."""
    return {
        "aoi": aoi.slug,
        "epoch": epoch,
        "source": raw.source,
        "processing_level": raw.level,
        "dates": raw.dates,
        "cloud_fraction": round(cover.cloud, 4),
        "valid_fraction": round(cover.valid, 4),
        "boa_add_offset_applied": list(map(int, raw.offsets)),
        "grid": {
            "crs": grid.crs.to_string(),
            "transform": list(grid.transform)[:6],
            "width": grid.width,
            "height": grid.height,
        },
        **raw.metadata,
    }


def write_scene(
    out: Path, dn: np.ndarray, grid: Grid, tags: dict[str, str], summary: dict[str, Any]
) -> None:
    """The COG and its JSON record, published together or not at all."""
    with output_set() as outputs:
        write_cog(
            outputs.path(out), dn, grid, nodata=0, descriptions=BANDS, tags=tags,
            band_tags=band_tags(),
        )  # fmt: skip
        text = json.dumps(summary, indent=2, sort_keys=True) + "\n"
        outputs.path(sidecar_path(out)).write_text(text, encoding="utf-8")


def land_medians(
    dn: np.ndarray, valid: np.ndarray, scl: np.ndarray | None
) -> tuple[list[float], int]:
    """Per-band medians over valid land pixels (SCL 4/5, else where NIR exceeds green)."""
    land = valid & (np.isin(scl, LAND_CLASSES) if scl is not None else dn[3] > dn[1])
    if int(land.sum()) < MIN_LAND_PIXELS:
        land = valid
    return [float(np.median(band[land])) for band in dn], int(land.sum())


def check_plausible(dn: np.ndarray, valid: np.ndarray, scl: np.ndarray | None, what: str) -> None:
    """Refuse a harmonised scene whose land medians are not L2A surface reflectance DN.

    Why these ranges (reflectance x 10000): over cloud-free land, median L2A surface
    reflectance of a town or its fields lies around 0.03-0.10 in blue, 0.05-0.12 in green and
    red and 0.15-0.35 in NIR (vegetation, bare soil, roofs and roads; Sentinel-2 MSI L2A
    validation reports and this project's real patches). The ranges are wide, a factor ~3 below
    the darkest (dense forest, 0.01-0.02 in the visible) and above the brightest land (bright
    soil and concrete, 0.25-0.30), so every real scene passes, while the scale errors of real
    downloads fall far outside: reflectance 0..1 or 8-bit values read as DN give medians near
    0..255 (x40-x10000 too dark), a Copernicus Browser UINT16 export read as DN is 6.55x too
    bright (NIR ~16000). The +1000 offset still in moves the visible medians to ~1300-2000,
    inside the ranges, which is why the offset is decided from metadata before this gate.
    """
    if not valid.any():
        return
    medians, n = land_medians(dn, valid, scl)
    bad = [
        b
        for b, m in zip(BANDS, medians, strict=True)
        if not PLAUSIBLE_MEDIANS[b][0] <= m <= PLAUSIBLE_MEDIANS[b][1]
    ]
    if not bad:
        return
    measured = ", ".join(f"{b}={m:.0f}" for b, m in zip(BANDS, medians, strict=True))
    ranges = ", ".join(f"{b} {lo}..{hi}" for b, (lo, hi) in PLAUSIBLE_MEDIANS.items())
    raise InputFileError(
        f"{what}: implausible values after harmonisation: medians over {n} valid land pixels "
        f"{measured}, outside the L2A surface-reflectance DN ranges ({ranges}) for "
        f"{', '.join(bad)}; likely cause: {likely_cause(medians)}. Nothing written"
    )


def likely_cause(medians: list[float]) -> str:
    """The scale error that would bring the medians into the plausible ranges."""

    def fits(values: list[float]) -> bool:
        return all(
            lo <= v <= hi for v, (lo, hi) in zip(values, PLAUSIBLE_MEDIANS.values(), strict=True)
        )

    if fits([m - 1000 for m in medians]):
        return "the +1000 BOA offset is still in: pass --scale dn-offset"
    if fits([m * 10000 / 65535 for m in medians]):
        return (
            "a Copernicus Browser UINT16 export (65535 x reflectance) read as digital "
            "numbers, 6.55x too bright: pass --scale browser-uint16"
        )
    if max(medians) <= 300:
        return (
            "reflectance (0..1) or 8-bit values read as digital numbers, the x10000 scale "
            "missing: pass --scale reflectance (float 0..1) or --scale browser-uint8"
        )
    if fits([m / 10 for m in medians]):
        return "values about 10x too large: check the scale the file was exported with (--scale)"
    return (
        "not surface reflectance: a visualised (true-colour) image, wrong bands, or a "
        "scene mostly of cloud or snow without an SCL mask"
    )


def sidecar_path(scene: str | Path) -> Path:
    """``scene.tif`` -> ``scene.json``: the acquisition record beside a scene."""
    return Path(scene).with_suffix(".json")
