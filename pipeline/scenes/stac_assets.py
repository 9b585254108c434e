"""Which asset of a Sentinel-2 L2A STAC item holds which band, and what its numbers mean.

Public catalogues lay the same product out differently: Earth Search names assets ``blue``,
``green``, ``red``, ``nir``, ``scl`` (beside ``blue-jp2``... copies and a ``visual`` composite),
Planetary Computer ``B02``, ``B03``, ``B04``, ``B08``, ``SCL``. Assets are therefore matched by
their ``eo:bands`` name or common name as well as by key, and only Cloud Optimized GeoTIFFs
qualify, because only they can be read window by window.

The digital numbers differ too. Since processing baseline 04.00 (25 January 2022) ESA adds
``BOA_ADD_OFFSET = -1000``; Collection 1 reprocessed every date with it. Each item says what its
values carry, in this order of trust:

1. ``earthsearch:boa_offset_applied: true``: Earth Search already subtracted the offset when it
   converted the product (its ``raster:bands`` offset is then stale and ignored);
2. ``raster:bands`` ``offset`` (with ``scale`` 0.0001): reflectance = DN * scale + offset, so the
   DN still carry ``offset / scale`` (Collection 1: -0.1 / 0.0001 = -1000);
3. the processing baseline (``s2:processing_baseline``): 04.00 or later carries -1000;
4. a ``raster:bands`` scale without an offset: by the raster extension, offset 0.

An item that states none of these is refused rather than guessed, since a silent +1000 DN shift
between epochs is exactly what a change detector would learn as damage.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import pystac

from contract.bands import BANDS, QUANTIFICATION
from pipeline.errors import InputFileError

#: Band id -> the eo:bands common name of that band.
COMMON_NAMES = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir"}
SCL = "SCL"
#: Baselines from this one on carry BOA_ADD_OFFSET in their digital numbers.
OFFSET_BASELINE = (4, 0)
BOA_ADD_OFFSET = -1000
BASELINE_KEYS = ("s2:processing_baseline", "sentinel:processing_baseline", "processing:version")


@dataclass(frozen=True)
class ItemBands:
    """Where one item keeps B02, B03, B04, B08 and SCL, and the offset still in its DN."""

    item_id: str
    keys: dict[str, str]  # band id (B02..B08, SCL) -> asset key
    offsets: tuple[int, ...]  # BOA_ADD_OFFSET still in the DN of B02, B03, B04, B08


def _band_entries(asset: pystac.Asset) -> list[dict[str, Any]]:
    """The asset's band objects: ``eo:bands`` (STAC 1.0) or ``bands`` (STAC 1.1)."""
    fields = asset.extra_fields
    return list(fields.get("eo:bands") or fields.get("bands") or [])


def _is_cog(asset: pystac.Asset) -> bool:
    media = (asset.media_type or "").lower()
    if media:
        return "image/tiff" in media or "geotiff" in media
    return asset.href.split("?", 1)[0].lower().endswith((".tif", ".tiff"))


def _names(key: str, asset: pystac.Asset) -> set[str]:
    """Every name the asset answers to: its key and its single band's name and common name."""
    names = {key.lower()}
    entries = _band_entries(asset)
    if len(entries) == 1:
        for field in ("name", "common_name", "eo:common_name"):
            if entries[0].get(field):
                names.add(str(entries[0][field]).lower())
    elif entries:  # a composite such as ``visual`` is never one band
        return set()
    return names


def _resolution(asset: pystac.Asset) -> float:
    raster = asset.extra_fields.get("raster:bands") or _band_entries(asset) or [{}]
    value = raster[0].get("spatial_resolution") or asset.extra_fields.get("gsd")
    return float(value) if value else math.inf


def _find(item: pystac.Item, wanted: set[str]) -> str | None:
    hits = [
        (_resolution(a), k) for k, a in item.assets.items() if _is_cog(a) and _names(k, a) & wanted
    ]
    return min(hits)[1] if hits else None


def _describe(item: pystac.Item) -> str:
    href = item.get_self_href()
    return f"STAC item {item.id}" + (f" ({href})" if href else "")


def band_keys(item: pystac.Item) -> dict[str, str]:
    """Asset key of each band and of SCL, preferring the finest COG among matches."""
    keys: dict[str, str] = {}
    for band in (*BANDS, SCL):
        wanted = {band.lower(), COMMON_NAMES.get(band, band).lower()}
        key = _find(item, wanted)
        if key is None:
            raise InputFileError(
                f"{_describe(item)} has no Cloud Optimized GeoTIFF asset for {band} "
                f"(assets: {', '.join(sorted(item.assets))}); is the collection Sentinel-2 L2A?"
            )
        keys[band] = key
    return keys


def _scale_offset(asset: pystac.Asset) -> tuple[float | None, float | None]:
    fields = asset.extra_fields
    band = (fields.get("raster:bands") or _band_entries(asset) or [{}])[0]
    scale = band.get("scale", band.get("raster:scale", fields.get("raster:scale")))
    offset = band.get("offset", band.get("raster:offset", fields.get("raster:offset")))
    return (None if scale is None else float(scale), None if offset is None else float(offset))


def _baseline(item: pystac.Item) -> tuple[int, ...] | None:
    for key in BASELINE_KEYS:
        value = item.properties.get(key)
        if value is not None:
            # "04.00", "5.11" or ESA's "N0400"
            match = re.fullmatch(r"(\d+)\.(\d+)|[Nn]?(\d\d)(\d\d)", str(value).strip())
            if match is None:
                raise InputFileError(f"{_describe(item)}: unreadable {key} {value!r}")
            major, minor = (g for g in match.groups() if g is not None)
            return int(major), int(minor)
    return None


def boa_offsets(item: pystac.Item, keys: dict[str, str]) -> tuple[int, ...]:
    """BOA_ADD_OFFSET still present in the DN of each band (see the module docstring)."""
    if item.properties.get("earthsearch:boa_offset_applied") is True:
        return (0,) * len(BANDS)
    baseline = _baseline(item)
    out = []
    for band in BANDS:
        scale, offset = _scale_offset(item.assets[keys[band]])
        if scale is not None and not math.isclose(scale, 1 / QUANTIFICATION, rel_tol=1e-6):
            raise InputFileError(
                f"{_describe(item)}: asset {keys[band]} has scale {scale}, not "
                f"1/{QUANTIFICATION}; its values are not Sentinel-2 L2A digital numbers"
            )
        if offset is not None:
            out.append(round(offset * QUANTIFICATION))
        elif baseline is not None:
            out.append(BOA_ADD_OFFSET if baseline >= OFFSET_BASELINE else 0)
        elif scale is not None:
            out.append(0)
        else:
            raise InputFileError(
                f"{_describe(item)}: asset {keys[band]} states neither a raster:bands "
                "scale/offset nor a processing baseline, so whether its values carry "
                "BOA_ADD_OFFSET (-1000) is unknown; use a collection that records it"
            )
    return tuple(out)


def item_bands(item: pystac.Item) -> ItemBands:
    """Band assets and offsets of one item, refused with a reason when they cannot be told."""
    keys = band_keys(item)
    return ItemBands(item.id, keys, boa_offsets(item, keys))
