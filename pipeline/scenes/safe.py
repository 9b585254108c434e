"""Sentinel-2 L2A SAFE products (folder or .zip): band files, offsets and date from metadata.

The 10 m bands are ``GRANULE/*/IMG_DATA/R10m/*_B0{2,3,4,8}_10m.jp2`` and the scene
classification ``R20m/*_SCL_20m.jp2``; ``MTD_MSIL2A.xml`` states each band's
``BOA_ADD_OFFSET`` (baseline >= 04.00) and the sensing start, so a SAFE never needs ``--date``
or ``--scale``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from contract.bands import BANDS
from pipeline.errors import InputFileError
from pipeline.scenes.band_files import Download

#: ESA's physical band ids in MTD_MSIL2A.xml (B01=0, B02=1, ..., B08=7).
SAFE_BAND_IDS = {"B02": 1, "B03": 2, "B04": 3, "B08": 7}
MTD_NAME = "MTD_MSIL2A.xml"


@dataclass
class SafeProduct:
    """The parts of an L2A SAFE product this project needs."""

    bands: dict[str, str]  # band -> GDAL path of its 10 m file
    scl: str  # GDAL path of the 20 m SCL file
    offsets: list[int]  # BOA_ADD_OFFSET of B02, B03, B04, B08
    date: str
    baseline: str | None


def is_safe(download: Download) -> bool:
    return any(name.endswith(MTD_NAME) for name in download.texts)


def open_safe(download: Download) -> SafeProduct:
    """Locate band files and read the metadata of a SAFE download."""
    path = download.source

    def find(pattern: str) -> str:
        hits = sorted(n for n in download.rasters if re.search(pattern, n))
        if not hits:
            raise InputFileError(f"{path}: SAFE product has no file matching {pattern}")
        return download.rasters[hits[0]]

    bands = {b: find(rf"R10m/[^/]*_{b}_10m\.(jp2|tif)$") for b in BANDS}
    scl = find(r"R20m/[^/]*_SCL_20m\.(jp2|tif)$")
    mtd = next(v for n, v in download.texts.items() if n.endswith(MTD_NAME))
    try:
        root = ET.fromstring(mtd)
    except ET.ParseError as exc:
        raise InputFileError(f"{path}: {MTD_NAME} is not valid XML ({exc})") from exc
    by_id = {el.get("band_id"): int(float(el.text or 0)) for el in root.iter("BOA_ADD_OFFSET")}
    offsets = [by_id.get(str(SAFE_BAND_IDS[b]), 0) for b in BANDS]
    start = next((el.text for el in root.iter("PRODUCT_START_TIME")), None)
    if not start:
        raise InputFileError(f"{path}: {MTD_NAME} has no PRODUCT_START_TIME")
    baseline = next((el.text for el in root.iter("PROCESSING_BASELINE")), None)
    return SafeProduct(bands=bands, scl=scl, offsets=offsets, date=start[:10], baseline=baseline)
