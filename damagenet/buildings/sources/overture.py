"""Overture Maps buildings for a box, read from the published GeoParquet with row-group pruning.

Overture publishes each release as ``release/<version>/theme=buildings/type=building/*.parquet``
in public S3 (and Azure) buckets. This lists that prefix through the S3 ``ListObjectsV2`` API
(plain HTTPS, no account), reads each file's footer with HTTP range requests, and then only the
row groups whose ``bbox`` statistics meet the box (:mod:`.geoparquet`), so a city costs megabytes
of a release that is hundreds of gigabytes. The base URL is the bucket, optionally with
``/release/<version>``; without a version the newest release listed is used. Each file's
extent is kept per release (:class:`FileIndex`), so only the first AOI of a release pays for
every file's footer.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from contract.atomic import write_text_atomic
from damagenet.buildings.footprints import flat_frame
from damagenet.buildings.sources.cache import key_of
from damagenet.buildings.sources.geoparquet import (
    Box,
    boxes_meet,
    covering,
    file_extent,
    row_groups_in,
    rows_in,
)
from damagenet.buildings.sources.http import Client, RangeFile, ServiceError, checked_content

SERVICE = "Overture Maps (S3)"
PREFIX = "theme=buildings/type=building/"
S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
THEME_LICENCE = "ODbL-1.0"
#: licences of the datasets Overture's buildings come from, for releases whose ``sources``
#: items carry no ``license`` of their own (the field is optional in Overture's schema)
SOURCE_LICENCES = {
    "OpenStreetMap": "ODbL-1.0",
    "Microsoft ML Buildings": "ODbL-1.0",
    "Google Open Buildings": "CC-BY-4.0 / ODbL-1.0",
    "Esri Community Maps": "CC-BY-4.0",
    "Instituto Geográfico Nacional (España)": "CC-BY-4.0",
}
ATTRIBUTION = "© OpenStreetMap contributors, Overture Maps Foundation (https://overturemaps.org)"
THREADS = 8


def _split(url: str) -> tuple[str, str | None]:
    """Bucket URL and release version (None: find the newest) of ``--overture-url``."""
    url = url.rstrip("/")
    m = re.search(r"/release(?:/([^/]+))?$", url)
    if m:
        return url[: m.start()], m.group(1)
    return url, None


def list_objects(
    client: Client, bucket: str, prefix: str, delimiter: str | None = None
) -> tuple[list[tuple[str, int]], list[str]]:
    """(keys with sizes, common prefixes) under ``prefix``, following continuation tokens."""
    objects: list[tuple[str, int]] = []
    prefixes: list[str] = []
    token = None
    while True:
        params = {"list-type": "2", "prefix": prefix}
        if delimiter:
            params["delimiter"] = delimiter
        if token:
            params["continuation-token"] = token
        root = client.call("GET", bucket + "/", lambda r: _xml(bucket, r), params=params)
        for c in root.iter(f"{S3_NS}Contents"):
            objects.append((c.findtext(f"{S3_NS}Key", ""), int(c.findtext(f"{S3_NS}Size", "0"))))
        prefixes += [p.findtext(f"{S3_NS}Prefix", "") for p in root.iter(f"{S3_NS}CommonPrefixes")]
        token = root.findtext(f"{S3_NS}NextContinuationToken")
        if root.findtext(f"{S3_NS}IsTruncated") != "true" or not token:
            return objects, prefixes


def _xml(bucket: str, resp: Any) -> ET.Element:
    try:
        return ET.fromstring(checked_content(bucket, resp))
    except ET.ParseError as exc:
        raise ServiceError(
            f"{SERVICE}: {bucket} answered a listing that is not S3 XML ({exc})"
        ) from exc


def release_of(client: Client, bucket: str, version: str | None) -> str:
    """The release to read: ``version`` or the newest under ``release/``."""
    if version:
        return version
    _, prefixes = list_objects(client, bucket, "release/", delimiter="/")
    versions = sorted(p.rstrip("/").split("/")[-1] for p in prefixes)
    if not versions:
        raise ServiceError(f"{SERVICE}: {bucket} lists no release/<version>/ folders")
    return versions[-1]


@dataclass
class FileRead:
    """What one file gave: its matching rows, row groups read and in it, and its extent."""

    table: pa.Table | None
    groups_read: int
    groups_total: int
    extent: Box | None


def _read_file(client: Client, url: str, size: int, box: Box) -> FileRead:
    """Matching rows of one file: its footer, then only the row groups that meet ``box``."""
    # pre_buffer: the column chunks of the row groups read are fetched in coalesced ranges
    pf = pq.ParquetFile(RangeFile(client, url, size), pre_buffer=True)
    cov = covering(pf)
    if cov is None:
        raise ServiceError(f"{SERVICE}: {url} has no bbox column: not Overture's layout")
    groups = row_groups_in(pf, box, cov)
    total, extent = pf.metadata.num_row_groups, file_extent(pf, cov)
    if not groups:
        return FileRead(None, 0, total, extent)
    table = rows_in(pf.read_row_groups(groups), box, cov)
    return FileRead(table if table.num_rows else None, len(groups), total, extent)


class FileIndex:
    """Each file's extent in one release, kept under ``<data>/overture/``: the first AOI of a
    release reads every file's footer, later AOIs only those of files that meet their box."""

    def __init__(self, folder: Path, bucket: str, release: str) -> None:
        self.path = folder / f"overture-{release}-{key_of({'bucket': bucket})}-files.json"
        self.bucket, self.release = bucket, release
        self.files: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            try:
                self.files = json.loads(self.path.read_text(encoding="utf-8"))["files"]
            except (OSError, ValueError, KeyError):
                self.files = {}  # unreadable: rebuilt from the footers

    def misses(self, key: str, size: int, box: Box) -> bool:
        """Whether the file is known (same size) to lie wholly outside ``box``."""
        known = self.files.get(key)
        if known is None or known["size"] != size or known["extent"] is None:
            return False
        return not boxes_meet(tuple(known["extent"]), box)

    def add(self, key: str, size: int, extent: Box | None) -> None:
        self.files[key] = {"size": size, "extent": list(extent) if extent else None}

    def save(self) -> None:
        doc = {"bucket": self.bucket, "release": self.release, "files": self.files}
        write_text_atomic(self.path, json.dumps(doc, indent=1, sort_keys=True) + "\n")


def fetch(box: Box, url: str, dest: Path, client: Client, index_dir: Path) -> dict[str, Any]:
    """Read the buildings in ``box`` of the release at ``url``; write GeoParquet ``dest``."""
    bucket, version = _split(url)
    release = release_of(client, bucket, version)
    prefix = f"release/{release}/{PREFIX}"
    objects = [(k, s) for k, s in list_objects(client, bucket, prefix)[0] if k.endswith(".parquet")]
    if not objects:
        raise ServiceError(f"{SERVICE}: {bucket}/{prefix} holds no Parquet files")
    index = FileIndex(index_dir, bucket, release)
    todo = [(k, s) for k, s in objects if not index.misses(k, s, box)]
    with ThreadPoolExecutor(THREADS) as pool:
        parts = list(pool.map(lambda o: _read_file(client, f"{bucket}/{o[0]}", o[1], box), todo))
    for (key, size), part in zip(todo, parts, strict=True):
        index.add(key, size, part.extent)
    index.save()
    tables = [p.table for p in parts if p.table is not None]
    if not tables:
        raise ServiceError(
            f"{SERVICE}: release {release} has no buildings in the box {box} (west, south, "
            "east, north); check the AOI, or try --buildings osm"
        )
    table = pa.concat_tables(tables, promote_options="default")
    licences = source_licences(table)
    frame = to_frame(table)
    frame.to_parquet(dest, index=False)
    return {
        "source": "Overture Maps buildings",
        "url": f"{bucket}/{prefix}",
        "release": release,
        "bbox": list(box),
        "licence": THEME_LICENCE,
        "source_datasets": licences,
        "attribution": ATTRIBUTION,
        "features": len(frame),
        "files": len(objects),
        "files_read": len(todo),
        "row_groups_read": sum(p.groups_read for p in parts),
        "row_groups_total": sum(p.groups_total for p in parts),
        "requests": client.requests_sent,
        "bytes_read": client.bytes_read,
        "bytes_total": sum(s for _, s in objects),
    }


def source_licences(table: pa.Table) -> dict[str, dict[str, Any]]:
    """Per dataset named in ``sources``: how many buildings cite it and under which licence
    (the items' own ``license`` where the release records it, else the dataset's known one)."""
    count: Counter[str] = Counter()
    named: dict[str, set[str]] = {}
    for items in table.column("sources").to_pylist() if "sources" in table.column_names else []:
        for d in {s.get("dataset") for s in items or [] if s.get("dataset")}:
            count[d] += 1
        for s in items or []:
            if s.get("dataset") and s.get("license"):
                named.setdefault(s["dataset"], set()).add(s["license"])
    return {
        d: {
            "buildings": n,
            "licence": " / ".join(sorted(named[d]))
            if d in named
            else SOURCE_LICENCES.get(d, "unknown: see https://docs.overturemaps.org/attribution"),
        }
        for d, n in sorted(count.items())
    }


def to_frame(table: pa.Table) -> gpd.GeoDataFrame:
    """Overture rows as flat columns: nested ones as JSON text, names.primary and the datasets
    of ``sources`` in columns of their own, so every attribute reaches a GeoPackage and a CSV."""
    geom = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    frame = table.drop_columns(["geometry", "bbox"]).to_pandas()
    if "names" in frame:
        frame.insert(1, "name", [n.get("primary") if n else None for n in frame["names"]])
    if "sources" in frame:
        frame["sources_datasets"] = [
            ";".join(sorted({s["dataset"] for s in v if s.get("dataset")})) if v is not None else ""
            for v in frame["sources"]
        ]
    frame = flat_frame(frame)
    order = np.argsort(frame["id"].to_numpy(dtype=str), kind="stable")
    gdf = gpd.GeoDataFrame(frame, geometry=geom, crs="EPSG:4326")
    return gdf.iloc[order].reset_index(drop=True)
