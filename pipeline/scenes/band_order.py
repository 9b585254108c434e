"""Which band of a multi-band GeoTIFF is B02, B03, B04, B08, and a check that it is so.

Order comes from band descriptions (``B02``, ``B4``, ``red``...), else from ``--bands``, else
from a known file-name pattern (the original study's ``*_RGBNIR_clip.tif`` stacks are B04, B03,
B02, B08), else the documented default B02, B03, B04, B08 (an optional fifth band is SCL).

An order that was *assumed* (name pattern or default) is checked against the data: on real L2A
land red exceeds blue in ~98% of valid pixels, so an assumed order in which "B04" is below
"B02" on most land pixels swaps blue and red, and is refused with the order the data suggest.
Land is where NIR exceeds green (not water), a test the swap cannot disturb because NIR and
green sit in the same place in both orders.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract.bands import BANDS
from pipeline.errors import InputFileError, PipelineUsageError
from pipeline.scenes.band_files import band_of

log = logging.getLogger(__name__)

STUDY_STACK = re.compile(r"RGBNIR", re.IGNORECASE)
STUDY_ORDER = ("B04", "B03", "B02", "B08")
KNOWN_NAMES = {f"B{i:02d}" for i in range(1, 13)} | {"B8A", "SCL"}
#: Share of land pixels on which B04 must exceed B02 for an assumed order to stand.
MIN_RED_OVER_BLUE = 0.5
MIN_LAND_PIXELS = 100


@dataclass(frozen=True)
class BandOrder:
    """1-based band indexes of B02, B03, B04, B08 (and SCL) and how they were found."""

    indexes: tuple[int, ...]
    scl: int | None
    names: tuple[str, ...]  # the file's bands in file order
    evidence: str
    assumed: bool

    def record(self) -> dict[str, object]:
        return {"file_order": list(self.names), "evidence": self.evidence}


def parse_bands(text: str) -> tuple[str, ...]:
    """``--bands B04,B03,B02,B08``: the file's bands in order; each of the four exactly once."""
    names = tuple(n.strip().upper() for n in text.split(",") if n.strip())
    names = tuple(f"B{int(n[1:]):02d}" if re.fullmatch(r"B\d{1,2}", n) else n for n in names)
    unknown = [n for n in names if n not in KNOWN_NAMES]
    missing = [b for b in BANDS if names.count(b) != 1]
    if unknown or missing:
        raise PipelineUsageError(
            f"--bands {text!r}: {'unknown names ' + str(unknown) + '; ' if unknown else ''}"
            f"must name each of {', '.join(BANDS)} exactly once (and SCL at most once), in the "
            "file's band order, e.g. B04,B03,B02,B08"
        )
    return names


def _from_descriptions(descriptions: tuple[str | None, ...]) -> tuple[str, ...] | None:
    names = []
    for d in descriptions:
        text = (d or "").strip()
        band = band_of(text) or ("B08" if text.lower() == "near infrared" else None)
        names.append(band or text or "?")
    if all(names.count(b) == 1 for b in BANDS):
        return tuple(names)
    return None


def band_order(
    source: str, descriptions: tuple[str | None, ...], bands: tuple[str, ...] | None
) -> BandOrder:
    """Decide the order of a stack's bands, or refuse naming what was found."""
    count = len(descriptions)
    named = _from_descriptions(descriptions)
    if named is not None:
        return _order(named, "band descriptions", assumed=False)
    if bands is not None:
        if len(bands) != count:
            raise InputFileError(
                f"{source}: --bands names {len(bands)} bands but the file has {count}"
            )
        return _order(bands, "--bands", assumed=False)
    if any(descriptions):
        raise InputFileError(
            f"{source}: cannot find bands B02, B03, B04, B08 among the band descriptions "
            f"{list(descriptions)}; give the file's order with --bands, e.g. B04,B03,B02,B08"
        )
    if count == 1:
        raise InputFileError(
            f"{source}: a single band file; put the four band files (B02, B03, B04, B08) in one "
            "folder or zip and pass that as --input"
        )
    if count not in (4, 5):
        raise InputFileError(
            f"{source}: cannot find bands B02, B03, B04, B08: {count} unnamed band(s); give "
            "the file's order with --bands (e.g. B04,B03,B02,B08)"
        )
    scl = ("SCL",) if count == 5 else ()
    if STUDY_STACK.search(Path(source).name):
        return _order(
            STUDY_ORDER + scl,
            "file name *RGBNIR* (the study's stacks are B04, B03, B02, B08)",
            assumed=True,
        )
    return _order(
        BANDS + scl,
        "assumed: unnamed bands in the documented order B02, B03, "
        "B04, B08 (say otherwise with --bands)",
        assumed=True,
    )


def _order(names: tuple[str, ...], evidence: str, assumed: bool) -> BandOrder:
    indexes = tuple(names.index(b) + 1 for b in BANDS)
    scl = names.index("SCL") + 1 if "SCL" in names else None
    return BandOrder(indexes, scl, names, evidence, assumed)


def check_order(source: str, order: BandOrder, data: np.ndarray) -> None:
    """Refuse an assumed order that the data contradict (blue and red swapped).

    ``data`` holds B02, B03, B04, B08 as the order says (float, NaN = no data).
    """
    blue, green, red, nir = data
    land = np.isfinite(data).all(axis=0) & (nir > green)
    n = int(land.sum())
    if n < MIN_LAND_PIXELS:
        log.info("%s: too few land pixels (%d) to check the band order", source, n)
        return
    share = float((red[land] > blue[land]).mean())
    if share >= MIN_RED_OVER_BLUE:
        return
    swapped = tuple({"B02": "B04", "B04": "B02"}.get(b, b) for b in order.names)
    message = (
        f"{source}: the band order {','.join(order.names)} ({order.evidence}) is "
        f"contradicted by the data: 'B04' exceeds 'B02' on only {share:.0%} of {n} land "
        f"pixels (on real L2A land red exceeds blue on ~98%); the likely order is "
        f"{','.join(swapped)}: pass --bands {','.join(swapped)}"
    )
    if order.assumed:
        raise InputFileError(message)
    log.warning("%s", message)
