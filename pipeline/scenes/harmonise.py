"""Which value scale a downloaded scene is in, and the factor that brings it to digital numbers.

The product is always the documented pre-2022 L2A scale (reflectance x 10000, no BOA offset).
Downloads come in five scales, and mistaking one for another gives a map that looks fine and is
wrong, so the scale is decided from evidence and stated, never guessed silently:

- ``dn``: digital numbers without the +1000 offset (original pre-2022 products, Sentinel Hub and
  Earth Search ``sentinel-2-l2a`` with ``earthsearch:boa_offset_applied``, GEE
  ``S2_SR_HARMONIZED``);
- ``dn-offset``: digital numbers with ``BOA_ADD_OFFSET = -1000`` still in (baseline >= 04.00
  SAFE products, Earth Search ``sentinel-2-c1-l2a`` COGs whose ``raster:bands`` offset is -0.1);
- ``reflectance``: float reflectance 0..1 (Copernicus Browser FLOAT32, user-scaled GEE exports);
- ``browser-uint16`` / ``browser-uint8``: the Copernicus Browser's integer exports, 65535 x and
  255 x reflectance. A UINT16 Browser file read as DN is 6.55x too bright.

Evidence, strongest first: ``--scale`` (or ``--boa-offset``); the data type with the value range
(floats 0..1 are reflectance, 8-bit values cannot be L2A DN); the Browser's file-name pattern;
``BOA_ADD_OFFSET`` band tags, GDAL scale/offset metadata, a STAC item beside the files, the
processing baseline in tags or names; the acquisition date (before 25 January 2022 no product
carried the offset). Anything else is ambiguous and refused, naming the ``--scale`` values to try.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

import numpy as np

from pipeline.errors import InputFileError
from pipeline.scenes.defaults import SCALE_HELP

#: Digital numbers per input unit of each scale.
FACTORS: dict[str, float] = {
    "dn": 1.0,
    "dn-offset": 1.0,
    "reflectance": 10000.0,
    "browser-uint16": 10000.0 / 65535.0,
    "browser-uint8": 10000.0 / 255.0,
}
BOA_OFFSET = -1000
#: First day on which ESA's products carried the offset (processing baseline 04.00).
OFFSET_EPOCH = dt.date(2022, 1, 25)


@dataclass(frozen=True)
class Scale:
    """The decided scale of an input and why; ``offsets`` are the BOA offsets still in it."""

    name: str
    reason: str
    offsets: tuple[int, ...] = (0, 0, 0, 0)

    @property
    def factor(self) -> float:
        return FACTORS[self.name]

    def record(self) -> dict[str, object]:
        """How the JSON record and the log state it."""
        return {
            "input": self.name,
            "factor_to_dn": round(self.factor, 6),
            "boa_add_offset": list(self.offsets),
            "evidence": self.reason,
        }


@dataclass
class ScaleEvidence:
    """What an input says about its scale, gathered by the reader."""

    source: str  # file (or folder) named in messages
    dtype: str
    values: np.ndarray  # a sample of valid values, all bands
    browser_name: bool = False  # Copernicus Browser raw-band file name
    tag_offsets: list[int] | None = None  # BOA_ADD_OFFSET band tags, per band
    gdal_scale_offset: tuple[float, float] | None = None  # (scale, offset) of GDAL metadata
    stac: dict[str, object] = field(default_factory=dict)  # from a STAC item beside the files
    baseline: str | None = None  # processing baseline, e.g. "04.00"
    date: str | None = None


def offset_scale(offsets: list[int], reason: str) -> Scale:
    """DN with the given per-band offsets still in (``dn`` when all are 0)."""
    name = "dn-offset" if any(offsets) else "dn"
    return Scale(name, reason, tuple(int(o) for o in offsets))


def forced_scale(name: str, boa_offset: int | None) -> Scale | None:
    """The user's ``--scale`` / ``--boa-offset``, which override every other evidence."""
    if name:
        offset = BOA_OFFSET if name == "dn-offset" else 0
        return Scale(name, f"--scale {name}", (offset,) * 4)
    if boa_offset is not None:
        return offset_scale([boa_offset] * 4, f"--boa-offset {boa_offset}")
    return None


def detect_scale(ev: ScaleEvidence) -> Scale:
    """Decide the scale from the evidence or refuse naming the ``--scale`` values to try."""
    kind = np.dtype(ev.dtype).kind
    if kind == "f":
        return _float_scale(ev)
    if np.dtype(ev.dtype).itemsize == 1:
        if ev.browser_name:
            return Scale("browser-uint8", "8-bit Copernicus Browser raw-band export (file name)")
        raise InputFileError(
            f"{ev.source}: 8-bit values cannot be L2A digital numbers; if this is a Copernicus "
            "Browser UINT8 raw-band export pass --scale browser-uint8 (a true-colour or other "
            "visualised image cannot be used)"
        )
    if ev.browser_name:
        return _browser_uint16(ev)
    return _dn_scale(ev)


def _float_scale(ev: ScaleEvidence) -> Scale:
    hi = float(np.percentile(ev.values, 99)) if ev.values.size else 0.0
    if hi <= 1.5:
        return Scale("reflectance", f"{ev.dtype} values 0..{hi:.2f} (reflectance)")
    if hi >= 200:
        return _dn_scale(ev)
    raise InputFileError(
        f"{ev.source}: {ev.dtype} values up to {hi:.1f} are neither reflectance 0..1 nor "
        f"digital numbers; pass --scale with one of: {SCALE_HELP}"
    )


def _browser_uint16(ev: ScaleEvidence) -> Scale:
    median = float(np.median(ev.values)) if ev.values.size else 0.0
    if median < 650:  # reflectance < 0.01 over a whole download: not a Browser export
        raise InputFileError(
            f"{ev.source}: named like a Copernicus Browser export but its {ev.dtype} values "
            f"(median {median:.0f}) are too dark for 65535 x reflectance; pass --scale dn or "
            "--scale dn-offset if it holds digital numbers"
        )
    return Scale(
        "browser-uint16",
        "16-bit Copernicus Browser raw-band export (file name; "
        f"median {median:.0f} = reflectance {median / 65535:.3f})",
    )


def _dn_scale(ev: ScaleEvidence) -> Scale:
    if ev.tag_offsets is not None:
        return offset_scale(ev.tag_offsets, "BOA_ADD_OFFSET band tags")
    if ev.gdal_scale_offset is not None:
        scale, offset = ev.gdal_scale_offset
        if math.isclose(scale, 1e-4, rel_tol=1e-3):
            dn_offset = round(offset / scale)
            return offset_scale([dn_offset] * 4, f"GDAL scale {scale:g} offset {offset:g}")
    if ev.stac:
        stac_scale = _stac_scale(ev.stac)
        if stac_scale is not None:
            return stac_scale
    if ev.baseline:
        offset = BOA_OFFSET if _baseline_has_offset(ev.baseline) else 0
        return offset_scale([offset] * 4, f"processing baseline {ev.baseline}")
    if ev.date and dt.date.fromisoformat(ev.date[:10]) < OFFSET_EPOCH:
        return Scale(
            "dn",
            f"integer DN acquired {ev.date[:10]}, before the 2022 offset (assumed "
            "an original product; pass --scale dn-offset for a reprocessed "
            "Collection-1 one)",
        )
    median = float(np.median(ev.values)) if ev.values.size else 0.0
    hint = (
        (
            f" The values (median {median:.0f}) suggest a Copernicus Browser UINT16 export "
            "(--scale browser-uint16)."
        )
        if median > 3500
        else ""
    )
    raise InputFileError(
        f"{ev.source}: cannot tell the value scale: {ev.dtype} digital numbers acquired "
        f"{ev.date or 'on an unknown date'} without BOA_ADD_OFFSET tags, scale metadata, a "
        f"STAC item or a processing baseline.{hint} Pass --scale with one of: {SCALE_HELP}"
    )


def _baseline_has_offset(baseline: str) -> bool:
    digits = baseline.replace("N", "").replace(".", "")
    return int(digits[:2] or 0) >= 4


def _stac_scale(stac: dict[str, object]) -> Scale | None:
    applied = stac.get("earthsearch:boa_offset_applied")
    if applied is True:
        return Scale("dn", "STAC item: earthsearch:boa_offset_applied true")
    offset = stac.get("raster_offset")
    if isinstance(offset, int | float):
        dn_offset = round(float(offset) * 10000)
        return offset_scale([dn_offset] * 4, f"STAC raster:bands offset {offset}")
    baseline = stac.get("s2:processing_baseline")
    if isinstance(baseline, str) and applied is False:
        offset = BOA_OFFSET if _baseline_has_offset(baseline) else 0
        return offset_scale([offset] * 4, f"STAC item: baseline {baseline}, offset not applied")
    return None


def to_dn(values: np.ndarray, scale: Scale) -> np.ndarray:
    """Input values (float, NaN = no data) in the DN units of ``scale`` (offset still in)."""
    return values * np.float32(scale.factor) if scale.factor != 1.0 else values
