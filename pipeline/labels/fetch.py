"""``pipeline unosat``: put an AOI's UNOSAT damage-site file where the workflow expects it.

UNOSAT files are published per city on unosat.org and the Humanitarian Data Exchange; where the
AOI file gives ``labels.url`` it is downloaded (with retries) to ``labels.path``, otherwise the
error says where to get the file and where to put it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlparse

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from contract.atomic import atomic_path
from pipeline.aoi import AOI
from pipeline.errors import InputFileError, ServiceError

log = logging.getLogger(__name__)
WHERE = (
    "UNOSAT publishes its Comprehensive Damage Assessments at https://unosat.org/products/ "
    "and on https://data.humdata.org (search 'UNOSAT damage assessment <city>')"
)


#: Leading bytes of the formats UNOSAT publishes: zip (shapefile, zipped .gdb), GeoPackage.
SIGNATURES = {b"PK\x03\x04": "zip", b"SQLite format 3\x00": "GeoPackage"}


def fetch_unosat(aoi: AOI, out: str | Path | None = None, timeout_s: float = 120.0) -> Path:
    """Download ``labels.url`` (https only) to ``out`` (default: the AOI's ``labels.path``).

    The body must start like a zip or a GeoPackage: a portal's HTML error page saved as
    ``.zip`` would otherwise only fail later, as an unreadable label file.
    """
    if aoi.labels is None:
        raise InputFileError(
            f"{aoi.source_file}: AOI {aoi.slug} is map-only (no labels "
            "property); add labels.path to give it UNOSAT labels"
        )
    dest = Path(out or aoi.labels.path)
    url = aoi.labels.url
    if not url:
        raise InputFileError(
            f"{aoi.slug}: no UNOSAT file at {dest} and no labels.url in {aoi.source_file}. "
            f"{WHERE}; save the damage-site file (zipped shapefile, .gdb or .gpkg) as {dest}, "
            "or set labels.path / labels.url in the AOI file."
        )
    session = requests.Session()
    retry = Retry(
        total=4,
        backoff_factor=2.0,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=("GET",),
    )
    session.mount("https://", HTTPAdapter(max_retries=retry))
    host = urlparse(url).hostname
    try:
        with session.get(url, stream=True, timeout=timeout_s) as resp:
            resp.raise_for_status()
            with atomic_path(dest) as tmp:
                _save_checked(resp, tmp, url)
    except requests.ConnectionError as exc:
        raise ServiceError(
            f"{aoi.slug}: {host} is unreachable ({type(exc).__name__}); check "
            f"the network, or save the file as {dest} by hand. {WHERE}"
        ) from exc
    except requests.RequestException as exc:
        raise ServiceError(
            f"{aoi.slug}: downloading {url} failed ({exc}). "
            f"{WHERE}; or save the file as {dest} by hand."
        ) from exc
    log.info("%s: downloaded %s -> %s (%d bytes)", aoi.slug, url, dest, dest.stat().st_size)
    return dest


def _save_checked(resp: requests.Response, tmp: Path, url: str) -> None:
    """Stream the body to ``tmp``, refusing it unless it starts with a known signature."""
    chunks = resp.iter_content(2**20)
    head = next(chunks, b"")
    kind = next((k for sig, k in SIGNATURES.items() if head.startswith(sig)), None)
    if kind is None:
        ctype = resp.headers.get("Content-Type", "unknown")
        raise ServiceError(
            f"{url} did not return a zip or GeoPackage (Content-Type {ctype}, "
            f"starts with {head[:40]!r}); the link may point to a web page "
            "rather than the file"
        )
    with open(tmp, "wb") as fh:
        fh.write(head)
        for chunk in chunks:
            fh.write(chunk)
