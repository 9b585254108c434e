"""``pipeline unosat``: put an AOI's UNOSAT damage-site file where the workflow expects it.

UNOSAT files are published per city on unosat.org and the Humanitarian Data Exchange; where the
AOI file gives ``labels.url`` it is downloaded (with retries) to ``labels.path``, otherwise the
error says where to get the file and where to put it.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from contract.atomic import atomic_path
from pipeline.aoi import AOI, load_aoi
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)
WHERE = ("UNOSAT publishes its Comprehensive Damage Assessments at https://unosat.org/products/ "
         "and on https://data.humdata.org (search 'UNOSAT damage assessment <city>')")


def fetch_unosat(aoi: AOI, out: str | Path | None = None, timeout_s: float = 120.0) -> Path:
    """Download ``labels.url`` to ``out`` (default: the AOI's ``labels.path``)."""
    dest = Path(out or aoi.labels.path)
    if not aoi.labels.url:
        raise PipelineError(
            f"{aoi.slug}: no UNOSAT file at {dest} and no labels.url in {aoi.source_file}. "
            f"{WHERE}; save the damage-site file (zipped shapefile, .gdb or .gpkg) as {dest}, "
            "or set labels.path / labels.url in the AOI file.")
    session = requests.Session()
    retry = Retry(total=4, backoff_factor=2.0, status_forcelist=(429, 500, 502, 503, 504),
                  allowed_methods=("GET",))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    session.mount("http://", HTTPAdapter(max_retries=retry))
    try:
        with session.get(aoi.labels.url, stream=True, timeout=timeout_s) as resp:
            resp.raise_for_status()
            with atomic_path(dest) as tmp, open(tmp, "wb") as fh:
                for chunk in resp.iter_content(2**20):
                    fh.write(chunk)
    except requests.RequestException as exc:
        raise PipelineError(f"{aoi.slug}: downloading {aoi.labels.url} failed ({exc}). "
                            f"{WHERE}; or save the file as {dest} by hand.") from exc
    log.info("%s: downloaded %s -> %s (%d bytes)", aoi.slug, aoi.labels.url, dest,
             dest.stat().st_size)
    return dest


def _run(args: argparse.Namespace) -> int:
    fetch_unosat(load_aoi(args.aoi_file), args.out)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("unosat", help="download an AOI's UNOSAT file from its labels.url",
                       description="Download the AOI's UNOSAT damage-site file from labels.url "
                                   "to labels.path (or --out); without a URL, explain where to "
                                   "get the file and where to put it.")
    p.add_argument("aoi_file", help="AOI GeoJSON file")
    p.add_argument("--out", help="destination (default: the AOI's labels.path)")
    p.set_defaults(func=_run)
