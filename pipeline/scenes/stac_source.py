"""Sentinel-2 L2A from a public STAC API, no account: Earth Search (default) or Planetary Computer.

pystac-client searches the collection for items over the AOI grid in the AOI's date window;
odc-stac reads B02, B03, B04, B08 (bilinear) and SCL (nearest) straight onto the AOI grid as
dask arrays, so GDAL fetches only the blocks of each Cloud Optimized GeoTIFF that cover the AOI,
chunk by chunk, on this machine or on a dask cluster. All items of the chosen date are
mosaicked, whichever tile, orbit or UTM zone they come from.

The acquisition is chosen as the Sentinel Hub source does: the least cloudy over the AOI, ties to
the latest date for *before* and the earliest for *after*. Here ``eo:cloud_cover`` shortlists
dates and the SCL of each shortlisted date over the AOI decides, because tile-wide cloud cover
says little about a 10 km city.

Failures are retried by the libraries themselves: a urllib3 ``Retry`` with exponential backoff
on 429 and 5xx answers and on connection errors for the API, GDAL's ``GDAL_HTTP_MAX_RETRY`` /
``GDAL_HTTP_RETRY_DELAY`` for COG reads. Nothing is written until the whole scene is in memory,
and the product writer writes atomically, so an interrupted download leaves no file.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import dask
import numpy as np
import odc.stac
import pystac
import rasterio
import requests
import shapely
import xarray as xr
from odc.geo.geobox import GeoBox
from pystac_client import Client
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO
from rasterio.errors import RasterioError
from rasterio.features import geometry_mask
from tqdm.dask import TqdmCallback
from urllib3 import Retry

from contract.bands import BANDS
from contract.errors import causes
from pipeline.aoi import AOI, DateWindow
from pipeline.errors import InputFileError, PipelineError, PipelineUsageError, ServiceError
from pipeline.geo import reproject_geometry
from pipeline.grid import Grid
from pipeline.scenes.band_files import LEVEL_KEYS, level_from
from pipeline.scenes.defaults import DEFAULT_COLLECTION, DEFAULT_MASK_CLASSES, EARTH_SEARCH_URL
from pipeline.scenes.product import RawScene
from pipeline.scenes.stac_assets import SCL, ItemBands, item_bands
from pipeline.stac_http import PlanetaryComputerSigner, service_error

log = logging.getLogger(__name__)

PLANETARY_COMPUTER_HOST = "planetarycomputer.microsoft.com"
RETRY_STATUS = (429, 500, 502, 503, 504)
SIGNINGS = ("auto", "none", "planetary-computer")
MAX_ITEMS = 1000


@dataclass(frozen=True)
class StacOptions:
    """Catalogue, collection and network behaviour; the defaults are Earth Search v1."""

    url: str = EARTH_SEARCH_URL
    collection: str = DEFAULT_COLLECTION
    signing: str = "auto"  # auto: sign asset URLs when the API is Planetary Computer's
    max_attempts: int = 5  # per request, API and COG reads alike
    backoff_s: float = 1.0  # backoff factor: retries at once, then after 2, 4, 8 s
    timeout_s: float = 60.0  # connect and read timeout of each request
    shortlist: int = 3  # dates (by eo:cloud_cover) whose SCL over the AOI is checked
    chunk_px: int = 2048  # dask chunk side on the AOI grid

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise PipelineUsageError(f"max attempts must be at least 1, got {self.max_attempts}")

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc

    def signs_urls(self) -> bool:
        if self.signing not in SIGNINGS:
            raise PipelineUsageError(f"signing must be one of {SIGNINGS}, got {self.signing!r}")
        if self.signing == "auto":
            return self.host == PLANETARY_COMPUTER_HOST
        return self.signing == "planetary-computer"

    def retry(self) -> Retry:
        """Backoff on 429/5xx and connection errors; POST too, since a search is read-only."""
        return Retry(
            total=self.max_attempts - 1,
            backoff_factor=self.backoff_s,
            status_forcelist=RETRY_STATUS,
            allowed_methods=None,
            raise_on_status=False,
            respect_retry_after_header=True,
        )

    def gdal_env(self) -> dict[str, str]:
        """GDAL's own retry, timeout and no-directory-listing settings for the COG reads."""
        return {
            "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
            "GDAL_HTTP_MAX_RETRY": str(self.max_attempts - 1),
            "GDAL_HTTP_RETRY_DELAY": f"{self.backoff_s:g}",
            "GDAL_HTTP_TIMEOUT": str(max(1, round(self.timeout_s))),
            "GDAL_HTTP_CONNECTTIMEOUT": str(max(1, round(self.timeout_s))),
            "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        }


def _host_of(text: str) -> str | None:
    match = re.search(r"https?://([^/\s'\"?]+)", text)
    return match.group(1) if match else None


def open_catalog(options: StacOptions) -> Client:
    """The STAC API client, after checking that the collection exists there."""
    io = StacApiIO(max_retries=options.retry())
    try:  # Client.open resets the StacApiIO's timeout to its own argument
        client = Client.open(options.url, stac_io=io, timeout=options.timeout_s)
    except (APIError, pystac.STACError, requests.RequestException) as exc:
        raise service_error(exc, options.host, f"opening the STAC API {options.url}") from exc
    try:
        found = client.get_collection(options.collection)  # None when the API answers 404
    except (APIError, requests.RequestException) as exc:
        raise service_error(exc, options.host, f"reading collection {options.collection}") from exc
    if found is None:
        raise PipelineUsageError(
            f"{options.url} has no collection {options.collection!r}; see --collection"
        )
    return client


def _footprint(grid: Grid) -> dict[str, Any]:
    """The AOI grid's outline in lon/lat (densified, so its edges stay true after reprojection)."""
    box = shapely.segmentize(shapely.box(*grid.bounds), 500.0)
    return shapely.geometry.mapping(reproject_geometry(box, grid.crs, "EPSG:4326"))


def _time_range(window: DateWindow) -> str:
    return f"{window.start.isoformat()}T00:00:00Z/{window.end.isoformat()}T23:59:59Z"


def search_items(
    client: Client, aoi: AOI, epoch: str, window: DateWindow, grid: Grid, options: StacOptions
) -> list[pystac.Item]:
    """Every item of the collection over the AOI grid in the window, or a clear refusal."""
    try:
        found = client.search(
            collections=[options.collection],
            intersects=_footprint(grid),
            datetime=_time_range(window),
            max_items=MAX_ITEMS,
            limit=100,
        )
        items = list(found.items())
    except (APIError, requests.RequestException) as exc:
        raise service_error(exc, options.host, f"searching {options.collection}") from exc
    if not items:
        raise InputFileError(
            f"{aoi.source_file or aoi.slug}: no {options.collection} item over AOI "
            f"{aoi.slug} ({epoch}) in {window} at {options.url}; widen the {epoch} window "
            "in the AOI file or choose another --collection"
        )
    return sorted(items, key=lambda it: it.id)


def _datetime(item: pystac.Item) -> dt.datetime:
    if item.datetime is None:
        raise InputFileError(f"STAC item {item.id} has no datetime")
    return item.datetime


def _by_date(items: Sequence[pystac.Item]) -> dict[dt.date, list[pystac.Item]]:
    groups: dict[dt.date, list[pystac.Item]] = {}
    for item in items:
        groups.setdefault(_datetime(item).astimezone(dt.UTC).date(), []).append(item)
    return groups


def _cloud_cover(items: Sequence[pystac.Item]) -> float:
    return statistics.fmean(float(it.properties.get("eo:cloud_cover", 100.0)) for it in items)


def _geobox(grid: Grid) -> GeoBox:
    return GeoBox((grid.height, grid.width), grid.transform, grid.crs.to_wkt())


def _read_order(items: Sequence[pystac.Item], grid: Grid) -> list[pystac.Item]:
    """Items on the grid's own CRS first (read without reprojection), then by id."""
    epsg = grid.crs.to_epsg()

    def key(item: pystac.Item) -> tuple[bool, str]:
        code = item.properties.get("proj:code") or f"EPSG:{item.properties.get('proj:epsg')}"
        return code.upper() != f"EPSG:{epsg}", item.id

    return sorted(items, key=key)


class Loader:
    """Lazy reads of chosen bands of several items onto one grid, fused into one mosaic."""

    def __init__(
        self, grid: Grid, options: StacOptions, signer: PlanetaryComputerSigner | None = None
    ):
        self.grid = grid
        self.geobox = _geobox(grid)
        self.options = options
        self.signer = signer

    def _item(self, item: pystac.Item, info: ItemBands, bands: Sequence[str]) -> xr.DataArray:
        keys = [info.keys[b] for b in bands]
        with rasterio.Env(**self.options.gdal_env()):  # odc-stac captures it for every read
            ds = odc.stac.load(
                [item],
                bands=keys,
                geobox=self.geobox,
                groupby="id",
                resampling={"*": "bilinear", info.keys[SCL]: "nearest"},
                dtype="uint16",
                nodata=0,
                patch_url=self.signer,
                chunks={"x": self.options.chunk_px, "y": self.options.chunk_px},
            )
        return xr.concat([ds[k].isel(time=0, drop=True) for k in keys], dim="band")

    def _fused(
        self,
        items: Sequence[pystac.Item],
        infos: dict[str, ItemBands],
        bands: Sequence[str],
        offsets: Sequence[int] | None,
    ) -> xr.DataArray:
        """The lazy mosaic: items in read order, each pixel from the one :func:`_prefer` keeps."""
        scl = list(bands).index(SCL) if SCL in bands else None
        out: xr.DataArray | None = None
        for item in _read_order(items, self.grid):
            arr = self._item(item, infos[item.id], bands)
            if offsets is not None:
                arr = _shift(
                    arr, [o - r for o, r in zip(infos[item.id].offsets, offsets, strict=True)]
                )
            out = arr if out is None else _prefer(out, arr, scl)
        if out is None:
            raise PipelineError("no STAC item to mosaic")
        return out

    def mosaic(
        self,
        items: Sequence[pystac.Item],
        infos: dict[str, ItemBands],
        bands: Sequence[str],
        offsets: Sequence[int] | None = None,
        desc: str = "",
    ) -> np.ndarray:
        """(bands, H, W) uint16 of several items of one date (tiles, orbits, reprocessings).

        Per pixel, the first item whose SCL (when ``bands`` holds it) calls the pixel clear,
        else the first holding all bands there: a cloudy duplicate never hides a clear
        observation. With ``offsets``, each item's reflectance is shifted onto that common
        BOA_ADD_OFFSET, so items of different processing baselines fuse on one scale. Reads
        refused with HTTP 403 while URLs are signed are tried once more with a fresh token.
        """
        for attempt in (1, 2):
            lazy = self._fused(items, infos, bands, offsets)
            try:
                return self._compute(lazy, desc)
            except (RasterioError, OSError, RuntimeError) as exc:
                if attempt == 1 and self.signer is not None and _refused(exc):
                    log.info("%s: asset reads refused (HTTP 403); renewing the token", desc)
                    self.signer.renew()
                    continue
                hosts = sorted(
                    {
                        urlsplit(it.assets[infos[it.id].keys[b]].href).netloc
                        for it in items
                        for b in bands
                    }
                )
                raise _read_error(exc, hosts) from exc
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _compute(self, lazy: xr.DataArray, desc: str) -> np.ndarray:
        with TqdmCallback(
            desc=desc, unit="chunk", disable=not log.isEnabledFor(logging.INFO) or None
        ):
            (values,) = dask.compute(lazy.data)
        return np.asarray(values, dtype=np.uint16)


def _clear(arr: xr.DataArray, scl: int) -> xr.DataArray:
    """Pixels with every band and an SCL class that is a usable observation."""
    return (arr > 0).all("band") & ~arr.isel(band=scl).isin(list(DEFAULT_MASK_CLASSES))


def _prefer(first: xr.DataArray, second: xr.DataArray, scl: int | None) -> xr.DataArray:
    """Per pixel ``first``, unless ``second`` is clear where ``first`` is not, or holds data
    where ``first`` has none (without an SCL, only the second rule applies)."""
    take = (second > 0).all("band") & ~(first > 0).all("band")
    if scl is not None:
        take = take | (_clear(second, scl) & ~_clear(first, scl))
    return xr.where(take, second, first).transpose("band", "y", "x")


def _refused(exc: BaseException) -> bool:
    """Whether GDAL's error (or a cause) is an HTTP 403, as for an expired SAS token."""
    return any(re.search(r"\b403\b", str(cur)) for cur in causes(exc))


def _shift(arr: xr.DataArray, delta: Sequence[int]) -> xr.DataArray:
    """Add ``delta`` per reflectance band where there is data, keeping valid pixels >= 1."""
    if not any(delta):
        return arr
    pad = list(delta) + [0] * (arr.sizes["band"] - len(delta))
    add = xr.DataArray(np.array(pad, dtype=np.int32), dims="band")
    moved = (arr.astype(np.int32) + add).clip(1, np.iinfo(np.uint16).max)
    return xr.where(arr > 0, moved, 0).astype(np.uint16).transpose("band", "y", "x")


def _read_error(exc: BaseException, hosts: Sequence[str]) -> ServiceError:
    """Name the host GDAL failed on (from its message, else the hosts of the assets read)."""
    text = str(exc)
    curl = re.search(r"connect to (\S+) port (\d+)|resolve host:? '?([^\s']+)", text)
    if curl:
        host = curl.group(3) or f"{curl.group(1)}:{curl.group(2)}"
    else:
        host = _host_of(text) or " or ".join(hosts)
    if re.search(r"resolve host|connect to|Connection refused|timed out", text, re.I):
        return ServiceError(
            f"cannot reach {host} while reading Sentinel-2 assets: {text.splitlines()[0][:200]}"
        )
    return ServiceError(
        f"reading a Sentinel-2 asset from {host} failed: "
        f"{text.splitlines()[0][:200] if text else type(exc).__name__}"
    )


def _unusable(scl: np.ndarray, in_aoi: np.ndarray) -> int:
    """AOI pixels without a usable observation (cloud, shadow, no data...) by the SCL."""
    return int((np.isin(scl, DEFAULT_MASK_CLASSES) & in_aoi).sum())


def choose_date(
    groups: dict[dt.date, list[pystac.Item]],
    epoch: str,
    aoi: AOI,
    loader: Loader,
    infos: dict[str, ItemBands],
) -> tuple[dt.date, dict[str, Any]]:
    """The date with the least unusable AOI by SCL among the least cloudy few.

    Shortlisting and ties follow the Sentinel Hub source: ``eo:cloud_cover``, then the latest
    date for *before*, the earliest for *after*.
    """
    sign = -1 if epoch == "before" else 1
    ranked = sorted(groups, key=lambda d: (_cloud_cover(groups[d]), sign * d.toordinal()))
    grid = loader.grid
    in_aoi = geometry_mask(
        [aoi.geometry_in(grid.crs)], out_shape=grid.shape, transform=grid.transform, invert=True
    )
    scores: dict[dt.date, int] = {}
    if len(ranked) > 1:
        for day in ranked[: loader.options.shortlist]:
            scl = loader.mosaic(groups[day], infos, (SCL,), desc=f"{aoi.slug} SCL {day}")[0]
            scores[day] = _unusable(scl, in_aoi)
            log.info(
                "%s %s: %s cloud cover %.1f%%, unusable over the AOI %.1f%%",
                aoi.slug,
                epoch,
                day,
                _cloud_cover(groups[day]),
                100 * scores[day] / max(1, int(in_aoi.sum())),
            )
    best = min(ranked[: max(1, len(scores))], key=lambda d: (scores.get(d, 0), ranked.index(d)))
    chosen = groups[best]
    info = {
        "id": ",".join(it.id for it in chosen),
        "datetime": min(_datetime(it) for it in chosen).isoformat(),
        "cloud_cover": round(_cloud_cover(chosen), 2),
        "candidates": len(ranked),
    }
    if best in scores:
        info["aoi_unusable_fraction"] = round(scores[best] / max(1, int(in_aoi.sum())), 4)
    return best, info


def read_stac_scene(aoi: AOI, epoch: str, grid: Grid, options: StacOptions) -> RawScene:
    """Search, choose the date, read and mosaic its items onto the AOI grid."""
    window = aoi.before if epoch == "before" else aoi.after
    client = open_catalog(options)
    items = search_items(client, aoi, epoch, window, grid, options)
    infos = {it.id: item_bands(it) for it in items}
    signer = PlanetaryComputerSigner(options) if options.signs_urls() else None
    loader = Loader(grid, options, signer)
    groups = _by_date(items)
    day, acquisition = choose_date(groups, epoch, aoi, loader, infos)
    chosen = _read_order(groups[day], grid)
    offsets = infos[chosen[0].id].offsets
    log.info(
        "%s %s: reading %s (%d item(s)) from %s", aoi.slug, epoch, day, len(chosen), options.host
    )
    data = loader.mosaic(chosen, infos, (*BANDS, SCL), offsets=offsets, desc=f"{aoi.slug} {epoch}")
    meta = {
        "service": options.url,
        "collection": options.collection,
        "acquisition": acquisition,
        "time_range": _time_range(window),
        "items": [
            {
                "id": it.id,
                "boa_add_offset": list(infos[it.id].offsets),
                "crs": it.properties.get("proj:code") or f"EPSG:{it.properties.get('proj:epsg')}",
            }
            for it in chosen
        ],
    }
    if signer is not None:
        meta["signing"] = "planetary-computer"
    stated = [str(it.properties.get(k, "")) for it in chosen for k in LEVEL_KEYS]
    return RawScene(
        dn=data[: len(BANDS)],
        scl=data[len(BANDS)].astype(np.uint8),
        offsets=list(offsets),
        dates=[day.isoformat()],
        source="stac",
        metadata=meta,
        level=level_from([options.collection, *stated], f"{options.url} {options.collection}"),
    )
