"""Sentinel-1 from Planetary Computer, no account: ``sentinel-1-rtc``, else ``sentinel-1-grd``.

The RTC collection (terrain-corrected gamma0, float32 linear power on a 10 m UTM grid) needed a
subscription key in 2023-24; whether it still does is asked of its anonymous token endpoint at
every run. When the endpoint refuses, the GRD collection is read instead, which needs no key:
its measurements are amplitude in radar geometry tied to the ground only by GCPs, so each is
read in the window over the AOI, calibrated with its calibration and noise annotation XML and
then warped (:mod:`pipeline.radar.grd`).

Every read is a window: an item is a whole 290 km slice. Items of one relative orbit and day
(consecutive slices of one pass) are mosaicked; orbits are never mixed. Network failures are
handled where they happen: urllib3 retries the API and the annotation fetches with backoff on
429 and 5xx (and honours Retry-After), GDAL retries the COG range reads the same way, URLs are
signed by :class:`pipeline.stac_http.PlanetaryComputerSigner` (as for Sentinel-2: its token is
renewed before it expires, and a 403 on a signed URL fetches a fresh token once and retries),
and a service that cannot be reached is one line naming the host.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import numpy as np
import pystac
import rasterio
import requests
from pystac_client.exceptions import APIError
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.warp import Resampling

from contract import radar
from contract.errors import first_line
from pipeline.aoi import AOI, DateWindow
from pipeline.errors import CredentialsError, InputFileError, PipelineUsageError, ServiceError
from pipeline.grid import Grid
from pipeline.radar import COLLECTIONS, GRD, PLANETARY_COMPUTER_URL, RTC
from pipeline.radar.grd import read_grd
from pipeline.radar.series import (
    Acquisition,
    first_valid,
    normalise_platform,
    normalise_state,
)
from pipeline.scenes.stac_source import StacOptions, open_catalog
from pipeline.stac_http import REFUSED, PlanetaryComputerSigner, service_error

log = logging.getLogger(__name__)
T = TypeVar("T")

#: GDAL's HTTP statuses worth a retry with backoff on a COG read.
GDAL_RETRY_CODES = "429,500,502,503,504"
MAX_ITEMS = 2000


@dataclass(frozen=True)
class RadarStacOptions:
    """Catalogue, collection choice and network behaviour; defaults: Planetary Computer."""

    url: str = PLANETARY_COMPUTER_URL
    collection: str = "auto"  # auto: RTC when its token endpoint answers, else GRD
    noise: bool = True  # GRD: remove thermal noise with the noise annotation
    max_attempts: int = 5
    backoff_s: float = 1.0
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if self.collection not in COLLECTIONS:
            raise PipelineUsageError(
                f"collection must be one of {COLLECTIONS}, got {self.collection!r}"
            )

    def stac(self, collection: str) -> StacOptions:
        return StacOptions(
            url=self.url,
            collection=collection,
            max_attempts=self.max_attempts,
            backoff_s=self.backoff_s,
            timeout_s=self.timeout_s,
        )

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc

    def gdal_env(self) -> dict[str, str]:
        return {**self.stac(RTC).gdal_env(), "GDAL_HTTP_RETRY_CODES": GDAL_RETRY_CODES}


def signed_call(signer: PlanetaryComputerSigner, href: str, fn: Callable[[str], T]) -> T:
    """``fn(signed_url)``, once more with a fresh token if it fails.

    GDAL reports an expired signature (HTTP 403) as an unreadable file, not by status,
    and Planetary Computer's occasional unreadable asset deserves one retry too.
    """
    seen = signer.token()
    try:
        return fn(signer(href))
    except (RasterioError, requests.HTTPError) as exc:
        if signer.unsigned and not isinstance(exc, RasterioError):
            raise
        log.info(
            "read of %s failed (%s); retrying with a fresh signature",
            href.split("?")[0],
            first_line(exc, 120),
        )
        signer.renew(seen)
    return fn(signer(href))


def choose_collection(options: RadarStacOptions) -> tuple[str, PlanetaryComputerSigner]:
    """RTC if its token endpoint answers without a key, else GRD (or the one asked for)."""
    wanted = [RTC, GRD] if options.collection == "auto" else [options.collection]
    for collection in wanted:
        signer = PlanetaryComputerSigner(options.stac(collection))
        status = signer.probe()
        if status not in REFUSED:
            log.info("%s: using %s (token endpoint HTTP %d)", options.host, collection, status)
            return collection, signer
        log.info("%s: the %s token endpoint refused (HTTP %d)", options.host, collection, status)
    raise CredentialsError(
        f"{options.host} refused anonymous tokens for {', '.join(wanted)} (a key is "
        "needed); download SAFE GRD products from the Copernicus Data Space or ASF and use "
        "--source local --input FOLDER"
    )


def _footprint(grid: Grid) -> dict[str, Any]:
    import shapely

    from pipeline.geo import reproject_geometry

    box = shapely.segmentize(shapely.box(*grid.bounds), 500.0)
    return shapely.geometry.mapping(reproject_geometry(box, grid.crs, "EPSG:4326"))


def search(
    options: RadarStacOptions, collection: str, grid: Grid, window: DateWindow
) -> list[pystac.Item]:
    """IW items with VV and VH over the grid in the window, sorted by id."""
    client = open_catalog(options.stac(collection))
    try:
        found = client.search(
            collections=[collection],
            intersects=_footprint(grid),
            datetime=f"{window.start}T00:00:00Z/{window.end}T23:59:59Z",
            max_items=MAX_ITEMS,
            limit=250,
        )
        items = list(found.items())
    except (APIError, requests.RequestException) as exc:
        raise service_error(exc, options.host, f"searching {collection}") from exc
    keep = []
    for item in items:
        pols = {str(p).upper() for p in item.properties.get("sar:polarizations", [])}
        mode = item.properties.get("sar:instrument_mode", "IW")
        if mode == "IW" and {"VV", "VH"} <= pols and {"vv", "vh"} <= set(item.assets):
            keep.append(item)
        else:
            log.debug("skipping %s: mode %s, polarisations %s", item.id, mode, sorted(pols))
    return sorted(keep, key=lambda it: it.id)


def _start(item: pystac.Item) -> dt.datetime:
    text = item.properties.get("start_datetime") or item.properties.get("datetime")
    if not text:
        raise InputFileError(f"STAC item {item.id} has no start_datetime or datetime")
    return dt.datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(dt.UTC)


def _orbit(item: pystac.Item) -> tuple[int, str, str]:
    props = item.properties
    if props.get("sat:relative_orbit") is None or props.get("sat:orbit_state") is None:
        raise InputFileError(
            f"STAC item {item.id} has no sat:relative_orbit or sat:orbit_state; orbits "
            "cannot be kept apart"
        )
    return (
        int(props["sat:relative_orbit"]),
        normalise_state(props["sat:orbit_state"]),
        normalise_platform(props.get("platform", "")),
    )


def group_passes(items: Sequence[pystac.Item]) -> dict[tuple[int, dt.date], list[pystac.Item]]:
    """Slices of one pass: one relative orbit, one UTC day."""
    groups: dict[tuple[int, dt.date], list[pystac.Item]] = {}
    for item in items:
        groups.setdefault((_orbit(item)[0], _start(item).date()), []).append(item)
    return groups


def _read_error(exc: BaseException, href: str) -> ServiceError:
    host = urlsplit(href).netloc or href
    text = first_line(exc)
    if any(k in text for k in ("connect", "resolve host", "timed out", "Connection refused")):
        return ServiceError(f"cannot reach {host} while reading Sentinel-1 assets: {text}")
    return ServiceError(f"reading Sentinel-1 asset {href.split('?')[0]} failed: {text}")


def _warp_rtc(url: str, grid: Grid) -> np.ndarray:
    """One RTC asset's window over the grid, warped onto it (bilinear on linear power)."""
    with rasterio.open(url) as src:
        if src.dtypes[0] != "float32":
            raise InputFileError(f"{url.split('?')[0]}: RTC asset is {src.dtypes[0]}, not float32")
        nodata = -32768.0 if src.nodata is None else src.nodata
        with WarpedVRT(
            src,
            crs=grid.crs,
            transform=grid.transform,
            width=grid.width,
            height=grid.height,
            resampling=Resampling.bilinear,
            src_nodata=nodata,
            nodata=np.nan,
            dtype="float32",
        ) as vrt:
            out = vrt.read(1)
    return np.where(out > 0, out, np.nan).astype(np.float32)


class Reads:
    """How one collection's assets become (2, H, W) linear power on the grid."""

    def __init__(
        self,
        collection: str,
        signer: PlanetaryComputerSigner,
        grid: Grid,
        options: RadarStacOptions,
    ):
        self.collection, self.signer, self.grid, self.options = collection, signer, grid, options

    def _xml(self, item: pystac.Item, key: str) -> bytes:
        if key not in item.assets:
            raise InputFileError(f"STAC item {item.id} has no {key} asset to calibrate with")

        def get(url: str) -> bytes:
            resp = self.signer.session.get(url, timeout=self.options.timeout_s)
            resp.raise_for_status()
            return resp.content

        href = item.assets[key].href
        try:
            return signed_call(self.signer, href, get)
        except requests.RequestException as exc:
            raise service_error(exc, urlsplit(href).netloc, f"fetching {key} of {item.id}") from exc

    def band(self, item: pystac.Item, pol: str) -> np.ndarray:
        href = item.assets[pol].href
        try:
            with rasterio.Env(**self.options.gdal_env()):
                if self.collection == RTC:
                    return signed_call(self.signer, href, lambda u: _warp_rtc(u, self.grid))
                cal = self._xml(item, f"schema-calibration-{pol}")
                noise = self._xml(item, f"schema-noise-{pol}") if self.options.noise else None
                return signed_call(
                    self.signer,
                    href,
                    lambda u: read_grd(u, cal, noise, self.grid, f"{item.id} {pol}"),
                )
        except RasterioError as exc:
            raise _read_error(exc, href) from exc

    def reader(self, items: Sequence[pystac.Item]) -> Callable[[], np.ndarray]:
        def read() -> np.ndarray:
            return first_valid(
                np.stack([self.band(it, pol) for pol in radar.POLARISATIONS]) for it in items
            )

        return read


def _record(item: pystac.Item) -> dict[str, Any]:
    orbit, state, platform = _orbit(item)
    return {
        "id": item.id,
        "collection": item.collection_id,
        "start": _start(item).isoformat(),
        "relative_orbit": orbit,
        "orbit_state": state,
        "platform": platform,
        "assets": {
            k: a.href.split("?")[0]
            for k, a in sorted(item.assets.items())
            if k in radar.POLARISATIONS or k.startswith("schema-")
        },
    }


def stac_series(
    aoi: AOI, grid: Grid, windows: Sequence[DateWindow], options: RadarStacOptions
) -> tuple[list[Acquisition], str, dict[str, Any]]:
    """Acquisitions over the AOI in the windows, their calibration and the items record."""
    collection, signer = choose_collection(options)
    reads = Reads(collection, signer, grid, options)
    items = [it for w in windows for it in search(options, collection, grid, w)]
    unique = {it.id: it for it in items}
    acquisitions = []
    for (orbit, _day), group in sorted(group_passes(list(unique.values())).items()):
        _, state, platform = _orbit(group[0])
        acquisitions.append(
            Acquisition(
                start=min(_start(it) for it in group),
                orbit=orbit,
                orbit_state=state,
                platform=platform,
                read=reads.reader(group),
                items=tuple(_record(it) for it in group),
            )
        )
    calibration = radar.GAMMA0_RTC if collection == RTC else radar.SIGMA0
    log.info(
        "%s: %d acquisition(s) from %d %s item(s) at %s",
        aoi.slug,
        len(acquisitions),
        len(unique),
        collection,
        options.host,
    )
    record = {
        "service": options.url,
        "collection": collection,
        "signed": not signer.unsigned,
        "thermal_noise_removed": collection == GRD and options.noise,
    }
    return acquisitions, calibration, record
