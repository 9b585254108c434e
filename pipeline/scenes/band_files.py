"""One-file-per-band downloads: which file holds which band, and what the names say.

Downloads name their band files in three ways, all read here:

- Copernicus Browser: ``2022-05-05-00_00_2022-05-05-23_59_Sentinel-2_L2A_B04_(Raw).tiff``
  (the time range of the request, the processing level, L2A or L1C, then the band);
- Earth Search / STAC: ``B04.tif`` or the asset key ``red.tif`` (``nir`` is B08; ``nir08`` is
  B8A and is not used), often in a folder named after the item
  (``S2B_36UUB_20220505_0_L2A``), perhaps beside the item's JSON;
- GEE and SAFE-like names: ``..._B4.tif``, ``T36UUB_20220505T085559_B04_10m.jp2``.

A folder or zip is read as a whole: exactly one file per band, an optional SCL file, other
files (other bands, true-colour previews, metadata) ignored and listed in the log.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from contract.bands import BANDS
from contract.processing_level import L1C, L2A
from pipeline.errors import InputFileError

log = logging.getLogger(__name__)

RASTER_SUFFIXES = (".tif", ".tiff", ".jp2")
#: Name tokens of each band (file names and band descriptions, lower case).
BAND_TOKENS: dict[str, set[str]] = {
    "B02": {"b02", "b2", "blue", "band2"},
    "B03": {"b03", "b3", "green", "band3"},
    "B04": {"b04", "b4", "red", "band4"},
    "B08": {"b08", "b8", "nir", "band8"},
    "SCL": {"scl"},
}
BROWSER_NAME = re.compile(
    r"(\d{4}-\d{2}-\d{2})-\d{2}_\d{2}_(\d{4}-\d{2}-\d{2})-\d{2}_\d{2}_"
    r"Sentinel-2_L(?:1C|2A)_([A-Za-z0-9]+)_\(Raw\)",
    re.IGNORECASE,
)
ISO_DATE = re.compile(r"(?<!\d)(20\d{2})-(\d{2})-(\d{2})(?!\d)")
COMPACT_DATE = re.compile(r"(?<!\d)(20\d{2})(\d{2})(\d{2})(?=T\d|[^0-9]|$)")
BASELINE = re.compile(r"_N(\d{4})_")
#: How names, tags and STAC properties state a processing level (Copernicus Browser
#: ``Sentinel-2_L1C_B02``, SAFE ``MSIL2A``, product types ``S2MSI1C``, ``Level-2A``, collections
#: ``sentinel-2-l2a``).
LEVEL_WORDS = {
    L1C: re.compile(r"(?<![a-z0-9])(?:s2msi|msil|l|level-)1c(?![a-z0-9])", re.IGNORECASE),
    L2A: re.compile(r"(?<![a-z0-9])(?:s2msi|msil|l|level-)2a(?![a-z0-9])", re.IGNORECASE),
}
#: Tags and STAC item properties that may state the level.
LEVEL_KEYS = ("PROCESSING_LEVEL", "PRODUCT_TYPE", "s2:product_type", "processing:level")


def band_of(name: str) -> str | None:
    """The band (or ``SCL``) a file name or description names, if exactly one."""
    tokens = set(re.split(r"[^a-z0-9]+", Path(name).stem.lower() if "." in name else name.lower()))
    hits = [band for band, names in BAND_TOKENS.items() if tokens & names]
    return hits[0] if len(hits) == 1 else None


def level_from(texts: list[str], source: str) -> str | None:
    """The processing level that names, tags or properties state, None when none does.

    Both levels stated at once is refused: the bands of two products mixed in one download.
    """
    found = {
        level: text
        for text in texts
        for level, words in LEVEL_WORDS.items()
        if text and words.search(Path(text).name if "/" in text else text)
    }
    if len(found) > 1:
        raise InputFileError(
            f"{source}: names or tags state both processing levels ({found[L1C]!r} says L1C, "
            f"{found[L2A]!r} L2A); use the bands of one product"
        )
    return next(iter(found), None)


def is_browser_name(name: str) -> bool:
    return BROWSER_NAME.search(Path(name).name) is not None


def date_from_names(names: list[str], source: str) -> str | None:
    """The acquisition date the file names give, or None; several different ones are refused."""
    ranges = {m.group(1, 2) for n in names if (m := BROWSER_NAME.search(Path(n).name))}
    if ranges:
        days = {d for r in ranges for d in r}
        if len(days) > 1:
            raise InputFileError(
                f"{source}: the Copernicus Browser names give a time range "
                f"{min(days)}..{max(days)}, not one acquisition date; give the date of the "
                "image with --date YYYY-MM-DD"
            )
        return days.pop()
    found: set[str] = set()
    for name in names:
        for m in list(ISO_DATE.finditer(name)) + list(COMPACT_DATE.finditer(name)):
            try:
                found.add(dt.date(*map(int, m.groups())).isoformat())
            except ValueError:
                continue
    if len(found) > 1:
        raise InputFileError(
            f"{source}: the file names give several dates {sorted(found)}; "
            "give the acquisition date with --date YYYY-MM-DD"
        )
    return found.pop() if found else None


def baseline_from_names(names: list[str]) -> str | None:
    """Processing baseline from SAFE-style names (``_N0400_`` -> ``04.00``)."""
    for name in names:
        if m := BASELINE.search(name):
            return f"{m.group(1)[:2]}.{m.group(1)[2:]}"
    return None


@dataclass
class Download:
    """The files of a folder or zip download, as GDAL paths and display names."""

    source: Path
    rasters: dict[str, str]  # display name -> GDAL path
    texts: dict[str, bytes] = field(default_factory=dict)  # JSON/XML members by name


#: The largest metadata member read (SAFE's MTD_MSIL2A.xml is ~60 KiB).
MAX_TEXT_BYTES = 5_000_000


def read_member(zf: zipfile.ZipFile, name: str, path: Path) -> bytes:
    """Inflate a zip member in chunks, refusing it past :data:`MAX_TEXT_BYTES`.

    The declared size in the zip's directory can lie: a crafted member that inflates from
    1 MiB to 1 GiB would otherwise be held in memory whole before any check.
    """
    chunks, total = [], 0
    with zf.open(name) as member:
        while chunk := member.read(1 << 16):
            total += len(chunk)
            if total > MAX_TEXT_BYTES:
                raise InputFileError(
                    f"{path}: member {name} inflates past "
                    f"{MAX_TEXT_BYTES // 1_000_000} MB; not a metadata file "
                    "of a Sentinel-2 download"
                )
            chunks.append(chunk)
    return b"".join(chunks)


def open_download(path: Path) -> Download:
    """List a folder's or zip's raster files and small metadata files."""
    if path.is_dir():
        files = {str(p.relative_to(path)): p for p in sorted(path.rglob("*")) if p.is_file()}
        rasters = {
            n: str(p.resolve()) for n, p in files.items() if p.suffix.lower() in RASTER_SUFFIXES
        }
        texts = {
            n: p.read_bytes()
            for n, p in files.items()
            if p.suffix.lower() in (".json", ".xml") and p.stat().st_size < MAX_TEXT_BYTES
        }
        return Download(path, rasters, texts)
    try:
        with zipfile.ZipFile(path) as zf:
            names = sorted(n for n in zf.namelist() if not n.endswith("/"))
            texts = {
                n: read_member(zf, n, path)
                for n in names
                if n.lower().endswith((".json", ".xml"))
                and zf.getinfo(n).file_size < MAX_TEXT_BYTES
            }
    except zipfile.BadZipFile as exc:
        raise InputFileError(f"{path}: not a readable zip file ({exc})") from exc
    rasters = {
        n: f"/vsizip/{path.resolve()}/{n}" for n in names if n.lower().endswith(RASTER_SUFFIXES)
    }
    return Download(path, rasters, texts)


def assign_bands(download: Download) -> tuple[dict[str, str], str | None]:
    """GDAL path of each of B02, B03, B04, B08 and of the SCL file (if any)."""
    by_band: dict[str, list[str]] = {}
    ignored = []
    for name in download.rasters:
        band = band_of(name)
        if band is None:
            ignored.append(name)
        else:
            by_band.setdefault(band, []).append(name)
    if ignored:
        log.info(
            "%s: ignoring files that name none of %s: %s",
            download.source,
            ", ".join((*BANDS, "SCL")),
            ignored,
        )
    for band, names in by_band.items():
        if len(names) > 1:
            raise InputFileError(
                f"{download.source}: two files for band {band}: "
                f"{', '.join(names)}; keep one of them"
            )
    missing = [b for b in BANDS if b not in by_band]
    if missing:
        raise InputFileError(
            f"{download.source}: no file for band(s) {', '.join(missing)} among "
            f"{sorted(download.rasters) or 'no raster files'}; a per-band download needs one "
            "file each for B02, B03, B04 and B08, named with the band (B04, red, B4, ...)"
        )
    scl = by_band.get("SCL", [None])[0]
    return (
        {b: download.rasters[by_band[b][0]] for b in BANDS},
        download.rasters[scl] if scl else None,
    )


def stac_item(download: Download) -> dict[str, object]:
    """Date and offset facts of a STAC item JSON beside the band files (empty if none)."""
    for name, raw in download.texts.items():
        if not name.lower().endswith(".json"):
            continue
        try:
            doc = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if not isinstance(doc, dict) or doc.get("type") != "Feature" or "assets" not in doc:
            continue
        props = doc.get("properties") or {}
        facts: dict[str, object] = {"item": doc.get("id"), "file": name}
        for key in (
            "datetime",
            "earthsearch:boa_offset_applied",
            "s2:processing_baseline",
            *LEVEL_KEYS,
        ):
            if key in props:
                facts[key] = props[key]
        offsets = {
            b.get("offset")
            for key, a in doc["assets"].items()
            if isinstance(a, dict) and band_of(key) in BANDS
            for b in a.get("raster:bands", [])
            if isinstance(b, dict) and "offset" in b
        }
        if len(offsets) == 1:
            facts["raster_offset"] = offsets.pop()
        return facts
    return {}
