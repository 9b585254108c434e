"""Local Sentinel-1 GRD SAFE products (zip or folder), as the Copernicus Data Space and ASF
deliver them, calibrated like the Planetary Computer GRD items.

A product ``S1A_IW_GRDH_1SDV_<start>_<stop>_<orbit>_<datatake>_<crc>.SAFE`` holds
``manifest.safe`` (relative orbit, pass direction, start time, platform), ``measurement/`` (one
uint16 GeoTIFF with GCPs per polarisation) and ``annotation/calibration/`` (the
``calibration-*.xml`` and ``noise-*.xml`` of each measurement, same name stem). Zips are read in
place through GDAL's ``/vsizip/``: nothing is unpacked.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pipeline.errors import InputFileError
from pipeline.radar.series import normalise_platform, normalise_state

NS = {
    "safe": "http://www.esa.int/safe/sentinel-1.0",
    "s1": "http://www.esa.int/safe/sentinel-1.0/sentinel-1",
}
PRODUCT = re.compile(
    r"S1[A-D]_(\w\w)_(GRD[HMF])_1S[DS][VH]_\d{8}T\d{6}_\d{8}T\d{6}_\d{6}_\w{6}_\w{4}"
)


@dataclass(frozen=True)
class SafeProduct:
    """One GRD product: where its files are, and which pass it is."""

    path: Path
    start: dt.datetime
    orbit: int
    orbit_state: str
    platform: str
    measurements: dict[str, str]  # pol -> path GDAL opens
    annotations: dict[str, tuple[bytes, bytes | None]]  # pol -> (calibration, noise) XML


class _Reader:
    """Names and bytes inside a SAFE folder or zip."""

    def __init__(self, path: Path):
        self.path = path
        self.zip = zipfile.ZipFile(path) if path.is_file() else None
        names = (
            self.zip.namelist()
            if self.zip
            else [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()]
        )
        self.names = sorted(names)

    def read(self, name: str) -> bytes:
        return self.zip.read(name) if self.zip else (self.path / name).read_bytes()

    def gdal(self, name: str) -> str:
        return f"/vsizip/{self.path}/{name}" if self.zip else str(self.path / name)


def _manifest(reader: _Reader, where: str) -> tuple[dt.datetime, int, str, str]:
    name = next((n for n in reader.names if n.endswith("manifest.safe")), None)
    if name is None:
        raise InputFileError(f"{where}: no manifest.safe; is this a Sentinel-1 SAFE product?")
    root = ET.fromstring(reader.read(name))
    orbit = root.findtext(".//safe:relativeOrbitNumber", namespaces=NS)
    state = root.findtext(".//s1:pass", namespaces=NS)
    start = root.findtext(".//safe:startTime", namespaces=NS)
    number = root.findtext(".//safe:platform/safe:number", namespaces=NS)
    if not (orbit and state and start and number):
        raise InputFileError(
            f"{where}: manifest.safe lacks relativeOrbitNumber, pass, startTime or platform"
        )
    when = dt.datetime.fromisoformat(start).replace(tzinfo=dt.UTC)
    return when, int(orbit), normalise_state(state), normalise_platform("s1" + number)


def _bands(reader: _Reader, where: str, noise: bool) -> tuple[dict, dict]:
    measurements, annotations = {}, {}
    for name in reader.names:
        m = re.search(r"measurement/(s1\w-iw-grd-(vv|vh)-[\w-]+)\.tiff?$", name, re.I)
        if not m:
            continue
        stem, pol = m.group(1), m.group(2).lower()
        folder = str(PurePosixPath(name).parent.parent / "annotation" / "calibration")
        cal = f"{folder}/calibration-{stem}.xml"
        noi = f"{folder}/noise-{stem}.xml"
        if cal not in reader.names:
            raise InputFileError(f"{where}: {name} has no calibration annotation {cal}")
        if noise and noi not in reader.names:
            raise InputFileError(
                f"{where}: {name} has no noise annotation {noi}; pass --no-noise-removal to "
                "calibrate without removing thermal noise"
            )
        measurements[pol] = reader.gdal(name)
        annotations[pol] = (reader.read(cal), reader.read(noi) if noise else None)
    return measurements, annotations


def open_safe(path: Path, noise: bool = True) -> SafeProduct:
    """Read a SAFE product's identity and find its measurements; refuse what is not IW GRD."""
    match = PRODUCT.search(path.name)
    if match is None:
        raise InputFileError(
            f"{path}: not named like a Sentinel-1 product (S1A_IW_GRDH_1SDV_...); rename it "
            "back to its original name"
        )
    if match.group(1) != "IW" or not match.group(2).startswith("GRD"):
        raise InputFileError(
            f"{path}: {match.group(1)} {match.group(2)} product; only IW GRD is supported"
        )
    try:
        reader = _Reader(path)
    except zipfile.BadZipFile as exc:
        raise InputFileError(f"{path}: truncated or corrupt zip; download it again") from exc
    start, orbit, state, platform = _manifest(reader, str(path))
    measurements, annotations = _bands(reader, str(path), noise)
    missing = {"vv", "vh"} - set(measurements)
    if missing:
        raise InputFileError(
            f"{path}: no {'/'.join(sorted(missing)).upper()} measurement; "
            "dual-polarisation (1SDV) products are needed"
        )
    return SafeProduct(path, start, orbit, state, platform, measurements, annotations)
