"""Sentinel-2 L2A from Sentinel Hub on the Copernicus Data Space Ecosystem (free account).

Talks to the real service through the ``sentinelhub`` client: OAuth client credentials from
``SHConfig`` (``SH_CLIENT_ID`` / ``SH_CLIENT_SECRET`` or its config file), the Catalog API to pick
the least-cloudy acquisition of a date window, and the Process API for B02, B03, B04, B08, SCL and
dataMask as uint16 digital numbers with ``harmonizeValues`` set explicitly. Areas above the
2500 px request limit are split into tiles on the AOI grid and mosaicked back exactly. The client
retries 5xx responses with exponential backoff and waits out 429 rate limits; 401/403 stop at
once with instructions. Secrets are never logged.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import requests
from sentinelhub import CRS as SHCRS
from sentinelhub import (
    BBox,
    DataCollection,
    MimeType,
    MosaickingOrder,
    SentinelHubCatalog,
    SentinelHubDownloadClient,
    SentinelHubRequest,
    SHConfig,
)
from tqdm import tqdm

from contract.errors import causes
from contract.processing_level import L2A
from pipeline.aoi import AOI, DateWindow
from pipeline.errors import CredentialsError, InputFileError, PipelineError, ServiceError
from pipeline.grid import Grid
from pipeline.scenes.defaults import CDSE_BASE_URL, CDSE_TOKEN_URL, CREDENTIALS_HELP
from pipeline.scenes.product import RawScene

log = logging.getLogger(__name__)

MAX_REQUEST_PX = 2500

EVALSCRIPT = """//VERSION=3
function setup() {
  return {
    input: [{bands: ["B02", "B03", "B04", "B08", "SCL", "dataMask"], units: "DN"}],
    output: {id: "default", bands: 6, sampleType: "UINT16"}
  };
}
function evaluatePixel(s) {
  return [s.B02, s.B03, s.B04, s.B08, s.SCL, s.dataMask];
}
"""


@dataclass(frozen=True)
class SentinelHubOptions:
    """Endpoints and behaviour; the defaults are the free CDSE service."""

    base_url: str = CDSE_BASE_URL
    token_url: str = CDSE_TOKEN_URL
    mosaic: bool = False  # least-cloud mosaic over a window instead of one acquisition
    max_attempts: int = 5  # attempts for 5xx responses and connection errors
    retry_sleep_s: float = 5.0  # first backoff; multiplied by 3 after each failure
    rate_limit_wait_s: float = 30.0  # wait after a 429 without a Retry-After header
    max_cloud_cover: float = 1.0  # for mosaics: skip acquisitions cloudier than this (0-1)


def make_config(options: SentinelHubOptions) -> SHConfig:
    """An SHConfig for the CDSE endpoints with credentials from the environment or profile."""
    config = SHConfig()
    config.sh_base_url = options.base_url
    config.sh_token_url = options.token_url
    config.max_download_attempts = options.max_attempts
    config.download_sleep_time = options.retry_sleep_s
    if not (config.sh_client_id and config.sh_client_secret):
        raise CredentialsError(
            "no Sentinel Hub credentials found (SH_CLIENT_ID and "
            f"SH_CLIENT_SECRET are not set). {CREDENTIALS_HELP}"
        )
    return config


def has_credentials() -> bool:
    """Whether SHConfig would find credentials (environment or config file)."""
    if os.environ.get("SH_CLIENT_ID") and os.environ.get("SH_CLIENT_SECRET"):
        return True
    config = SHConfig()
    return bool(config.sh_client_id and config.sh_client_secret)


def collection(config: SHConfig) -> DataCollection:
    """Sentinel-2 L2A as served by the configured endpoint (CDSE unless a mirror is named).

    sentinelhub keeps one process-wide registry of collections by name and refuses a name
    defined again with another address, so each address gets its own name: a second request to
    another endpoint in the same process (a mirror, a test server) works like the first."""
    url = config.sh_base_url
    suffix = "CDSE" if url == CDSE_BASE_URL else hashlib.sha256(url.encode()).hexdigest()[:8]
    return DataCollection.SENTINEL2_L2A.define_from(f"SENTINEL2_L2A_{suffix}", service_url=url)


def _day_range(window: DateWindow) -> tuple[str, str]:
    start = dt.datetime.combine(window.start, dt.time.min)
    end = dt.datetime.combine(window.end, dt.time.max).replace(microsecond=0)
    return start.strftime("%Y-%m-%dT%H:%M:%SZ"), end.strftime("%Y-%m-%dT%H:%M:%SZ")


def _http_status(exc: BaseException) -> int | None:
    for cur in causes(exc):
        resp = getattr(cur, "response", None) or getattr(
            getattr(cur, "request_exception", None), "response", None
        )
        if resp is not None and getattr(resp, "status_code", None) is not None:
            return int(resp.status_code)
    return None


def _explain(exc: Exception, aoi: AOI, what: str) -> PipelineError:
    status = _http_status(exc)
    if status in (401, 403) or "invalid_client" in str(exc) or "Unauthorized" in str(exc):
        return CredentialsError(
            f"{aoi.slug}: Sentinel Hub refused the credentials "
            f"(HTTP {status or 401}) while {what}. {CREDENTIALS_HELP}"
        )
    unreachable = _unreachable(exc)
    if unreachable is not None:
        return ServiceError(
            f"{aoi.slug}: cannot reach Sentinel Hub at {unreachable} while {what} (network "
            "down, a wrong --sh-base-url or --sh-token-url, or the service offline)"
        )
    text = " ".join(str(exc).split())  # the client's message spans lines: keep them all
    return ServiceError(f"{aoi.slug}: Sentinel Hub request failed while {what}: {text[:300]}")


def _unreachable(exc: BaseException) -> str | None:
    """``<url> (<why>)`` when a connection failed anywhere in the chain of causes, else None.

    The client wraps the requests error in a ``DownloadFailedException`` whose first line is
    only "Failed to download from:"; the URL and the reason are in the wrapped error.
    """
    for cur in causes(exc):
        inner = getattr(cur, "request_exception", None)
        for err in (cur, inner):
            if isinstance(err, requests.ConnectionError | requests.Timeout):
                return f"{_url_of(err)} ({_why(err)})"
    return None


def _url_of(err: requests.RequestException) -> str:
    request = getattr(err, "request", None)
    if request is not None and getattr(request, "url", None):
        return str(request.url)
    pool = re.search(
        r"host='([^']+)', port=(\d+)\): Max retries exceeded with url: (\S+)", str(err)
    )
    if pool:
        return f"{pool.group(1)}:{pool.group(2)}{pool.group(3)}"
    return "its address"


def _why(err: requests.RequestException) -> str:
    text = str(err)
    if isinstance(err, requests.Timeout) or "timed out" in text.lower():
        return "no answer in time"
    if "Name or service not known" in text or "resolve" in text.lower():
        return "host name not found"
    if "refused" in text.lower():
        return "connection refused"
    return "connection failed"


def choose_acquisition(
    aoi: AOI,
    epoch: str,
    window: DateWindow,
    grid: Grid,
    config: SHConfig,
) -> dict[str, Any]:
    """The least-cloudy acquisition over the AOI in the window (Catalog API).

    Ties go to the latest acquisition for *before* and the earliest for *after*, keeping both as
    close to the event as the clouds allow.
    """
    catalog = SentinelHubCatalog(config=config)
    bbox = BBox(grid.bounds, crs=SHCRS(grid.crs.to_epsg()))
    try:
        items = list(
            catalog.search(
                collection(config),
                bbox=bbox,
                time=_day_range(window),
                fields={
                    "include": ["id", "properties.datetime", "properties.eo:cloud_cover"],
                    "exclude": [],
                },
            )
        )
    except Exception as exc:  # DownloadFailedException, HTTPError, OAuth errors
        raise _explain(exc, aoi, "searching the catalog") from exc
    if not items:
        raise InputFileError(
            f"{aoi.slug} ({epoch}): no Sentinel-2 L2A acquisition between "
            f"{window.start} and {window.end} over the AOI; widen the window in "
            f"{aoi.source_file}"
        )
    sign = -1 if epoch == "before" else 1
    best = min(
        items,
        key=lambda it: (
            float(it["properties"].get("eo:cloud_cover", 100.0)),
            sign
            * dt.datetime.fromisoformat(
                it["properties"]["datetime"].replace("Z", "+00:00")
            ).timestamp(),
        ),
    )
    log.info(
        "%s %s: %d acquisitions in %s; chose %s (cloud cover %.1f%%)",
        aoi.slug,
        epoch,
        len(items),
        window,
        best["id"],
        best["properties"].get("eo:cloud_cover", -1),
    )
    return {
        "id": best["id"],
        "datetime": best["properties"]["datetime"],
        "cloud_cover": best["properties"].get("eo:cloud_cover"),
        "candidates": len(items),
    }


def tiles(grid: Grid, max_px: int = MAX_REQUEST_PX) -> list[tuple[int, int, int, int]]:
    """(row, col, height, width) tiles of at most ``max_px`` on a side, covering the grid."""
    out = []
    for r in range(0, grid.height, max_px):
        for c in range(0, grid.width, max_px):
            out.append((r, c, min(max_px, grid.height - r), min(max_px, grid.width - c)))
    return out


def download_scene(aoi: AOI, epoch: str, grid: Grid, options: SentinelHubOptions) -> RawScene:
    """Fetch the AOI grid from the Process API, tile by tile, into one array."""
    config = make_config(options)
    window = aoi.before if epoch == "before" else aoi.after
    when = _when(aoi, epoch, window, grid, config, options)
    meta: dict[str, Any] = {
        "service": options.base_url,
        "collection": "sentinel-2-l2a",
        "harmonize_values": True,
        **when.meta,
        "time_range": list(when.time_range),
    }
    parts = tiles(grid)
    reqs = [_request(grid, part, config, options, when.time_range) for part in parts]
    log.info(
        "%s %s: requesting %d x %d px in %d part(s) from %s",
        *(aoi.slug, epoch, grid.width, grid.height, len(parts), options.base_url),
    )
    out = _download(aoi, epoch, grid, parts, reqs, config, options)
    meta["request_parts"] = len(parts)
    no_data = out[5] == 0
    if no_data.all():
        raise InputFileError(
            f"{aoi.slug} ({epoch}): Sentinel Hub has no Sentinel-2 L2A "
            f"observation over the AOI in {when.time_range[0]}..{when.time_range[1]}; "
            f"check the date in {aoi.source_file}"
        )
    return RawScene(
        dn=out[:4],
        scl=out[4].astype(np.uint8),
        offsets=[0, 0, 0, 0],
        dates=when.dates,
        source="sentinelhub",
        extra_mask=no_data,
        metadata=meta,
        level=L2A,
    )


@dataclass(frozen=True)
class _When:
    """The time range asked of the Process API, the dates it stands for, and how chosen."""

    time_range: tuple[str, str]
    dates: list[str]
    meta: dict[str, Any]


def _when(
    aoi: AOI,
    epoch: str,
    window: DateWindow,
    grid: Grid,
    config: SHConfig,
    options: SentinelHubOptions,
) -> _When:
    """One day as given; a window's least-cloud mosaic; else the acquisition the Catalog
    picks (the least cloudy, :func:`choose_acquisition`)."""
    if window.is_single_day:
        return _When(_day_range(window), [window.start.isoformat()], {})
    if options.mosaic:
        dates = [window.start.isoformat(), window.end.isoformat()]
        return _When(_day_range(window), dates, {"mosaic": "leastCC"})
    chosen = choose_acquisition(aoi, epoch, window, grid, config)
    day = DateWindow(*(2 * [dt.date.fromisoformat(chosen["datetime"][:10])]))
    return _When(_day_range(day), [day.start.isoformat()], {"acquisition": chosen})


def _request(
    grid: Grid,
    part: tuple[int, int, int, int],
    config: SHConfig,
    options: SentinelHubOptions,
    time_range: tuple[str, str],
) -> SentinelHubRequest:
    """The Process API request of one tile ``(row, col, height, width)`` of the grid."""
    row, col, h, w = part
    left = grid.transform.c + col * grid.transform.a
    top = grid.transform.f + row * grid.transform.e
    bbox = BBox(
        (left, top + h * grid.transform.e, left + w * grid.transform.a, top),
        crs=SHCRS(grid.crs.to_epsg()),
    )
    input_data = SentinelHubRequest.input_data(
        data_collection=collection(config),
        time_interval=time_range,
        mosaicking_order=MosaickingOrder.LEAST_CC,
        maxcc=options.max_cloud_cover if options.mosaic else None,
        other_args={"processing": {"harmonizeValues": True}},
    )
    return SentinelHubRequest(
        evalscript=EVALSCRIPT,
        input_data=[input_data],
        responses=[SentinelHubRequest.output_response("default", MimeType.TIFF)],
        bbox=bbox,
        size=(w, h),
        config=config,
    )


def _download(
    aoi: AOI,
    epoch: str,
    grid: Grid,
    parts: list[tuple[int, int, int, int]],
    reqs: list[SentinelHubRequest],
    config: SHConfig,
    options: SentinelHubOptions,
) -> np.ndarray:
    """(6, H, W) uint16: the bands, SCL and dataMask of every tile, in place on the grid."""
    client = SentinelHubDownloadClient(
        config=config, default_retry_time=options.rate_limit_wait_s * 1000
    )
    out = np.zeros((6, *grid.shape), dtype=np.uint16)
    for (row, col, h, w), req in tqdm(
        list(zip(parts, reqs, strict=True)),
        desc=f"{aoi.slug} {epoch}",
        unit="tile",
        disable=True if len(parts) == 1 else None,
    ):
        try:
            (data,) = client.download(req.download_list, decode_data=True)
        except PipelineError:
            raise
        except Exception as exc:
            raise _explain(exc, aoi, f"downloading the {epoch} scene") from exc
        arr = np.asarray(data)
        if arr.ndim == 2:
            arr = arr[..., None]
        if arr.shape[:2] != (h, w) or arr.shape[2] != 6:
            raise ServiceError(
                f"{aoi.slug}: Sentinel Hub returned an array of shape "
                f"{arr.shape}, expected ({h}, {w}, 6)"
            )
        out[:, row : row + h, col : col + w] = np.moveaxis(arr, -1, 0)
    return out
