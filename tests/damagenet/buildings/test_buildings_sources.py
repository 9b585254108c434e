"""Footprints and districts fetched for the map's box, cached, with their licences recorded.

Every service is a local server in the real layout (:mod:`building_servers`): an Overpass
interpreter, Overture's S3 bucket with GeoParquet files, the geoBoundaries API.
"""

from __future__ import annotations

import json
import sqlite3

import geopandas as gpd
import pandas as pd
import pyarrow.parquet as pq
import pytest
import shapely
from support.building_servers import (
    BUILDING_PREFIX,
    OSM_BASE,
    RELEASE,
    BuildingServer,
    build_world,
    central,
    centre_utm,
    row_group_spans,
    write_map,
)

from damagenet.buildings.aggregate import AggregateOptions, aggregate
from damagenet.buildings.fetch import SourceOptions


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("world"))


@pytest.fixture
def server(world):
    with BuildingServer(world.root, world.elements) as srv:
        yield srv


def options(server, data, **kw) -> AggregateOptions:
    sources = SourceOptions(
        data_dir=data,
        osm_url=server.osm_url,
        overture_url=server.overture_url,
        geoboundaries_url=server.geoboundaries_url,
        backoff_s=0.01,
    )
    return AggregateOptions(sources=sources, progress=False, **kw)


def run(world, server, tmp_path, buildings, name="out", **kw):
    out = tmp_path / name / "agg.gpkg"
    summary = aggregate(world.t_map, buildings, out, options(server, tmp_path / "data", **kw))
    return summary, gpd.read_file(out, layer="buildings"), out


def group_box(path, g) -> tuple[float, float, float, float]:
    """A row group's bbox statistics: min xmin, max xmax, min ymin, max ymax."""
    rg = pq.ParquetFile(path).metadata.row_group(g)
    cols = {rg.column(i).path_in_schema: rg.column(i).statistics for i in range(rg.num_columns)}
    return (
        cols["bbox.xmin"].min,
        cols["bbox.xmax"].max,
        cols["bbox.ymin"].min,
        cols["bbox.ymax"].max,
    )


def layer_metadata(gpkg, layer="buildings") -> tuple[str, str]:
    """The layer's description and its gpkg_metadata XML."""
    with sqlite3.connect(gpkg) as con:
        (description,) = con.execute(
            "SELECT description FROM gpkg_contents WHERE table_name = ?", (layer,)
        ).fetchone()
        xml = " ".join(m for (m,) in con.execute("SELECT metadata FROM gpkg_metadata").fetchall())
    return description, xml


def test_osm_fetched_once_then_read_from_the_cache(world, server, tmp_path):
    summary, b, out = run(world, server, tmp_path, "osm")
    posts = server.calls("/api/interpreter")
    assert len(posts) == 1 and posts[0].method == "POST"
    cache = tmp_path / "data" / "buildings" / "testtown"
    (data,) = cache.glob("osm-*.parquet")
    meta = json.loads(data.with_suffix(".json").read_text())
    assert meta["release"] == OSM_BASE and meta["licence"] == "ODbL-1.0"
    assert "out geom" in meta["overpass_query"] and meta["query"]["url"] == server.osm_url
    assert "OpenStreetMap contributors" in meta["attribution"]
    # only what the box holds was asked for and sent
    cached = gpd.read_parquet(data)
    assert len(cached) < len(world.frame) / 2
    assert summary["sources"]["buildings"]["licence"] == "ODbL-1.0"
    description, xml = layer_metadata(out)
    assert "ODbL-1.0" in description and "OpenStreetMap contributors" in xml
    again, b2, _ = run(world, server, tmp_path, "osm", "again")
    assert len(server.calls("/api/interpreter")) == 1  # the server saw no second request
    assert again["sources"]["buildings"]["from_cache"] is True
    pd.testing.assert_frame_equal(b.drop(columns="geometry"), b2.drop(columns="geometry"))


def test_osm_ways_relations_and_tags(world, server, tmp_path):
    _, b, _ = run(world, server, tmp_path, "osm")
    ids = set(b.building_id)
    rel, open_way, no = (world.frame.n.iloc[central(world.frame, k)] for k in range(3))
    assert "relation/77" in ids
    assert f"way/{1000 + open_way}" not in ids and f"way/{1000 + no}" not in ids
    school = b[b.building_id == "relation/77"].iloc[0]
    outer = world.frame.to_crs(b.crs).geometry.iloc[central(world.frame)]
    assert school.area_m2 == pytest.approx(outer.area * (1 - 0.4**2), rel=1e-3)
    assert school["name"] == "School 1" and json.loads(school.tags)["building"] == "school"
    named = b[b.building_id == "way/1005"]
    if len(named):  # a tagged house inside the box: every tag kept, ':' as '_'
        assert named.iloc[0].addr_housenumber == "5"
        assert json.loads(named.iloc[0].tags)["roof:shape"] == "flat"


def test_overture_reads_only_the_row_groups_that_meet_the_box(world, server, tmp_path):
    summary, b, out = run(world, server, tmp_path, "overture")
    listing = server.calls("/s3/overturemaps-us-west-2/?")
    assert any("delimiter" in r.path for r in listing)  # the newest release was looked up
    meta = summary["sources"]["buildings"]
    assert meta["release"] == RELEASE
    assert 0 < meta["row_groups_read"] < meta["row_groups_total"]
    for path in world.parquet:
        key = "/s3/overturemaps-us-west-2/" + BUILDING_PREFIX + path.name
        reads = server.calls(key)
        assert reads and all(r.range for r in reads)  # range reads only
        assert sum(r.sent for r in reads) < path.stat().st_size
        footer_start = path.stat().st_size - 65536
        spans = [tuple(map(int, r.range[6:].split("-"))) for r in reads]
        spans = [(a, z + 1) for a, z in spans if a < footer_start]
        west, south, east, north = meta["bbox"]
        skipped = 0
        for g, (start, end) in enumerate(row_group_spans(path)):
            xmin, xmax, ymin, ymax = group_box(path, g)
            if (xmin > east or xmax < west or ymin > north or ymax < south) and (
                end < footer_start
            ):
                skipped += 1  # a group beside the box: none of its bytes asked for
                assert not any(a < end and start < z for a, z in spans), (path.name, g)
        assert skipped > 0
    assert meta["bytes_read"] < meta["bytes_total"]


def test_overture_attributes_ids_and_licences(world, server, tmp_path):
    summary, b, out = run(world, server, tmp_path, "overture")
    assert summary["id_column"] == "id" and b.building_id.str.startswith("08b2").all()
    for col in ("version", "sources", "names", "height", "class", "subtype", "num_floors"):
        assert col in b.columns, col
    assert "bbox" not in b.columns  # the covering column is the reader's, not an attribute
    src = json.loads(b.sources.iloc[0])
    assert {"dataset", "record_id", "update_time", "license"} <= set(src[0])
    named = b[b.names.notna()].iloc[0]
    assert json.loads(named.names)["primary"] == named["name"]
    datasets = summary["sources"]["buildings"]["source_datasets"]
    assert datasets["OpenStreetMap"]["licence"] == "ODbL-1.0"  # from the items' license field
    assert datasets["Microsoft ML Buildings"]["licence"] == "ODbL-1.0"  # known, not recorded
    assert (
        sum(d["buildings"] for d in datasets.values())
        == summary["sources"]["buildings"]["features"]
    )
    description, xml = layer_metadata(out)
    assert "Overture Maps Foundation" in description and "MICROSOFT_ML_BUILDINGS" in xml
    csv = pd.read_csv(out.with_name("agg_buildings.csv"))
    assert list(csv.building_id) == list(b.building_id) and "sources_datasets" in csv
    n = len(server.calls("/s3/"))
    run(world, server, tmp_path, "overture", "again")
    assert len(server.calls("/s3/")) == n  # read from the cache


def test_overture_listing_pages_and_pinned_release(world, server, tmp_path):
    server.page_size = 1  # ListObjectsV2 answers one key a page, with continuation tokens
    summary, b, _ = run(world, server, tmp_path, "overture")
    tokens = [r for r in server.calls("/s3/overturemaps-us-west-2/?") if "continuation" in r.path]
    assert len(tokens) == len(world.parquet) - 1
    assert summary["sources"]["buildings"]["files"] == len(world.parquet)
    before = len(server.log)
    opts = options(server, tmp_path / "pinned")
    opts.sources.overture_url = f"{server.overture_url}/release/{RELEASE}"
    aggregate(world.t_map, "overture", tmp_path / "p" / "agg.gpkg", opts)
    assert not any("delimiter" in r.path for r in server.log[before:])  # no release lookup


def test_geoboundaries_districts_cached_and_read_where_they_meet_the_map(world, server, tmp_path):
    summary, b, out = run(world, server, tmp_path, "overture", zones="geoboundaries")
    zones = gpd.read_file(out, layer="zones")
    assert len(zones) == 4 and "far" not in set(zones.zone_id)  # the far unit is not read
    assert set(zones.zone_name) == {
        "Північна-Захід",
        "Північна-Схід",
        "Південна-Захід",
        "Південна-Схід",
    }
    assert zones.buildings.sum() == (b.zone_id.notna()).sum()
    meta = summary["sources"]["zones"]
    assert meta["licence"].startswith("Creative Commons Attribution 3.0")
    assert meta["release"] == "Dec 12, 2023" and meta["query"]["level"] == "ADM3"
    cached = list((tmp_path / "data" / "districts").glob("geoboundaries-UKR-ADM3-*"))
    assert sorted(p.suffix for p in cached) == [".geojson", ".json"]
    description, _ = layer_metadata(out, "zones")
    assert "geoBoundaries" in description
    n = len(server.calls("/gb/"))
    assert n == 2  # the metadata, then the GeoJSON
    run(world, server, tmp_path, "overture", "again", zones="geoboundaries")
    assert len(server.calls("/gb/")) == n


def test_simplified_districts_and_other_levels_are_cached_apart(world, server, tmp_path):
    opts = options(server, tmp_path / "data", zones="geoboundaries")
    opts.sources.districts_detail = "simplified"
    aggregate(world.t_map, "osm", tmp_path / "s" / "agg.gpkg", opts)
    (geojson,) = server.calls("/gb/files/")
    assert geojson.path.endswith("_simplified.geojson")
    opts.sources.districts_detail = "full"
    aggregate(world.t_map, "osm", tmp_path / "f" / "agg.gpkg", opts)
    assert len(list((tmp_path / "data" / "districts").glob("*.geojson"))) == 2


def test_cached_footprints_keep_their_box(world, server, tmp_path):
    run(world, server, tmp_path, "osm")
    (data,) = (tmp_path / "data" / "buildings" / "testtown").glob("osm-*.parquet")
    meta = json.loads(data.with_suffix(".json").read_text())
    box = shapely.box(*meta["query"]["bbox"])
    assert gpd.read_parquet(data).geometry.intersects(box).all()


def test_cache_is_filed_under_the_aoi_given(world, server, tmp_path):
    opts = options(server, tmp_path / "data")
    opts.sources.aoi = "bucha"
    aggregate(world.prob_map, "osm", tmp_path / "o" / "agg.gpkg", opts)
    assert len(list((tmp_path / "data" / "buildings" / "bucha").glob("osm-*"))) == 2


def test_overture_file_extents_spare_later_aois_the_footers(world, server, tmp_path):
    run(world, server, tmp_path, "overture")
    (index,) = (tmp_path / "data" / "overture").glob(f"overture-{RELEASE}-*-files.json")
    extents = json.loads(index.read_text())["files"]
    assert len(extents) == len(world.parquet)
    # a second AOI in the town's north-east corner: only the file covering it is opened
    cx, cy = centre_utm()
    corner = write_map(tmp_path / "corner_pwtt.tif", "t", "corner", (cx + 1500, cy + 1900), 30)
    before = len(server.log)
    aggregate(corner, "overture", tmp_path / "c" / "agg.gpkg", options(server, tmp_path / "data"))
    opened = {r.path.rsplit("/", 1)[-1] for r in server.log[before:] if r.range}
    assert len(opened) == 1
    (meta,) = (tmp_path / "data" / "buildings" / "corner").glob("overture-*.json")
    assert json.loads(meta.read_text())["files_read"] == 1
