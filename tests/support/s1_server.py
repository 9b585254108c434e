"""Sentinel-1 files in their real layouts, and Planetary Computer's two collections on 127.0.0.1.

For the radar source's tests and benchmark. Writers: :func:`write_grd_slice` (a GRD measurement
in radar geometry, uint16 amplitude, georeferenced only by GCPs, ZSTD COG as Planetary Computer
serves it, with its calibration and noise annotation XML), :func:`write_safe` (the same slice as
a SAFE product folder or zip as the Copernicus Data Space and ASF deliver it) and
:func:`write_rtc` (float32 linear gamma0 on a 10 m UTM grid, nodata -32768, ZSTD COG).
:class:`S1Server` answers pystac-client, requests and GDAL like Planetary Computer's STAC API:
``sentinel-1-rtc`` and ``sentinel-1-grd`` items with ``sat:relative_orbit``,
``sat:orbit_state``, ``sar:polarizations``, the anonymous token endpoint per collection (which
can refuse or rate-limit), signed asset URLs that expire, injected 429/5xx answers, range reads
and a count of the bytes served per file.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import zipfile
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from pyproj import Transformer
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.io import MemoryFile
from shapely.geometry import Polygon, mapping

from support.stac_server import COG, StacServer

UTM = "EPSG:32636"
#: Calibration look-up table: sigmaNought grows with range (pixel), as in real products.
A0, A_SLOPE = 480.0, 0.004
NOISE0 = 30.0


def truth_sigma0(x: np.ndarray, y: np.ndarray, pol: str, day: int = 0) -> np.ndarray:
    """A smooth known backscatter field (linear power) in UTM metres, per polarisation."""
    base = 0.06 * (1.6 + np.sin(x / 700.0 + day) * np.cos(y / 900.0))
    return base if pol == "vv" else base / 5.0


@dataclass(frozen=True)
class SliceGeometry:
    """A slice's radar geometry: line/pixel -> UTM through a rotated 10 m frame."""

    origin: tuple[float, float]  # UTM of line 0, pixel 0
    lines: int
    pixels: int
    state: str  # ascending: lines go north, pixels east; descending: south and west
    heading_deg: float = 12.0

    def utm(self, line: np.ndarray, pixel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = np.radians(self.heading_deg)
        sign = 1.0 if self.state == "ascending" else -1.0
        along = sign * np.array([np.sin(t), np.cos(t)])  # flight direction (x, y)
        right = sign * np.array([np.cos(t), -np.sin(t)])  # right-looking range direction
        x = self.origin[0] + 10.0 * (line * along[0] + pixel * right[0])
        y = self.origin[1] + 10.0 * (line * along[1] + pixel * right[1])
        return x, y

    def gcps(self, step: int = 100) -> list[GroundControlPoint]:
        to_ll = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
        out = []
        for line in [*range(0, self.lines, step), self.lines - 1]:
            for pixel in [*range(0, self.pixels, step), self.pixels - 1]:
                x, y = self.utm(np.array(line), np.array(pixel))
                lon, lat = to_ll.transform(float(x), float(y))
                out.append(GroundControlPoint(line, pixel, lon, lat, 0.0))
        return out

    def footprint(self) -> dict[str, Any]:
        to_ll = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
        corners = [(0, 0), (0, self.pixels), (self.lines, self.pixels), (self.lines, 0)]
        ring = [
            to_ll.transform(*map(float, self.utm(np.array(a), np.array(b)))) for a, b in corners
        ]
        return mapping(Polygon(ring))


def _vectors(lines: int, pixels: int, step_l: int = 50, step_p: int = 40) -> tuple:
    ls = np.array([*range(0, lines, step_l), lines - 1])
    ps = np.array([*range(0, pixels, step_p), pixels - 1])
    return ls, ps


def calibration_xml(lines: int, pixels: int, pol: str) -> bytes:
    """A ``calibration-*.xml`` annotation with sigmaNought, betaNought, gamma and dn vectors."""
    ls, ps = _vectors(lines, pixels)
    a = A0 + A_SLOPE * ps
    vecs = "".join(
        f"<calibrationVector><azimuthTime>2022-03-01T04:30:{i % 60:02d}.000000</azimuthTime>"
        f'<line>{line}</line><pixel count="{len(ps)}">{" ".join(map(str, ps))}</pixel>'
        f'<sigmaNought count="{len(ps)}">{" ".join(f"{v:.6e}" for v in a)}</sigmaNought>'
        f'<betaNought count="{len(ps)}">{" ".join(f"{v:.6e}" for v in a * 0.9)}</betaNought>'
        f'<gamma count="{len(ps)}">{" ".join(f"{v:.6e}" for v in a * 0.8)}</gamma>'
        f'<dn count="{len(ps)}">{" ".join(["2.370000e+02"] * len(ps))}</dn>'
        "</calibrationVector>"
        for i, line in enumerate(ls)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<calibration><adsHeader><missionId>S1A'
        f"</missionId><productType>GRD</productType><polarisation>{pol.upper()}</polarisation>"
        "<mode>IW</mode><swath>IW</swath></adsHeader><calibrationInformation>"
        "<absoluteCalibrationConstant>1.000000e+00</absoluteCalibrationConstant>"
        f'</calibrationInformation><calibrationVectorList count="{len(ls)}">{vecs}'
        "</calibrationVectorList></calibration>"
    ).encode()


def noise_xml(lines: int, pixels: int) -> bytes:
    """A ``noise-*.xml`` annotation in the IPF >= 2.9 layout (range and azimuth vectors)."""
    ls, ps = _vectors(lines, pixels)
    rng_vecs = "".join(
        f"<noiseRangeVector><azimuthTime>2022-03-01T04:30:00.000000</azimuthTime>"
        f'<line>{line}</line><pixel count="{len(ps)}">{" ".join(map(str, ps))}</pixel>'
        f'<noiseRangeLut count="{len(ps)}">{" ".join([f"{NOISE0:.6e}"] * len(ps))}'
        "</noiseRangeLut></noiseRangeVector>"
        for line in ls
    )
    az = (
        "<noiseAzimuthVector><swath>IW1</swath><firstAzimuthLine>0</firstAzimuthLine>"
        f"<firstRangeSample>0</firstRangeSample><lastAzimuthLine>{lines - 1}</lastAzimuthLine>"
        f'<lastRangeSample>{pixels - 1}</lastRangeSample><line count="2">0 {lines - 1}</line>'
        '<noiseAzimuthLut count="2">1.000000e+00 1.000000e+00</noiseAzimuthLut>'
        "</noiseAzimuthVector>"
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<noise><adsHeader><missionId>S1A</missionId>'
        f'</adsHeader><noiseRangeVectorList count="{len(ls)}">{rng_vecs}'
        f'</noiseRangeVectorList><noiseAzimuthVectorList count="1">{az}'
        "</noiseAzimuthVectorList></noise>"
    ).encode()


def grd_dn(geom: SliceGeometry, pol: str, day: int = 0) -> np.ndarray:
    """Digital numbers whose calibrated value is :func:`truth_sigma0` (0 outside a border)."""
    line, pixel = np.mgrid[0 : geom.lines, 0 : geom.pixels].astype(np.float64)
    x, y = geom.utm(line, pixel)
    a = A0 + A_SLOPE * pixel
    dn = np.sqrt(truth_sigma0(x, y, pol, day) * a * a + NOISE0)
    dn = np.clip(np.round(dn), 1, 65535).astype(np.uint16)
    dn[:, :3] = 0  # the slice's no-data border
    return dn


def write_measurement(path: Path, dn: np.ndarray, gcps: list, cog: bool = True) -> Path:
    """uint16 with GCPs only (no geotransform): a ZSTD COG, or the SAFE's plain GeoTIFF."""
    profile = {
        "driver": "GTiff",
        "count": 1,
        "dtype": "uint16",
        "width": dn.shape[1],
        "height": dn.shape[0],
    }
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(dn, 1)
            dst.gcps = (gcps, CRS.from_epsg(4326))
        with mem.open() as src:
            if cog:
                rasterio.shutil.copy(
                    src, path, driver="COG", COMPRESS="ZSTD", BLOCKSIZE="512", OVERVIEWS="AUTO"
                )
            else:
                rasterio.shutil.copy(src, path, driver="GTiff")
    return path


def write_rtc(
    path: Path, transform: Affine, shape: tuple[int, int], pol: str, day: int = 0, crs: str = UTM
) -> Path:
    """Planetary Computer's RTC asset: float32 linear gamma0, nodata -32768, ZSTD COG."""
    h, w = shape
    cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    x, y = transform * (cols, rows)
    if crs != UTM:
        x, y = Transformer.from_crs(crs, UTM, always_xy=True).transform(x, y)
    data = truth_sigma0(np.asarray(x), np.asarray(y), pol, day).astype(np.float32)
    data[:, :5] = -32768
    profile = {
        "driver": "GTiff",
        "count": 1,
        "dtype": "float32",
        "width": w,
        "height": h,
        "crs": crs,
        "transform": transform,
        "nodata": -32768,
    }
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(data, 1)
        with mem.open() as src:
            rasterio.shutil.copy(
                src,
                path,
                driver="COG",
                COMPRESS="ZSTD",
                BLOCKSIZE="512",
                OVERVIEWS="AUTO",
                PREDICTOR="3",
            )
    return path


def product_id(platform: str, start: dt.datetime, orbit_abs: int) -> str:
    stamp = start.strftime("%Y%m%dT%H%M%S")
    end = (start + dt.timedelta(seconds=25)).strftime("%Y%m%dT%H%M%S")
    return f"S1{platform[-1].upper()}_IW_GRDH_1SDV_{stamp}_{end}_{orbit_abs:06d}_04F1A2_ABCD"


def write_grd_slice(folder: Path, pid: str, geom: SliceGeometry, day: int = 0) -> dict[str, Path]:
    """The slice's two measurements and their calibration, noise and product XML."""
    folder.mkdir(parents=True, exist_ok=True)
    gcps = geom.gcps()
    out: dict[str, Path] = {}
    for pol in ("vv", "vh"):
        out[pol] = write_measurement(folder / f"{pid}-{pol}.tif", grd_dn(geom, pol, day), gcps)
        for kind, body in (
            ("calibration", calibration_xml(geom.lines, geom.pixels, pol)),
            ("noise", noise_xml(geom.lines, geom.pixels)),
        ):
            path = folder / f"{pid}-{kind}-{pol}.xml"
            path.write_bytes(body)
            out[f"{kind}-{pol}"] = path
    return out


def manifest_xml(orbit: int, state: str, start: dt.datetime, orbit_abs: int) -> bytes:
    """The parts of ``manifest.safe`` a reader needs, in its real namespaces."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<xfdu:XFDU xmlns:xfdu="urn:ccsds:schema:xfdu:1"'
        ' xmlns:safe="http://www.esa.int/safe/sentinel-1.0"'
        ' xmlns:s1="http://www.esa.int/safe/sentinel-1.0/sentinel-1"'
        ' xmlns:s1sarl1="http://www.esa.int/safe/sentinel-1.0/sentinel-1/sar/level-1">'
        '<metadataSection><metadataObject ID="measurementOrbitReference"><metadataWrap>'
        "<xmlData><safe:orbitReference>"
        f'<safe:orbitNumber type="start">{orbit_abs}</safe:orbitNumber>'
        f'<safe:orbitNumber type="stop">{orbit_abs}</safe:orbitNumber>'
        f'<safe:relativeOrbitNumber type="start">{orbit}</safe:relativeOrbitNumber>'
        f'<safe:relativeOrbitNumber type="stop">{orbit}</safe:relativeOrbitNumber>'
        "<safe:extension><s1:orbitProperties>"
        f"<s1:pass>{state.upper()}</s1:pass></s1:orbitProperties></safe:extension>"
        "</safe:orbitReference></xmlData></metadataWrap></metadataObject>"
        '<metadataObject ID="acquisitionPeriod"><metadataWrap><xmlData>'
        f"<safe:acquisitionPeriod><safe:startTime>{start.strftime('%Y-%m-%dT%H:%M:%S.%f')}"
        "</safe:startTime></safe:acquisitionPeriod></xmlData></metadataWrap></metadataObject>"
        '<metadataObject ID="platform"><metadataWrap><xmlData><safe:platform>'
        "<safe:familyName>SENTINEL-1</safe:familyName><safe:number>A</safe:number>"
        "</safe:platform></xmlData></metadataWrap></metadataObject>"
        "</metadataSection></xfdu:XFDU>"
    ).encode()


def write_safe(
    folder: Path,
    geom: SliceGeometry,
    start: dt.datetime,
    orbit: int,
    orbit_abs: int = 42123,
    day: int = 0,
    as_zip: bool = False,
) -> Path:
    """A GRD SAFE product (folder, or zip as downloaded) in ESA's names and layout."""
    pid = product_id("sentinel-1a", start, orbit_abs)
    safe = folder / f"{pid}.SAFE"
    (safe / "measurement").mkdir(parents=True, exist_ok=True)
    (safe / "annotation" / "calibration").mkdir(parents=True, exist_ok=True)
    (safe / "manifest.safe").write_bytes(manifest_xml(orbit, geom.state, start, orbit_abs))
    gcps = geom.gcps()
    stamp = start.strftime("%Y%m%dt%H%M%S")
    for i, pol in enumerate(("vh", "vv")):
        name = f"s1a-iw-grd-{pol}-{stamp}-{stamp}-{orbit_abs:06d}-04f1a2-{i + 2:03d}"
        write_measurement(
            safe / "measurement" / f"{name}.tiff", grd_dn(geom, pol, day), gcps, cog=False
        )
        (safe / "annotation" / f"{name}.xml").write_text("<product/>")
        cal = safe / "annotation" / "calibration"
        (cal / f"calibration-{name}.xml").write_bytes(calibration_xml(geom.lines, geom.pixels, pol))
        (cal / f"noise-{name}.xml").write_bytes(noise_xml(geom.lines, geom.pixels))
    if not as_zip:
        return safe
    path = folder / f"{pid}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted(safe.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(folder).as_posix())
    return path


def _props(
    start: dt.datetime, platform: str, orbit: int, state: str, epsg: int | None
) -> dict[str, Any]:
    end = start + dt.timedelta(seconds=25)
    props: dict[str, Any] = {
        "datetime": (start + dt.timedelta(seconds=12)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "start_datetime": start.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "end_datetime": end.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "platform": platform.upper(),
        "constellation": "Sentinel-1",
        "sar:instrument_mode": "IW",
        "sar:frequency_band": "C",
        "sar:polarizations": ["VV", "VH"],
        "sar:product_type": "GRD",
        "sat:orbit_state": state,
        "sat:relative_orbit": orbit,
        "sat:absolute_orbit": 42123,
        "s1:processing_level": "1",
        "s1:product_timeliness": "Fast-24h",
    }
    if epsg is not None:
        props["proj:epsg"] = epsg
    return props


def _item(iid: str, collection: str, geometry: dict, props: dict, assets: dict) -> dict[str, Any]:
    from shapely.geometry import shape

    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": iid,
        "collection": collection,
        "stac_extensions": [
            "https://stac-extensions.github.io/sar/v1.0.0/schema.json",
            "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
        ],
        "geometry": geometry,
        "bbox": list(shape(geometry).bounds),
        "properties": props,
        "assets": assets,
        "links": [],
    }


def grd_item(
    iid: str,
    hrefs: dict[str, str],
    geom: SliceGeometry,
    start: dt.datetime,
    orbit: int,
    platform: str = "sentinel-1a",
) -> dict[str, Any]:
    """A ``sentinel-1-grd`` item: GCP-only COGs, annotation XML assets, stale ``proj:*``."""
    assets: dict[str, Any] = {}
    for pol in ("vv", "vh"):
        assets[pol] = {
            "href": hrefs[pol],
            "type": COG,
            "roles": ["data"],
            "title": f"{pol.upper()}: vertical transmit, {pol[1].upper()} receive",
            "raster:bands": [{"nodata": 0, "data_type": "uint16", "spatial_resolution": 10}],
            "proj:shape": [geom.lines, geom.pixels],
            "proj:transform": [10.0, 0.0, 0.0, 0.0, -10.0, 0.0],  # not trustworthy
        }
        for kind in ("calibration", "noise"):
            assets[f"schema-{kind}-{pol}"] = {
                "href": hrefs[f"{kind}-{pol}"],
                "type": "application/xml",
                "roles": ["metadata"],
                "title": f"{kind.title()} Schema ({pol.upper()})",
            }
    assets["thumbnail"] = {
        "href": hrefs["vv"].replace(".tif", ".png"),
        "type": "image/png",
        "roles": ["thumbnail"],
    }
    props = _props(start, platform, orbit, geom.state, None)
    props["s1:shape"] = [geom.pixels, geom.lines]
    return _item(iid, "sentinel-1-grd", geom.footprint(), props, assets)


def rtc_item(
    iid: str,
    hrefs: dict[str, str],
    transform: Affine,
    shape: tuple[int, int],
    start: dt.datetime,
    orbit: int,
    state: str,
    platform: str = "sentinel-1a",
    crs: str = UTM,
) -> dict[str, Any]:
    """A ``sentinel-1-rtc`` item: float32 gamma0 COGs on a UTM grid."""
    h, w = shape
    left, top = transform.c, transform.f
    corners = [
        (left, top),
        (left + w * 10, top),
        (left + w * 10, top - h * 10),
        (left, top - h * 10),
    ]
    to_ll = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    geometry = mapping(Polygon([to_ll.transform(*c) for c in corners]))
    assets = {
        pol: {
            "href": hrefs[pol],
            "type": COG,
            "roles": ["data"],
            "title": f"{pol.upper()}: terrain-corrected gamma naught values",
            "raster:bands": [
                {
                    "nodata": -32768,
                    "data_type": "float32",
                    "spatial_resolution": 10,
                    "scale": 1,
                    "offset": 0,
                }
            ],
            "proj:shape": [h, w],
            "proj:transform": list(transform)[:6],
        }
        for pol in ("vv", "vh")
    }
    props = _props(start, platform, orbit, state, int(crs.split(":")[1]))
    return _item(iid, "sentinel-1-rtc", geometry, props, assets)


class S1Server(StacServer):
    """Planetary Computer's STAC API for Sentinel-1, with its token and signing behaviour.

    ``refuse_token``: collections whose token endpoint answers 401 (a key is needed).
    ``token_lifetime``: file reads a token is good for; after that its URLs get 403 until a new
    token is fetched (signed URLs expire). ``token_faults``: statuses the token endpoint gives
    first (e.g. 429). ``sas_expiry`` (the base class's): the ``msft:expiry`` every token answer
    carries, as Planetary Computer's does.
    """

    def __init__(self, files: Path):
        super().__init__(files, collections=("sentinel-1-rtc", "sentinel-1-grd"))
        self.refuse_token: set[str] = set()
        self.token_lifetime: int | None = None
        self.token_faults: list[int] = []
        self.refused_reads = 0  # file reads answered 403 for a stale or expired signature
        self._issued = 0
        self._uses: Counter[str] = Counter()
        self.signed = True  # asset URLs need the latest token (the base class's check is off)

    def reset(self, items: Any = ()) -> None:
        super().reset(items)
        self.signed = True
        self.refuse_token = set()
        self.token_lifetime = None
        self.token_faults = []
        self.refused_reads = 0
        self._uses = Counter()

    def token(self) -> str:
        self._issued += 1
        return f"st=2026-01-01&se=2099-01-01&sp=rl&sig=sig{self._issued}"

    def token_ok(self, query: str) -> bool:
        """Whether a URL carries the latest token, still within its lifetime."""
        sig = parse_qs(query).get("sig", [""])[0]
        if sig != f"sig{self._issued}":
            return False
        self._uses[sig] += 1
        return self.token_lifetime is None or self._uses[sig] <= self.token_lifetime

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        base = super()._handler()
        server = self

        class Handler(base):  # type: ignore[misc, valid-type]
            def _route(self, method: str, body: dict[str, Any] | None = None) -> None:
                parts = urlsplit(self.path)
                if parts.path.startswith("/api/sas/v1/token/"):
                    server.requests.append(f"{method} {self.path}")
                    collection = parts.path.rsplit("/", 1)[-1]
                    if server.token_faults:
                        status = server.token_faults.pop(0)
                        return self._json({"message": "Too Many Requests"}, status)
                    if collection in server.refuse_token:
                        return self._json({"message": "Access denied: subscription key"}, 401)
                    return self._json({"msft:expiry": server.sas_expiry, "token": server.token()})
                signed = parts.path.startswith("/files/") and server.signed
                if signed and not server.token_ok(parts.query):
                    server.requests.append(f"{method} {self.path}")
                    server.refused_reads += 1
                    return self._json({"code": "AuthenticationFailed"}, 403)
                return super()._route(method, body)

            def _file(self, name: str, query: str, method: str) -> None:
                path = server.files / name
                if path.suffix == ".xml" and path.is_file() and method == "GET":
                    data = path.read_bytes()
                    server.bytes_served[name] += len(data)
                    self.send_response(200)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return None
                return super()._file(name, query, method)

        return Handler


def when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def served_bytes(server: S1Server, pattern: str = r"\.tif$") -> int:
    return sum(v for k, v in server.bytes_served.items() if re.search(pattern, k))


def write_aoi(
    folder: Path,
    lon: float = 30.52,
    lat: float = 50.45,
    half_deg: float = 0.008,
    after: str = "2022-05-01",
) -> Path:
    """A small AOI file (about 1.1 x 1.8 km) around a point, in the catalogue's layout."""
    ring = [
        [lon - half_deg, lat - half_deg],
        [lon + half_deg, lat - half_deg],
        [lon + half_deg, lat + half_deg],
        [lon - half_deg, lat + half_deg],
        [lon - half_deg, lat - half_deg],
    ]
    props = {
        "name": "Test",
        "slug": "test",
        "before": "2021-10-01",
        "after": after,
        "unosat_aoi": "none",
    }
    doc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": props,
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            }
        ],
    }
    path = folder / "test.geojson"
    path.write_text(json.dumps(doc))
    return path
