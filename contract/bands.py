"""Band order, value scale and nodata of every scene, patch and model input in the project."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sensor:
    """What every array of one sensor's scenes is: bands, type, scale, nodata, plausible values.

    Readers, patch cutters, models and map writers take these facts from a record instead of
    spelling them, so a second sensor is a second record, not edits in fifty places.
    """

    name: str
    bands: tuple[str, ...]
    band_labels: dict[str, str]
    dtype: str
    #: value = physical quantity x scale (DN = reflectance x 10000)
    scale: float
    nodata: float
    #: plausible median of each band over valid land pixels; a scale or offset error lands
    #: outside (why these ranges: pipeline.scenes.product.check_plausible)
    plausible_medians: dict[str, tuple[float, float]]
    #: bands shown as red, green, blue in quick-looks, or None for a sensor without colour
    true_colour: tuple[str, str, str] | None


#: Red, green and blue of Sentinel-2, for quick-looks.
TRUE_COLOUR: tuple[str, str, str] = ("B04", "B03", "B02")
#: Sentinel-2 L2A (and L1C) at 10 m, as every scene, patch and model input of the project holds
#: it: blue, green, red, near infrared (not RGB order), uint16 DN on the pre-2022 scale
#: (reflectance x 10000, no BOA offset), 0 where no band has a valid observation.
SENTINEL2 = Sensor(
    name="Sentinel-2 MSI",
    bands=("B02", "B03", "B04", "B08"),
    band_labels={
        "B02": "blue 490 nm",
        "B03": "green 560 nm",
        "B04": "red 665 nm",
        "B08": "near infrared 842 nm",
    },
    dtype="uint16",
    scale=10000,
    nodata=0,
    plausible_medians={
        "B02": (100, 3000),
        "B03": (150, 3500),
        "B04": (100, 4000),
        "B08": (300, 6000),
    },
    true_colour=TRUE_COLOUR,
)

# The Sentinel-2 record's fields under the names the code has always used.
BANDS: tuple[str, ...] = SENTINEL2.bands
BAND_LABELS: dict[str, str] = SENTINEL2.band_labels
QUANTIFICATION = int(SENTINEL2.scale)
SCENE_NODATA = int(SENTINEL2.nodata)
PLAUSIBLE_MEDIANS: dict[str, tuple[float, float]] = SENTINEL2.plausible_medians


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
