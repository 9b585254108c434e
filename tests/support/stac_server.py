"""A small STAC API and COG file server on 127.0.0.1, for the STAC source's tests and benchmark.

It answers what pystac-client and GDAL ask of Earth Search or Planetary Computer: the landing
page, ``/conformance``, ``/collections/<id>``, ``/search`` (GET and POST, filtered by collection,
datetime and ``intersects``/``bbox``), Planetary Computer's ``/api/sas/v1/token/<collection>``
and the COG files themselves with HTTP range requests. It counts the bytes it serves per file,
and can be told to fail the next requests to a path with given status codes, or to stall, or to
hand out a new token (``sas_token``, ``sas_expiry``) and refuse the old one with HTTP 403.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import rasterio
import rasterio.shutil
import shapely
from affine import Affine
from rasterio.io import MemoryFile
from rasterio.warp import transform_geom
from shapely.geometry import box, mapping, shape

COG = "image/tiff; application=geotiff; profile=cloud-optimized"
EXTENSIONS = {
    "eo": "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "proj1": "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
    "proj2": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
}
CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/collections",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]
TOKEN = "st=2026-01-01&se=2099-01-01&sig=test-signature"
#: band id -> (Earth Search key, common name, centre wavelength um)
BANDS = {
    "B02": ("blue", "blue", 0.49),
    "B03": ("green", "green", 0.56),
    "B04": ("red", "red", 0.665),
    "B08": ("nir", "nir", 0.842),
}


def write_cog(
    path: Path, data: np.ndarray, crs: str, transform: Affine, nodata: int = 0, blocksize: int = 256
) -> Path:
    """A tiled, deflate-compressed COG with overviews, like the public Sentinel-2 COGs."""
    profile = {
        "driver": "GTiff",
        "count": 1,
        "dtype": data.dtype.name,
        "width": data.shape[1],
        "height": data.shape[0],
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
    }
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(data, 1)
        with mem.open() as src:
            rasterio.shutil.copy(
                src,
                path,
                driver="COG",
                COMPRESS="DEFLATE",
                BLOCKSIZE=str(blocksize),
                OVERVIEWS="AUTO",
                OVERVIEW_RESAMPLING="NEAREST",
            )
    return path


def footprint(crs: str, transform: Affine, shape10: tuple[int, int]) -> dict[str, Any]:
    """The lon/lat outline of a raster (as an item's ``geometry``)."""
    h, w = shape10
    left, top = transform.c, transform.f
    outline = shapely.segmentize(
        box(left, top + h * transform.e, left + w * transform.a, top), 200.0
    )
    return transform_geom(crs, "EPSG:4326", mapping(outline))


def _asset(
    href: str,
    title: str,
    gsd: int,
    shape: tuple[int, int],
    transform: Affine,
    eo: list[dict] | None,
    raster: dict | None,
    media: str = COG,
) -> dict[str, Any]:
    asset: dict[str, Any] = {
        "href": href,
        "type": media,
        "title": title,
        "roles": ["data"],
        "gsd": gsd,
        "proj:shape": list(shape),
        "proj:transform": list(transform)[:6],
    }
    if eo is not None:
        asset["eo:bands"] = eo
    if raster is not None:
        asset["raster:bands"] = [raster]
    return asset


def make_item(
    layout: str,
    item_id: str,
    when: str,
    crs: str,
    transform: Affine,
    shape10: tuple[int, int],
    hrefs: dict[str, str],
    cloud: float,
    collection: str,
    **properties: Any,
) -> dict[str, Any]:
    """An item in the layout of Earth Search ``c1`` / ``l2a`` or Planetary Computer ``pc``.

    ``hrefs`` maps B02, B03, B04, B08, SCL to file URLs; ``properties`` may carry
    ``offset`` (raster:bands offset, None = no offset field, "absent" = no raster:bands) and
    item properties such as ``s2:processing_baseline`` or ``earthsearch:boa_offset_applied``.
    """
    offset = properties.pop("offset", -0.1 if layout == "c1" else None)
    epsg = int(crs.split(":")[1])
    t20 = Affine(20, 0, transform.c, 0, -20, transform.f)
    s20 = (shape10[0] // 2, shape10[1] // 2)
    assets: dict[str, Any] = {}
    for band, (key, common, wl) in BANDS.items():
        name = common if layout == "c1" else band
        eo = [{"name": name, "common_name": common, "center_wavelength": wl}]
        raster = None
        if layout != "pc" and offset != "absent":
            raster = {"nodata": 0, "data_type": "uint16", "spatial_resolution": 10, "scale": 0.0001}
            if offset is not None:
                raster["offset"] = offset
        akey = band if layout == "pc" else key
        assets[akey] = _asset(hrefs[band], f"{band} - 10m", 10, shape10, transform, eo, raster)
        if layout != "pc":  # Earth Search also lists the original JPEG 2000 of each band
            assets[f"{key}-jp2"] = _asset(
                hrefs[band].replace(".tif", ".jp2"),
                f"{band} jp2",
                10,
                shape10,
                transform,
                eo,
                raster,
                media="image/jp2",
            )
    scl_raster = (
        None if layout == "pc" else {"nodata": 0, "data_type": "uint8", "spatial_resolution": 20}
    )
    assets["SCL" if layout == "pc" else "scl"] = _asset(
        hrefs["SCL"], "SCL", 20, s20, t20, None, scl_raster
    )
    # distractors a key-only or common-name-only match would trip over
    assets["B8A" if layout == "pc" else "nir08"] = _asset(
        hrefs["B08"].replace("B08", "B8A"),
        "B8A",
        20,
        s20,
        t20,
        [
            {
                "name": "B8A" if layout != "c1" else "nir08",
                "common_name": "nir08",
                "center_wavelength": 0.865,
            }
        ],
        None,
    )
    assets["visual"] = _asset(
        hrefs["B04"].replace("B04", "TCI"),
        "True color",
        10,
        shape10,
        transform,
        [{"name": n, "common_name": n} for n in ("red", "green", "blue")],
        None,
    )
    props: dict[str, Any] = {"datetime": when, "eo:cloud_cover": cloud, **properties}
    exts = [EXTENSIONS["eo"], EXTENSIONS["raster"]]
    if layout == "c1":
        props["proj:code"] = crs
        exts.append(EXTENSIONS["proj2"])
    else:
        props["proj:epsg"] = epsg
        exts.append(EXTENSIONS["proj1"])
    geom = footprint(crs, transform, shape10)
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": exts,
        "id": item_id,
        "collection": collection,
        "geometry": geom,
        "bbox": list(shape(geom).bounds),
        "properties": props,
        "assets": assets,
        "links": [],
    }


class StacServer:
    """The server; ``url`` is the STAC API root, ``file_url(name)`` a served file."""

    def __init__(
        self, files: Path, collections: Sequence[str] = ("sentinel-2-c1-l2a", "sentinel-2-l2a")
    ):
        self.files = files
        self.collections = list(collections)
        self.items: list[dict[str, Any]] = []
        self.faults: dict[str, list[int]] = defaultdict(list)
        self.stalls: dict[str, float] = {}  # path prefix -> seconds to wait before answering
        self.bytes_served: Counter[str] = Counter()
        self.requests: list[str] = []
        self.require_token = False
        self.sas_token = TOKEN  # what the token endpoint hands out and asset reads require
        self.sas_expiry = "2099-01-01T00:00:00Z"
        self.stale_tokens: list[str] = []  # handed out first, already refused by asset reads
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_port}/api/stac/v1"

    def file_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self._httpd.server_port}/files/{name}"

    def __enter__(self) -> StacServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def reset(self, items: Sequence[dict[str, Any]] = ()) -> None:
        self.items = list(items)
        self.faults.clear()
        self.stalls.clear()
        self.bytes_served.clear()
        self.requests.clear()
        self.require_token = False
        self.sas_token = TOKEN
        self.sas_expiry = "2099-01-01T00:00:00Z"
        self.stale_tokens = []

    # --- answers -------------------------------------------------------------------------
    def landing(self) -> dict[str, Any]:
        root = self.url
        return {
            "type": "Catalog",
            "id": "test",
            "stac_version": "1.0.0",
            "description": "t",
            "conformsTo": CONFORMANCE,
            "links": [
                {"rel": "self", "href": root, "type": "application/json"},
                {"rel": "root", "href": root, "type": "application/json"},
                {"rel": "conformance", "href": f"{root}/conformance"},
                {"rel": "data", "href": f"{root}/collections"},
                {
                    "rel": "search",
                    "href": f"{root}/search",
                    "method": "GET",
                    "type": "application/geo+json",
                },
                {
                    "rel": "search",
                    "href": f"{root}/search",
                    "method": "POST",
                    "type": "application/geo+json",
                },
            ],
        }

    def collection(self, cid: str) -> dict[str, Any]:
        root = self.url
        return {
            "type": "Collection",
            "id": cid,
            "stac_version": "1.0.0",
            "description": "Sentinel-2 L2A",
            "license": "proprietary",
            "extent": {
                "spatial": {"bbox": [[-180, -90, 180, 90]]},
                "temporal": {"interval": [["2015-06-27T00:00:00Z", None]]},
            },
            "links": [
                {"rel": "self", "href": f"{root}/collections/{cid}"},
                {"rel": "root", "href": root},
                {"rel": "items", "href": f"{root}/collections/{cid}/items"},
            ],
        }

    def search(self, params: dict[str, Any]) -> dict[str, Any]:
        collections = params.get("collections") or []
        if isinstance(collections, str):
            collections = collections.split(",")
        where = None
        if params.get("intersects"):
            where = shape(
                params["intersects"]
                if isinstance(params["intersects"], dict)
                else json.loads(params["intersects"])
            )
        elif params.get("bbox"):
            bb = params["bbox"]
            where = box(*(map(float, bb.split(",")) if isinstance(bb, str) else bb))
        start, end = None, None
        if params.get("datetime"):
            a, b = params["datetime"].split("/")
            start, end = _when(a), _when(b)
        hits = [
            it
            for it in self.items
            if (not collections or it["collection"] in collections)
            and (where is None or shape(it["geometry"]).intersects(where))
            and (start is None or start <= _when(it["properties"]["datetime"]) <= end)
        ]
        return {
            "type": "FeatureCollection",
            "features": hits,
            "links": [],
            "numberReturned": len(hits),
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _json(self, body: dict[str, Any], status: int = 200) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _fault(self, path: str) -> bool:
                for prefix, seconds in server.stalls.items():
                    if path.startswith(prefix):
                        time.sleep(seconds)
                for prefix, statuses in server.faults.items():
                    if path.startswith(prefix) and statuses:
                        status = statuses.pop(0)
                        self._json({"code": status, "description": "injected"}, status)
                        return True
                return False

            def _route(self, method: str, body: dict[str, Any] | None = None) -> None:
                parts = urlsplit(self.path)
                path = parts.path
                server.requests.append(f"{method} {self.path}")
                if self._fault(path):
                    return
                root = urlsplit(server.url).path
                if path.startswith("/files/"):
                    return self._file(path[len("/files/") :], parts.query, method)
                if path.startswith("/api/sas/v1/token/"):
                    # Planetary Computer's answer: {"msft:expiry": ..., "token": ...}
                    token = server.stale_tokens.pop(0) if server.stale_tokens else server.sas_token
                    return self._json({"msft:expiry": server.sas_expiry, "token": token})
                if path in (root, root + "/"):
                    return self._json(server.landing())
                if path == root + "/conformance":
                    return self._json({"conformsTo": CONFORMANCE})
                if path.startswith(root + "/collections/"):
                    cid = path[len(root + "/collections/") :]
                    if cid in server.collections:
                        return self._json(server.collection(cid))
                    return self._json({"code": "NotFound", "description": cid}, 404)
                if path == root + "/search":
                    params = (
                        body
                        if body is not None
                        else {k: v[0] for k, v in parse_qs(parts.query).items()}
                    )
                    return self._json(server.search(params))
                self._json({"code": "NotFound"}, 404)

            def _file(self, name: str, query: str, method: str) -> None:
                path = server.files / name
                if server.require_token and server.sas_token not in query:
                    return self._json({"code": "AuthenticationFailed"}, 403)
                if not path.is_file():
                    return self._json({"code": "NotFound"}, 404)
                size = path.stat().st_size
                rng = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
                start, end = 0, size - 1
                if rng:
                    start = int(rng.group(1))
                    end = min(int(rng.group(2)) if rng.group(2) else size - 1, size - 1)
                self.send_response(206 if rng else 200)
                self.send_header("Content-Type", "image/tiff")
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(end - start + 1))
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                self.end_headers()
                if method == "HEAD":
                    return
                with open(path, "rb") as fh:
                    fh.seek(start)
                    data = fh.read(end - start + 1)
                server.bytes_served[name] += len(data)
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                self._route("GET")

            def do_HEAD(self) -> None:  # noqa: N802
                self._route("HEAD")

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                self._route("POST", json.loads(self.rfile.read(length) or b"{}"))

        return Handler


def _when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
