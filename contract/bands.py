"""Band order, value scale and nodata of every scene, patch and model input in the project."""

from __future__ import annotations

#: Band order of every array (blue, green, red, near infrared). Not RGB order.
BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B08")
BAND_LABELS: dict[str, str] = {
    "B02": "blue 490 nm",
    "B03": "green 560 nm",
    "B04": "red 665 nm",
    "B08": "near infrared 842 nm",
}
#: L2A digital numbers are surface reflectance x 10000 (pre-2022 scale, no BOA offset).
QUANTIFICATION = 10000
#: Value of a scene pixel without a valid observation in any band.
SCENE_NODATA = 0
#: Plausible medians of each band over valid land pixels of a scene on this scale (why these
#: ranges: pipeline.scenes.product.check_plausible). A scale or offset error lands outside.
PLAUSIBLE_MEDIANS: dict[str, tuple[int, int]] = {
    "B02": (100, 3000),
    "B03": (150, 3500),
    "B04": (100, 4000),
    "B08": (300, 6000),
}


def band_tags() -> list[dict[str, str]]:
    """Per-band GeoTIFF tags (band id and name) that GIS tools and readers use."""
    return [{"BAND": b, "NAME": BAND_LABELS[b]} for b in BANDS]


def band_permutation(bands: object) -> tuple[str, ...] | None:
    """``bands`` as a tuple of band names if it orders exactly :data:`BANDS`, else None.

    The one check behind every "is this a band order?" question: ``--bands`` options, checkpoint
    input conventions, scenes whose bands a user names.
    """
    try:
        names = tuple(str(b).strip().upper() for b in bands)  # type: ignore[attr-defined]
    except TypeError:
        return None
    return names if sorted(names) == sorted(BANDS) and len(names) == len(BANDS) else None
