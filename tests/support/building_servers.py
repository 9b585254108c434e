"""Footprint and district services on 127.0.0.1, answering in the real services' layouts.

One threaded HTTP server answers three services, as ``damagenet aggregate`` meets them:

- an Overpass API interpreter (``POST /api/interpreter``, form field ``data``): the box of the
  query's ``(south,west,north,east)`` filter, answered as ``[out:json]`` with ``out geom``:
  ways with inline ``geometry`` node lists, multipolygon relations with ``members``, tags, and
  the ``osm3s`` block with ``timestamp_osm_base``;
- Overture Maps' S3 bucket (``/s3/<bucket>``): ``ListObjectsV2`` XML (prefix, delimiter,
  common prefixes, max-keys pages with continuation tokens) and the objects with HTTP Range;
  the files are GeoParquet in Overture's buildings schema (``id``, WKB ``geometry``, ``bbox``
  struct, ``version``, ``sources`` list of structs, ``names``, ``height``, ``class``, ...),
  with the ``geo`` metadata key and its ``covering``, sorted spatially in several row groups;
- the geoBoundaries API (``/gb/api/current/gbOpen/<ISO>/<LEVEL>/``): the metadata JSON with
  ``gjDownloadURL`` and ``simplifiedGeometryGeoJSON``, and the GeoJSON files themselves.

Every request is logged (method, path, Range, bytes sent); faults can be queued per path
prefix: an HTTP status (with ``Retry-After``), ``"truncate"`` (a body shorter than its
Content-Length), ``"garbage"`` (an HTML error page with status 200), ``"drop"`` (the
connection closed without an answer).
"""

from __future__ import annotations

import json
import re
import socket
import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import rasterio
import shapely
from pyproj import Transformer
from rasterio.transform import from_origin

CENTRE = (30.25, 50.55)  # lon, lat: a town north-west of Kyiv, UTM zone 36N
UTM = "EPSG:32636"
#: the map: 1.6 km square, 10 m pixels, its top-left corner on the 10 m grid (not on 500 m)
MAP_PX, MAP_SIZE = 10.0, 160
RELEASE = "2024-11-13.0"
OLD_RELEASE = "2024-10-23.0"
BUCKET = "overturemaps-us-west-2"
BUILDING_PREFIX = f"release/{RELEASE}/theme=buildings/type=building/"
S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
OSM_BASE = "2024-05-01T12:00:00Z"


def centre_utm() -> tuple[float, float]:
    x, y = Transformer.from_crs(4326, UTM, always_xy=True).transform(*CENTRE)
    return round(x / 10) * 10 + 3.0 * 10, round(y / 10) * 10 + 7.0 * 10


def map_origin() -> tuple[float, float]:
    """Top-left corner of the map (UTM), deliberately off the 500 m grid."""
    x, y = centre_utm()
    return x - MAP_SIZE * MAP_PX / 2, y + MAP_SIZE * MAP_PX / 2


# --- the town ----------------------------------------------------------------------------
def town(extent_m: float = 4000.0, spacing: float = 50.0) -> gpd.GeoDataFrame:
    """Rotated rectangular footprints on a jittered grid over ``extent_m`` around the centre
    (about 2.5 times the map's width, so most lie outside the map), in WGS 84."""
    rng = np.random.default_rng(11)
    cx, cy = centre_utm()
    ticks = np.arange(-extent_m / 2, extent_m / 2, spacing) + spacing / 2
    xs, ys = np.meshgrid(cx + ticks, cy + ticks)
    xs = xs.ravel() + rng.uniform(-8, 8, xs.size)
    ys = ys.ravel() + rng.uniform(-8, 8, ys.size)
    w, h = rng.uniform(8, 20, xs.size), rng.uniform(8, 16, xs.size)
    boxes = shapely.box(xs - w / 2, ys - h / 2, xs + w / 2, ys + h / 2)
    angles = rng.uniform(0, 90, xs.size)
    geoms = [shapely.affinity.rotate(b, a) for b, a in zip(boxes, angles, strict=True)]
    frame = gpd.GeoDataFrame(
        {"n": np.arange(xs.size), "height": np.round(rng.uniform(3, 30, xs.size), 1)},
        geometry=geoms,
        crs=UTM,
    )
    return frame.to_crs(4326)


def map_box_utm() -> tuple[float, float, float, float]:
    x0, y0 = map_origin()
    return x0, y0 - MAP_SIZE * MAP_PX, x0 + MAP_SIZE * MAP_PX, y0


def inside_map(frame: gpd.GeoDataFrame, margin: float = 0.0) -> np.ndarray:
    """Which footprints meet the map's box grown by ``margin`` metres."""
    left, bottom, right, top = map_box_utm()
    area = shapely.box(left - margin, bottom - margin, right + margin, top + margin)
    return frame.to_crs(UTM).intersects(area).to_numpy()


def write_map(
    path: Path,
    kind: str = "t",
    aoi: str = "testtown",
    origin: tuple[float, float] | None = None,
    size: int = MAP_SIZE,
) -> Path:
    """A T map (``damagenet pwtt``'s band description and tags) or a probability map: high
    values in the map's east half, low in the west, nodata in a corner. By default the map
    is the 1.6 km square of :func:`map_origin`; ``origin`` and ``size`` place another."""
    x0, y0 = origin or map_origin()
    values = np.where(np.arange(size)[None, :] >= size // 2, 6.0, 1.0)
    values = np.repeat(values, size, axis=0).astype("float32")
    if kind == "prob":
        values = np.where(values > 3, 0.9, 0.1).astype("float32")
    values[:10, :10] = -9999.0
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=size,
        height=size,
        count=1,
        dtype="float32",
        crs=UTM,
        transform=from_origin(x0, y0, MAP_PX, MAP_PX),
        nodata=-9999.0,
        tiled=True,
        blockxsize=64,
        blockysize=64,
    ) as dst:
        dst.write(values, 1)
        if kind == "t":
            dst.set_band_description(1, "pwtt_T")
            dst.update_tags(
                PRODUCT="PWTT pixel-wise t-test (Ballinger 2025), damagenet", THRESHOLD="3.3"
            )
        else:
            dst.set_band_description(1, "damage_probability")
            dst.update_tags(THRESHOLD="0.5000")
        dst.update_tags(AOI=aoi)
    return path


# --- Overpass ------------------------------------------------------------------------------
def _nodes(ring: Any) -> list[dict[str, float]]:
    return [{"lat": round(y, 7), "lon": round(x, 7)} for x, y in ring.coords]


def _bounds(geom: Any) -> dict[str, float]:
    w, s, e, n = geom.bounds
    return {"minlat": s, "minlon": w, "maxlat": n, "maxlon": e}


def central(frame: gpd.GeoDataFrame, k: int = 0) -> int:
    """Row of the ``k``-th footprint nearest the map's centre."""
    cx, cy = centre_utm()
    d = frame.to_crs(UTM).centroid.distance(shapely.Point(cx, cy)).to_numpy()
    return int(np.argsort(d, kind="stable")[k])


def overpass_elements(frame: gpd.GeoDataFrame) -> list[dict[str, Any]]:
    """The town as Overpass ``out geom`` elements: a way per footprint, except near the map's
    centre a multipolygon relation with a courtyard, an unclosed way and a ``building=no``."""
    special = {central(frame, k): kind for k, kind in enumerate(("relation", "open", "no"))}
    elements: list[dict[str, Any]] = []
    for row, (n, geom, height) in enumerate(
        zip(frame.n, frame.geometry, frame.height, strict=True)
    ):
        tags = {"building": "house" if n % 3 else "apartments", "height": str(height)}
        if n % 5 == 0:
            tags |= {"name": f"Будинок {n}", "addr:housenumber": str(n), "roof:shape": "flat"}
        kind = special.get(row, "way")
        ring = _nodes(geom.exterior)
        element: dict[str, Any] = {"type": "way", "id": 1000 + int(n), "bounds": _bounds(geom)}
        if kind == "relation":
            hole = shapely.affinity.scale(geom, 0.4, 0.4)
            element |= {"type": "relation", "id": 77, "members": _members(ring, hole)}
            tags = {"type": "multipolygon", "building": "school", "name": "School 1"}
        elif kind == "open":
            element |= {"nodes": [1, 2, 3], "geometry": ring[:3]}
        else:
            element |= {"nodes": list(range(len(ring))), "geometry": ring}
            tags = {"building": "no"} if kind == "no" else tags
        elements.append(element | {"tags": tags})
    return elements


def _members(ring: list[dict[str, float]], hole: Any) -> list[dict[str, Any]]:
    """The outer ring in two member ways joined end to end, and an inner ring."""
    half = len(ring) // 2
    return [
        {"type": "way", "ref": 1, "role": "outer", "geometry": ring[: half + 1]},
        {"type": "way", "ref": 2, "role": "outer", "geometry": ring[half:]},
        {"type": "way", "ref": 3, "role": "inner", "geometry": _nodes(hole.exterior)},
    ]


def _in_box(element: dict[str, Any], box: Any) -> bool:
    b = element["bounds"]
    return shapely.box(b["minlon"], b["minlat"], b["maxlon"], b["maxlat"]).intersects(box)


# --- Overture ------------------------------------------------------------------------------
NAMES = pa.struct(
    [
        ("primary", pa.string()),
        ("common", pa.map_(pa.string(), pa.string())),
        ("rules", pa.list_(pa.struct([("variant", pa.string()), ("value", pa.string())]))),
    ]
)
SOURCES = pa.list_(
    pa.struct(
        [
            ("property", pa.string()),
            ("dataset", pa.string()),
            ("license", pa.string()),
            ("record_id", pa.string()),
            ("update_time", pa.string()),
            ("confidence", pa.float64()),
            ("between", pa.list_(pa.float64())),
        ]
    )
)
BBOX = pa.struct(
    [("xmin", pa.float32()), ("xmax", pa.float32()), ("ymin", pa.float32()), ("ymax", pa.float32())]
)
OVERTURE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("geometry", pa.binary()),
        ("bbox", BBOX),
        ("version", pa.int32()),
        ("sources", SOURCES),
        ("level", pa.int32()),
        ("subtype", pa.string()),
        ("class", pa.string()),
        ("height", pa.float64()),
        ("names", NAMES),
        ("has_parts", pa.bool_()),
        ("is_underground", pa.bool_()),
        ("num_floors", pa.int32()),
        ("roof_shape", pa.string()),
    ]
)


def _source(n: int) -> list[dict[str, Any]]:
    if n % 4 == 0:
        dataset, licence, record = "OpenStreetMap", "ODbL-1.0", f"w{1000 + n}@3"
    else:
        dataset, licence, record = "Microsoft ML Buildings", None, None
    return [
        {
            "property": "",
            "dataset": dataset,
            "license": licence,
            "record_id": record,
            "update_time": "2024-06-01T00:00:00.000Z",
            "confidence": None if record else 0.93,
            "between": None,
        }
    ]


def geohash_order(lon: np.ndarray, lat: np.ndarray, bits: int = 20) -> np.ndarray:
    """Row order along a geohash (Z-order) curve: longitude and latitude bits interleaved,
    the spatial clustering Overture's files follow, so a row group covers a compact area."""
    x = ((lon + 180) / 360 * (1 << bits)).astype(np.uint64)
    y = ((lat + 90) / 180 * (1 << bits)).astype(np.uint64)
    code = np.zeros(len(lon), dtype=np.uint64)
    for b in range(bits):
        code |= ((x >> np.uint64(b)) & np.uint64(1)) << np.uint64(2 * b + 1)
        code |= ((y >> np.uint64(b)) & np.uint64(1)) << np.uint64(2 * b)
    return np.argsort(code, kind="stable")


def overture_table(frame: gpd.GeoDataFrame) -> pa.Table:
    """The town in Overture's buildings schema, sorted along a geohash curve."""
    b = shapely.bounds(frame.geometry.to_numpy())
    order = geohash_order((b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2)
    n = frame.n.to_numpy()[order]
    geoms = frame.geometry.to_numpy()[order]
    b = b[order]
    columns = {
        "id": [f"08b2{k:012x}fff" for k in n],
        "geometry": shapely.to_wkb(geoms),
        "bbox": [
            {"xmin": r[0], "xmax": r[2], "ymin": r[1], "ymax": r[3]} for r in b.astype(np.float32)
        ],
        "version": [1] * len(n),
        "sources": [_source(int(k)) for k in n],
        "level": [None] * len(n),
        "subtype": ["residential" if k % 3 else None for k in n],
        "class": ["house" if k % 3 else None for k in n],
        "height": frame.height.to_numpy()[order],
        "names": [
            {"primary": f"Будинок {k}", "common": None, "rules": None} if k % 5 == 0 else None
            for k in n
        ],
        "has_parts": [False] * len(n),
        "is_underground": [False] * len(n),
        "num_floors": [int(k % 9) + 1 for k in n],
        "roof_shape": [None] * len(n),
    }
    return pa.table(columns, schema=OVERTURE_SCHEMA)


def _geo_metadata(table: pa.Table, crs: dict[str, Any] | None = None) -> bytes:
    """GeoParquet 1.1 ``geo`` metadata with the ``bbox`` covering (no ``crs``: OGC:CRS84)."""
    b = table.column("bbox").combine_chunks()
    box = [float(pa.compute.min(b.field(k)).as_py()) for k in ("xmin", "ymin")] + [
        float(pa.compute.max(b.field(k)).as_py()) for k in ("xmax", "ymax")
    ]
    geo = {
        "version": "1.1.0",
        "primary_column": "geometry",
        "columns": {
            "geometry": {
                "encoding": "WKB",
                "geometry_types": ["Polygon", "MultiPolygon"],
                "bbox": box,
                "covering": {"bbox": {k: ["bbox", k] for k in ("xmin", "ymin", "xmax", "ymax")}},
            }
            | ({"crs": crs} if crs else {})
        },
    }
    return json.dumps(geo).encode()


def write_geoparquet(frame: gpd.GeoDataFrame, path: Path, group_rows: int) -> Path:
    """A GeoParquet 1.1 file with a ``bbox`` covering column, in ``group_rows``-row groups, in
    the frame's row order and CRS (what geopandas >= 1.0 writes with ``write_covering_bbox``)."""
    b = shapely.bounds(frame.geometry.to_numpy())
    table = pa.table(
        {
            **{c: frame[c].to_numpy() for c in frame.columns if c != "geometry"},
            "geometry": shapely.to_wkb(frame.geometry.to_numpy()),
            "bbox": pa.StructArray.from_arrays(
                [pa.array(b[:, i]) for i in range(4)], ["xmin", "ymin", "xmax", "ymax"]
            ),
        }
    )
    crs = frame.crs.to_json_dict()
    table = table.replace_schema_metadata({b"geo": _geo_metadata(table, crs)})
    pq.write_table(table, path, row_group_size=group_rows)
    return path


def write_overture(
    folder: Path, frame: gpd.GeoDataFrame, files: int = 2, group_rows: int = 400
) -> list[Path]:
    """A release's building files: the town in ``files`` west-to-east strips (each file a
    region of its own, as a release's files are), geohash-sorted within each, in
    ``group_rows``-row groups, zstd-compressed, with the ``geo`` key and the bbox covering."""
    table = overture_table(frame)
    out = folder / BUCKET / BUILDING_PREFIX
    out.mkdir(parents=True, exist_ok=True)
    xmin = table.column("bbox").combine_chunks().field("xmin").to_numpy()
    cuts = np.quantile(xmin, np.linspace(0, 1, files + 1)[1:-1])
    strip = np.searchsorted(cuts, xmin, side="right")
    paths = []
    for part in range(files):
        sub = table.take(pa.array(np.flatnonzero(strip == part)))
        sub = sub.replace_schema_metadata({b"geo": _geo_metadata(sub)})
        name = f"part-{part:05d}-{uuid.UUID(int=part)}-c000.zstd.parquet"
        pq.write_table(
            sub, out / name, row_group_size=group_rows, compression="zstd", write_statistics=True
        )
        paths.append(out / name)
    old = folder / BUCKET / f"release/{OLD_RELEASE}/theme=buildings/type=building"
    old.mkdir(parents=True, exist_ok=True)  # an older release: a few rows, never the one read
    first = table.slice(0, 10)
    pq.write_table(first.replace_schema_metadata({b"geo": _geo_metadata(first)}), old / "p.parquet")
    return paths


def row_group_spans(path: Path) -> list[tuple[int, int]]:
    """Byte range [start, end) of each row group's column chunks in a Parquet file."""
    meta = pq.ParquetFile(path).metadata
    spans = []
    for g in range(meta.num_row_groups):
        rg = meta.row_group(g)
        starts, ends = [], []
        for c in range(rg.num_columns):
            col = rg.column(c)
            start = col.dictionary_page_offset or col.data_page_offset
            starts.append(start)
            ends.append(start + col.total_compressed_size)
        spans.append((min(starts), max(ends)))
    return spans


# --- geoBoundaries -------------------------------------------------------------------------
def districts_geojson(frame: gpd.GeoDataFrame) -> dict[str, Any]:
    """ADM3-like units: the town split in four quadrants, and one far away."""
    w, s, e, n = frame.total_bounds
    cx, cy = CENTRE
    quads = [
        (w - 0.01, cy, cx, n + 0.01),
        (cx, cy, e + 0.01, n + 0.01),
        (w - 0.01, s - 0.01, cx, cy),
        (cx, s - 0.01, e + 0.01, cy),
    ]
    names = ["Північна-Захід", "Північна-Схід", "Південна-Захід", "Південна-Схід"]
    features = [
        {
            "type": "Feature",
            "properties": {
                "shapeName": name,
                "shapeISO": "None",
                "shapeID": f"10{k}23456B{k}",
                "shapeGroup": "UKR",
                "shapeType": "ADM3",
            },
            "geometry": shapely.geometry.mapping(shapely.box(*q)),
        }
        for k, (name, q) in enumerate(zip(names, quads, strict=True))
    ]
    far = shapely.geometry.mapping(shapely.box(35.0, 48.0, 35.5, 48.5))
    features.append(
        {
            "type": "Feature",
            "properties": {"shapeName": "Far", "shapeISO": "None", "shapeID": "far"}
            | {"shapeGroup": "UKR", "shapeType": "ADM3"},
            "geometry": far,
        }
    )
    return {"type": "FeatureCollection", "features": features}


def boundary_metadata(files_url: str, iso: str, level: str) -> dict[str, Any]:
    """geoBoundaries' metadata JSON for one boundary set (the API's field names)."""
    stem = f"geoBoundaries-{iso}-{level}"
    return {
        "boundaryID": f"{iso}-{level}-45538396",
        "boundaryName": "Ukraine",
        "boundaryISO": iso,
        "boundaryYearRepresented": "2022",
        "boundaryType": level,
        "boundaryCanonical": "Hromada",
        "boundarySource": "OCHA ROSEA, State Scientific and Production Enterprise Kartographia",
        "boundaryLicense": "Creative Commons Attribution 3.0 Intergovernmental Organisations "
        "(CC BY 3.0 IGO)",
        "licenseDetail": "",
        "buildDate": "Dec 12, 2023",
        "admUnitCount": "5",
        "staticDownloadLink": f"{files_url}/{stem}-all.zip",
        "gjDownloadURL": f"{files_url}/{stem}.geojson",
        "tjDownloadURL": f"{files_url}/{stem}.topojson",
        "imagePreview": f"{files_url}/{stem}-PREVIEW.png",
        "simplifiedGeometryGeoJSON": f"{files_url}/{stem}_simplified.geojson",
    }


# --- the server ----------------------------------------------------------------------------
@dataclass
class Request:
    method: str
    path: str
    range: str | None
    sent: int


def free_port() -> int:
    """A port nothing listens on (for the unreachable-service case)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BuildingServer:
    """The three services; ``root`` holds ``<bucket>/...`` objects and ``gb/<files>``."""

    def __init__(self, root: Path, elements: list[dict[str, Any]] | None = None):
        self.root = root
        self.elements = elements or []
        self.log: list[Request] = []
        self.faults: dict[str, list[Any]] = defaultdict(list)
        self.page_size = 1000
        self.ignore_range = False
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_port}"

    @property
    def osm_url(self) -> str:
        return f"{self.base}/api/interpreter"

    @property
    def overture_url(self) -> str:
        return f"{self.base}/s3/{BUCKET}"

    @property
    def geoboundaries_url(self) -> str:
        return f"{self.base}/gb/api/current/gbOpen"

    def __enter__(self) -> BuildingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def record(self, method: str, path: str, rng: str | None, sent: int) -> None:
        with self._lock:
            self.log.append(Request(method, path, rng, sent))

    def fault(self, path: str) -> Any:
        with self._lock:
            for prefix, queue in self.faults.items():
                if path.startswith(prefix) and queue:
                    return queue.pop(0)
        return None

    def sent(self, prefix: str = "/") -> int:
        return sum(r.sent for r in self.log if r.path.startswith(prefix))

    def calls(self, prefix: str = "/") -> list[Request]:
        return [r for r in self.log if r.path.startswith(prefix)]

    # answers ---------------------------------------------------------------------------
    def overpass(self, query: str) -> dict[str, Any]:
        m = re.search(r"\(([-\d.]+),([-\d.]+),([-\d.]+),([-\d.]+)\)", query)
        if m is None:
            raise ValueError(f"no bbox filter in {query!r}")
        s, w, n, e = map(float, m.groups())
        box = shapely.box(w, s, e, n)
        return {
            "version": 0.6,
            "generator": "Overpass API 0.7.62.1 084b4234",
            "osm3s": {
                "timestamp_osm_base": OSM_BASE,
                "copyright": "The data included in this document is from www.openstreetmap.org."
                " The data is made available under ODbL.",
            },
            "elements": [el for el in self.elements if _in_box(el, box)],
        }

    def listing(self, bucket: str, params: dict[str, str]) -> bytes:
        prefix, delimiter = params.get("prefix", ""), params.get("delimiter")
        folder = self.root / bucket
        keys = sorted(
            p.relative_to(folder).as_posix()
            for p in folder.rglob("*")
            if p.is_file() and p.relative_to(folder).as_posix().startswith(prefix)
        )
        common: list[str] = []
        if delimiter:  # S3 rolls keys up to the first delimiter after the prefix
            rests = [k[len(prefix) :] for k in keys]
            common = sorted(
                {prefix + r.split(delimiter)[0] + delimiter for r in rests if delimiter in r}
            )
            keys = [k for k, r in zip(keys, rests, strict=True) if delimiter not in r]
        start = int(params.get("continuation-token", "0"))
        page = keys[start : start + self.page_size]
        more = start + self.page_size < len(keys)
        return _list_xml(bucket, prefix, delimiter, page, common, folder, more, start + len(page))


def _list_xml(bucket, prefix, delimiter, keys, common, folder, more, nxt) -> bytes:
    contents = "".join(
        f"<Contents><Key>{escape(k)}</Key><LastModified>2024-11-13T00:00:00.000Z</LastModified>"
        f'<ETag>"{uuid.UUID(int=len(k))}"</ETag><Size>{(folder / k).stat().st_size}</Size>'
        "<StorageClass>STANDARD</StorageClass></Contents>"
        for k in keys
    )
    prefixes = "".join(
        f"<CommonPrefixes><Prefix>{escape(p)}</Prefix></CommonPrefixes>" for p in common
    )
    token = f"<NextContinuationToken>{nxt}</NextContinuationToken>" if more else ""
    text = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<ListBucketResult xmlns="{S3_NS}"><Name>{bucket}</Name><Prefix>{escape(prefix)}</Prefix>'
        f"<KeyCount>{len(keys) + len(common)}</KeyCount><MaxKeys>1000</MaxKeys>"
        + (f"<Delimiter>{delimiter}</Delimiter>" if delimiter else "")
        + f"<IsTruncated>{'true' if more else 'false'}</IsTruncated>{token}{contents}{prefixes}"
        "</ListBucketResult>"
    )
    return text.encode()


class Handler(BaseHTTPRequestHandler):
    """The three services' answers; ``state`` is the :class:`BuildingServer` (set per server)."""

    state: BuildingServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: bytes, kind: str, headers: dict | None = None) -> None:
        rng = self.headers.get("Range")
        fault = self.state.fault(urlsplit(self.path).path)
        if fault == "drop":
            self.state.record(self.command, self.path, rng, 0)
            self.close_connection = True
            return
        if fault == "garbage":
            status, body, kind = 200, b"<html><body>502 Bad Gateway</body></html>", "text/html"
        elif isinstance(fault, tuple | int):
            code, extra = (fault, {}) if isinstance(fault, int) else fault
            status, body, kind, headers = code, b"rate limited or broken", "text/plain", extra
        length = len(body)
        if fault == "truncate":
            body = body[: len(body) // 2]
            self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(length))
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.state.record(self.command, self.path, rng, len(body) if self.command != "HEAD" else 0)

    def _route(self, body: bytes = b"") -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        if path == "/api/interpreter":
            form = parse_qs(body.decode()) if body else parse_qs(parts.query)
            answer = self.state.overpass(form["data"][0])
            return self._send(200, json.dumps(answer).encode(), "application/json")
        if path.startswith("/s3/"):
            return self._s3(path[len("/s3/") :], parts.query)
        if path.startswith("/gb/api/current/gbOpen/"):
            iso, level = path[len("/gb/api/current/gbOpen/") :].strip("/").split("/")
            if not (self.state.root / "gb" / f"geoBoundaries-{iso}-{level}.geojson").exists():
                return self._send(404, b"Not Found", "text/html")
            meta = boundary_metadata(f"{self.state.base}/gb/files", iso, level)
            return self._send(200, json.dumps(meta).encode(), "application/json")
        if path.startswith("/gb/files/"):
            return self._object(self.state.root / "gb" / path[len("/gb/files/") :])
        self._send(404, b"not found", "text/plain")

    def _s3(self, rest: str, query: str) -> None:
        bucket, _, key = rest.partition("/")
        if not key:
            params = {k: v[0] for k, v in parse_qs(query).items()}
            return self._send(200, self.state.listing(bucket, params), "application/xml")
        self._object(self.state.root / bucket / key)

    def _object(self, path: Path) -> None:
        if not path.is_file():
            return self._send(404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")
        data = path.read_bytes()
        rng = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if rng is None or self.state.ignore_range:
            return self._send(200, data, "application/octet-stream")
        start = int(rng.group(1))
        end = min(int(rng.group(2)) if rng.group(2) else len(data) - 1, len(data) - 1)
        self._send(
            206,
            data[start : end + 1],
            "application/octet-stream",
            {"Content-Range": f"bytes {start}-{end}/{len(data)}", "Accept-Ranges": "bytes"},
        )

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._route()

    def do_HEAD(self) -> None:  # noqa: N802
        self._route()

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        self._route(self.rfile.read(length))


def _handler(server: BuildingServer) -> type[BaseHTTPRequestHandler]:
    return type("BoundHandler", (Handler,), {"state": server})


# --- one test world: the town, its release, its districts, and a T map -------------------------
@dataclass
class World:
    root: Path
    frame: gpd.GeoDataFrame
    elements: list[dict[str, Any]]
    parquet: list[Path]
    t_map: Path
    prob_map: Path


def build_world(root: Path, files: int = 2, group_rows: int = 200) -> World:
    """Everything the servers serve, and the two maps, under ``root``."""
    frame = town()
    parquet = write_overture(root, frame, files=files, group_rows=group_rows)
    (root / "gb").mkdir(parents=True, exist_ok=True)
    doc = json.dumps(districts_geojson(frame))
    for suffix in ("", "_simplified"):
        (root / "gb" / f"geoBoundaries-UKR-ADM3{suffix}.geojson").write_text(doc)
    (root / "maps").mkdir(exist_ok=True)
    t_map = write_map(root / "maps" / "testtown_pwtt.tif", "t")
    prob_map = write_map(root / "maps" / "testtown_damage_prob.tif", "prob")
    return World(root, frame, overpass_elements(frame), parquet, t_map, prob_map)
