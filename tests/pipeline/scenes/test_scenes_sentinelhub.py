"""The Sentinel Hub source through the real client, HTTP mocked at the transport (issue 4)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import responses
from rasterio.io import MemoryFile
from sentinelhub import SentinelHubDownloadClient
from support.scene_checks import assert_scene_product

from pipeline.aoi import load_aoi
from pipeline.errors import PipelineError
from pipeline.grid import aoi_grid
from pipeline.scenes import acquire_scene as acquire_any
from pipeline.scenes import sentinelhub_source as shs
from pipeline.scenes.sentinelhub_source import SentinelHubOptions, tiles


def acquire_scene(*args, **kw):
    """Every test here asks the Sentinel Hub source (the library's default is ``stac``)."""
    return acquire_any(*args, source="sentinelhub", **kw)


BASE = shs.CDSE_BASE_URL
TOKEN = shs.CDSE_TOKEN_URL
PROCESS = f"{BASE}/api/v1/process"
CATALOG = f"{BASE}/api/v1/catalog/1.0.0/search"
FAST = SentinelHubOptions(retry_sleep_s=0, rate_limit_wait_s=0)


@pytest.fixture(autouse=True)
def credentials(monkeypatch):
    monkeypatch.setenv("SH_CLIENT_ID", "test-client")
    monkeypatch.setenv("SH_CLIENT_SECRET", "s3cret-value")
    # each test authenticates afresh: the client caches OAuth sessions per process
    monkeypatch.setattr(SentinelHubDownloadClient, "_CACHED_SESSIONS", {})


@pytest.fixture
def aoi(root):
    return load_aoi(root / "aois" / "irpin.geojson")


def _token(rsps, status=200):
    body = (
        {
            "access_token": "tok",
            "token_type": "Bearer",
            "expires_in": 3600,
            "expires_at": 4102444800,
        }
        if status == 200
        else {"error": "invalid_client", "error_description": "Invalid client credentials"}
    )
    rsps.add(responses.POST, TOKEN, json=body, status=status)


def _tiff(body: dict, scl: int = 4) -> bytes:
    """A real GeoTIFF answer: B02 encodes the pixel's x, B03 its y (10 m units), within the
    plausible L2A ranges the product gate checks."""
    bbox = body["input"]["bounds"]["bbox"]
    w, h = body["output"]["width"], body["output"]["height"]
    xs = bbox[0] + 5 + 10 * np.arange(w)
    ys = bbox[3] - 5 - 10 * np.arange(h)
    b02 = np.tile(((xs // 10) % 2500 + 100).astype(np.uint16), (h, 1))
    b03 = np.tile(((ys // 10) % 2500 + 100).astype(np.uint16)[:, None], (1, w))
    data = np.stack(
        [
            b02,
            b03,
            np.full((h, w), 900),
            np.full((h, w), 2500),
            np.full((h, w), scl),
            np.ones((h, w)),
        ]
    ).astype(np.uint16)
    with MemoryFile() as mem:
        with mem.open(driver="GTiff", width=w, height=h, count=6, dtype="uint16") as dst:
            dst.write(data)
        return mem.read()


def _process(rsps, bodies: list, scl: int = 4):
    def callback(request):
        body = json.loads(request.body)
        bodies.append(body)
        return 200, {"Content-Type": "image/tiff"}, _tiff(body, scl)

    rsps.add_callback(responses.POST, PROCESS, callback=callback)


def _catalog(rsps, features, bodies=None):
    def callback(request):
        if bodies is not None:
            bodies.append(json.loads(request.body))
        return (
            200,
            {"Content-Type": "application/json"},
            json.dumps(
                {
                    "type": "FeatureCollection",
                    "features": features,
                    "links": [],
                    "context": {"limit": 100, "returned": len(features)},
                }
            ),
        )

    rsps.add_callback(responses.POST, CATALOG, callback=callback)


def _feature(day: str, cloud: float) -> dict:
    return {
        "type": "Feature",
        "id": f"S2A_MSIL2A_{day.replace('-', '')}T090000",
        "properties": {"datetime": f"{day}T09:00:00Z", "eo:cloud_cover": cloud},
    }


def test_single_date_request_body_and_product(tmp_path, aoi):
    bodies: list = []
    out = tmp_path / "after.tif"
    with responses.RequestsMock() as rsps:
        _token(rsps)
        _process(rsps, bodies)
        summary = acquire_scene(aoi, "after", out, max_size_km=1.0, sentinelhub=FAST)
        token_call = rsps.calls[0]
    assert "grant_type=client_credentials" in token_call.request.body
    grid = aoi_grid(aoi, 1.0)
    data = assert_scene_product(out, grid)
    (body,) = bodies
    assert body["input"]["bounds"]["bbox"] == pytest.approx(list(grid.bounds))
    assert body["input"]["bounds"]["properties"]["crs"].endswith("32636")
    (data_spec,) = body["input"]["data"]
    assert data_spec["type"] in ("sentinel-2-l2a", "S2L2A")
    assert data_spec["processing"]["harmonizeValues"] is True
    assert data_spec["dataFilter"]["timeRange"] == {
        "from": "2022-05-05T00:00:00Z",
        "to": "2022-05-05T23:59:59Z",
    }
    assert (body["output"]["width"], body["output"]["height"]) == (grid.width, grid.height)
    assert body["output"]["responses"][0]["format"]["type"] == "image/tiff"
    for band in ('"B02"', '"B03"', '"B04"', '"B08"', '"SCL"', '"dataMask"'):
        assert band in body["evalscript"]
    assert 'units: "DN"' in body["evalscript"] and "UINT16" in body["evalscript"]
    # georeferencing: B02 holds each pixel's x / 10, B03 its y / 10
    xs = grid.transform.c + 5 + 10 * np.arange(grid.width)
    assert (data[0, 0] == (xs // 10) % 2500 + 100).all()
    assert summary["source"] == "sentinelhub" and summary["dates"] == ["2022-05-05"]
    assert json.loads(out.with_suffix(".json").read_text())["harmonize_values"] is True
    with rasterio.open(out) as src:
        assert src.tags()["SOURCE"] == "sentinelhub"
        assert "s3cret" not in json.dumps(src.tags())
    assert "s3cret" not in out.with_suffix(".json").read_text()


def test_large_area_split_and_mosaicked(tmp_path, aoi, monkeypatch):
    monkeypatch.setattr(shs, "MAX_REQUEST_PX", 40)
    monkeypatch.setattr(shs, "tiles", lambda grid: tiles(grid, 40))
    bodies: list = []
    out = tmp_path / "after.tif"
    with responses.RequestsMock() as rsps:
        _token(rsps)
        _process(rsps, bodies)
        acquire_scene(aoi, "after", out, max_size_km=1.0, sentinelhub=FAST)
    grid = aoi_grid(aoi, 1.0)
    assert len(bodies) == 9  # 100 x 100 px in parts of at most 40
    assert all(b["output"]["width"] <= 40 and b["output"]["height"] <= 40 for b in bodies)
    data = assert_scene_product(out, grid)
    xs = grid.transform.c + 5 + 10 * np.arange(grid.width)
    ys = grid.transform.f - 5 - 10 * np.arange(grid.height)
    assert (data[0] == ((xs // 10) % 2500 + 100)[None, :]).all()  # seamless in x
    assert (data[1] == ((ys // 10) % 2500 + 100)[:, None]).all()  # seamless in y


def test_tiles_cover_a_big_aoi_exactly(root):
    grid = aoi_grid(load_aoi(root / "aois" / "kharkiv.geojson"))
    parts = tiles(grid)
    assert max(grid.width, grid.height) > 2500 and len(parts) >= 2
    assert all(h <= 2500 and w <= 2500 for _, _, h, w in parts)
    assert sum(h * w for _, _, h, w in parts) == grid.width * grid.height


def test_window_picks_least_cloudy(tmp_path, root):
    aoi = load_aoi(root / "aois" / "kharkiv.geojson")  # before window: November 2021
    bodies: list = []
    search: list = []
    with responses.RequestsMock() as rsps:
        _token(rsps)
        _catalog(
            rsps,
            [
                _feature("2021-11-03", 40.0),
                _feature("2021-11-12", 5.0),
                _feature("2021-11-20", 5.0),
                _feature("2021-11-25", 60.0),
            ],
            search,
        )
        _process(rsps, bodies)
        summary = acquire_scene(
            aoi, "before", tmp_path / "b.tif", max_size_km=0.5, sentinelhub=FAST
        )
    assert search[0]["datetime"].startswith("2021-11-01T00:00:00")
    assert search[0]["collections"] == ["sentinel-2-l2a"]
    # tie on cloud cover: the latest for *before*
    assert summary["acquisition"]["datetime"] == "2021-11-20T09:00:00Z"
    assert (
        bodies[0]["input"]["data"][0]["dataFilter"]["timeRange"]["from"] == "2021-11-20T00:00:00Z"
    )
    with rasterio.open(tmp_path / "b.tif") as src:
        assert src.tags()["ACQUISITION_DATE"] == "2021-11-20"
        assert src.tags()["ACQUISITION_ID"] == "S2A_MSIL2A_20211120T090000"


def test_window_tie_after_takes_earliest(tmp_path, root):
    aoi = load_aoi(root / "aois" / "kharkiv.geojson")
    with responses.RequestsMock() as rsps:
        _token(rsps)
        _catalog(rsps, [_feature("2022-06-10", 2.0), _feature("2022-06-03", 2.0)])
        _process(rsps, [])
        summary = acquire_scene(aoi, "after", tmp_path / "a.tif", max_size_km=0.5, sentinelhub=FAST)
    assert summary["acquisition"]["datetime"].startswith("2022-06-03")


def test_retries_server_errors_and_rate_limits(tmp_path, aoi):
    bodies: list = []
    with responses.RequestsMock() as rsps:
        _token(rsps)
        rsps.add(responses.POST, PROCESS, status=503, json={"error": "unavailable"})
        rsps.add(
            responses.POST,
            PROCESS,
            status=429,
            headers={"Retry-After": "0"},
            json={"error": "rate"},
        )
        _process(rsps, bodies)
        with pytest.warns(Warning, match="rate limit"):
            acquire_scene(aoi, "after", tmp_path / "a.tif", max_size_km=0.5, sentinelhub=FAST)
        process_calls = [c for c in rsps.calls if c.request.url == PROCESS]
    assert len(process_calls) == 3 and len(bodies) == 1
    assert (tmp_path / "a.tif").exists()


def test_gives_up_after_max_attempts(tmp_path, aoi):
    out = tmp_path / "a.tif"
    with responses.RequestsMock() as rsps:
        _token(rsps)
        rsps.add(responses.POST, PROCESS, status=500, json={"error": "boom"})
        with pytest.raises(PipelineError, match="request failed"):
            acquire_scene(
                aoi,
                "after",
                out,
                max_size_km=0.5,
                sentinelhub=SentinelHubOptions(max_attempts=2, retry_sleep_s=0),
            )
        assert len([c for c in rsps.calls if c.request.url == PROCESS]) == 2
    assert not out.exists()


def test_bad_credentials_stop_at_once(tmp_path, aoi):
    out = tmp_path / "a.tif"
    with responses.RequestsMock() as rsps:
        _token(rsps, status=401)
        with pytest.raises(PipelineError, match="SH_CLIENT_ID") as err:
            acquire_scene(aoi, "after", out, max_size_km=0.5, sentinelhub=FAST)
        assert len(rsps.calls) == 1
    assert "refused the credentials" in str(err.value) and "irpin" in str(err.value)
    assert "s3cret" not in str(err.value)
    assert not out.exists()


def test_forbidden_process_stops_at_once(tmp_path, aoi):
    with responses.RequestsMock() as rsps:
        _token(rsps)
        rsps.add(responses.POST, PROCESS, status=403, json={"error": {"message": "forbidden"}})
        with pytest.raises(PipelineError, match="HTTP 403"):
            acquire_scene(aoi, "after", tmp_path / "a.tif", max_size_km=0.5, sentinelhub=FAST)
        assert len([c for c in rsps.calls if c.request.url == PROCESS]) == 1


def test_no_credentials(tmp_path, aoi, monkeypatch):
    monkeypatch.delenv("SH_CLIENT_ID")
    monkeypatch.delenv("SH_CLIENT_SECRET")
    monkeypatch.setenv("SH_PROFILE", "pipeline-tests-no-such-profile")
    monkeypatch.setattr(shs, "SHConfig", lambda: _EmptyConfig())
    with (
        responses.RequestsMock(),
        pytest.raises(PipelineError, match="no Sentinel Hub credentials"),
    ):
        acquire_scene(aoi, "after", tmp_path / "a.tif", max_size_km=0.5)
    assert not (tmp_path / "a.tif").exists()


class _EmptyConfig:
    sh_client_id = ""
    sh_client_secret = ""


def test_no_acquisition_in_window(tmp_path, root):
    aoi = load_aoi(root / "aois" / "kharkiv.geojson")
    with responses.RequestsMock() as rsps:
        _token(rsps)
        _catalog(rsps, [])
        with pytest.raises(PipelineError, match="no Sentinel-2 L2A acquisition"):
            acquire_scene(aoi, "after", tmp_path / "a.tif", max_size_km=0.5, sentinelhub=FAST)


def test_fully_clouded(tmp_path, aoi):
    out = tmp_path / "a.tif"
    with responses.RequestsMock() as rsps:
        _token(rsps)
        _process(rsps, [], scl=9)
        with pytest.raises(PipelineError, match=r"irpin \(after\): only 0.0%"):
            acquire_scene(aoi, "after", out, max_size_km=0.5, sentinelhub=FAST)
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_unreachable_service_is_named_with_its_address(tmp_path, aoi):
    """Issue 31.5: an unreachable service ended in "Failed to download from:" and no more."""
    import socket

    from pipeline.errors import ServiceError

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"https://127.0.0.1:{port}"
    options = SentinelHubOptions(
        base_url=url, token_url=f"{url}/token", max_attempts=1, retry_sleep_s=0
    )
    with pytest.raises(ServiceError) as err:
        acquire_scene(aoi, "after", tmp_path / "a.tif", max_size_km=0.5, sentinelhub=options)
    message = str(err.value)
    assert f"cannot reach Sentinel Hub at {url}/token (connection refused)" in message
    assert "irpin" in message and "\n" not in message
    assert not (tmp_path / "a.tif").exists()
