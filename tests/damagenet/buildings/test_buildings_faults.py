"""Faults of the footprint and district services, through the command line: one line naming
the service and address, exit 1, a retry where it helps, nothing that looks cached."""

from __future__ import annotations

import json

import geopandas as gpd
import pytest
import shapely
from support.building_servers import BuildingServer, build_world, free_port

from damagenet.buildings.sources import cache, http
from damagenet.cli import main


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("world"))


@pytest.fixture
def server(world):
    with BuildingServer(world.root, world.elements) as srv:
        yield srv


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    """Backoff waits recorded, not slept: the retries are tested, not the clock."""
    waits: list[float] = []
    monkeypatch.setattr(http.time, "sleep", waits.append)
    return waits


def cli(world, server, tmp_path, buildings="osm", *extra, retries="2", capsys=None):
    args = [
        "-q",
        "aggregate",
        "--map",
        str(world.t_map),
        "--buildings",
        buildings,
        "--out",
        str(tmp_path / "out" / "agg.gpkg"),
        "--data-dir",
        str(tmp_path / "data"),
        "--osm-url",
        server.osm_url if server else f"http://127.0.0.1:{free_port()}/api/interpreter",
        "--retries",
        retries,
        *extra,
    ]
    if server is not None:
        args += ["--overture-url", server.overture_url]
        args += ["--geoboundaries-url", server.geoboundaries_url]
    code = main(args)
    err = capsys.readouterr().err if capsys else ""
    return code, err


def nothing_cached(tmp_path) -> bool:
    data = tmp_path / "data"
    return not [p for p in data.rglob("*") if p.is_file()] if data.exists() else True


def no_outputs(tmp_path) -> bool:
    out = tmp_path / "out"
    return not out.exists() or not list(out.iterdir())


def test_unreachable_service(world, tmp_path, capsys, no_sleep):
    code, err = cli(world, None, tmp_path, capsys=capsys)
    assert code == 1
    line = err.strip().splitlines()[-1]
    assert "Overpass API" in line and "127.0.0.1" in line and "unreachable" in line
    assert "failed 2 times" in line and no_sleep == [1.0]
    assert nothing_cached(tmp_path) and no_outputs(tmp_path)


def test_rate_limit_is_waited_out(world, server, tmp_path, capsys, no_sleep):
    server.faults["/api/interpreter"] = [(429, {"Retry-After": "7"})]
    code, _ = cli(world, server, tmp_path, capsys=capsys)
    assert code == 0 and no_sleep == [7.0]  # the server's Retry-After, not the backoff
    assert len(server.calls("/api/interpreter")) == 2


def test_rate_limit_that_lasts(world, server, tmp_path, capsys):
    server.faults["/api/interpreter"] = [(429, {"Retry-After": "1"})] * 3
    code, err = cli(world, server, tmp_path, capsys=capsys)
    assert code == 1 and "HTTP 429" in err and server.osm_url in err
    assert nothing_cached(tmp_path)


def test_server_errors_are_retried_with_backoff(world, server, tmp_path, capsys, no_sleep):
    server.faults["/s3/"] = [503, 502]
    code, _ = cli(world, server, tmp_path, "overture", retries="3", capsys=capsys)
    assert code == 0 and no_sleep == [1.0, 2.0]
    server.faults["/s3/"] = [500] * 3
    code, err = cli(world, server, tmp_path / "b", "overture", retries="3", capsys=capsys)
    assert code == 1 and "Overture Maps (S3)" in err and "HTTP 500" in err
    assert nothing_cached(tmp_path / "b")


def test_empty_answer(world, tmp_path, capsys):
    with BuildingServer(world.root, []) as server:
        code, err = cli(world, server, tmp_path, capsys=capsys)
    assert code == 1 and "returned no buildings in the box" in err
    assert nothing_cached(tmp_path) and no_outputs(tmp_path)


def test_truncated_download(world, server, tmp_path, capsys):
    server.faults["/gb/files/"] = ["truncate", "truncate"]
    code, err = cli(world, server, tmp_path, "osm", "--zones", "geoboundaries", capsys=capsys)
    assert code == 1 and "geoBoundaries" in err
    assert "download cut short" in err
    assert not list((tmp_path / "data").rglob("geoboundaries-*"))
    server.faults["/gb/files/"] = ["truncate"]  # once: the retry gets the whole file
    code, _ = cli(world, server, tmp_path, "osm", "--zones", "geoboundaries", capsys=capsys)
    assert code == 0 and len(list((tmp_path / "data").rglob("geoboundaries-*"))) == 2


def test_dropped_connection_is_retried(world, server, tmp_path, capsys):
    server.faults["/api/interpreter"] = ["drop"]
    code, _ = cli(world, server, tmp_path, capsys=capsys)
    assert code == 0


def test_invalid_json(world, server, tmp_path, capsys):
    server.faults["/api/interpreter"] = ["garbage", "garbage"]
    code, err = cli(world, server, tmp_path, capsys=capsys)
    assert code == 1 and "not JSON" in err and "502 Bad Gateway" in err
    assert nothing_cached(tmp_path)


def test_invalid_geojson(world, server, tmp_path, capsys):
    bad = world.root / "gb" / "geoBoundaries-UKR-ADM2.geojson"
    bad.write_text(json.dumps({"type": "Feature", "geometry": None, "properties": {}}))
    code, err = cli(
        world,
        server,
        tmp_path,
        "osm",
        "--zones",
        "geoboundaries",
        "--districts-level",
        "ADM2",
        capsys=capsys,
    )
    assert code == 1 and "not a GeoJSON FeatureCollection" in err and "ADM2" in err
    assert not list((tmp_path / "data").rglob("geoboundaries-*"))


def test_unknown_country_or_level(world, server, tmp_path, capsys):
    code, err = cli(
        world, server, tmp_path, "osm", "--zones", "geoboundaries", "--districts-iso", "XXX",
        capsys=capsys,
    )  # fmt: skip
    assert code == 1 and "geoBoundaries has no ADM3 for XXX" in err


def test_mirror_without_range_requests(world, server, tmp_path, capsys):
    server.ignore_range = True
    code, err = cli(world, server, tmp_path, "overture", capsys=capsys)
    assert code == 1 and "ignores HTTP Range requests" in err
    assert nothing_cached(tmp_path)


def test_footprints_outside_the_map(world, tmp_path, capsys):
    far = gpd.GeoDataFrame(
        {"osm_id": ["w1", "w2"]},
        geometry=[shapely.box(35.0, 48.0, 35.0001, 48.0001), shapely.box(35.1, 48, 35.1001, 48.01)],
        crs=4326,
    )
    far.to_file(tmp_path / "far.gpkg")
    code, err = cli(world, None, tmp_path, str(tmp_path / "far.gpkg"), capsys=capsys)
    assert code == 1 and "far.gpkg" in err and "no footprints meet the map" in err
    assert no_outputs(tmp_path)


def test_interrupted_fetch_leaves_nothing_that_looks_cached(tmp_path):
    def fetch(tmp):
        tmp.write_bytes(b"half a file")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.cached(tmp_path, "osm", ".parquet", {"q": 1}, fetch)
    assert list(tmp_path.iterdir()) == []
    # a data file whose provenance never landed is fetched again, not trusted
    (tmp_path / f"osm-{cache.key_of({'q': 1})}.parquet").write_bytes(b"stale")
    entry = cache.cached(
        tmp_path, "osm", ".parquet", {"q": 1}, lambda tmp: tmp.write_bytes(b"new") and {}
    )
    assert entry.path.read_bytes() == b"new" and not entry.from_cache
