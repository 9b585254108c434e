"""``pipeline radar --source stac`` against a local server in Planetary Computer's layout."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from affine import Affine
from pyproj import Transformer
from support.s1_server import (
    S1Server,
    SliceGeometry,
    grd_item,
    product_id,
    rtc_item,
    served_bytes,
    truth_sigma0,
    when,
    write_aoi,
    write_grd_slice,
    write_rtc,
)

from contract import radar
from pipeline.aoi import DateWindow, load_aoi
from pipeline.errors import CredentialsError, ServiceError
from pipeline.radar.build import RadarRequest, build_radar
from pipeline.radar.stac import RadarStacOptions
from pipeline.stac_http import TOKEN_MARGIN, PlanetaryComputerSigner

LON, LAT = 30.52, 50.45
PRE = DateWindow(dt.date(2021, 3, 1), dt.date(2022, 2, 23))
#: (start, relative orbit, state, truth day) of the served passes.
PASSES = (
    ("2021-06-01T04:30:00Z", 36, "descending", 0),
    ("2021-06-13T04:30:00Z", 36, "descending", 1),
    ("2022-05-05T04:30:00Z", 36, "descending", 2),
    ("2022-05-06T15:40:00Z", 43, "ascending", 3),
)


def _centre() -> tuple[float, float]:
    return Transformer.from_crs(4326, 32636, always_xy=True).transform(LON, LAT)


def _catalogue(server: S1Server, files: Path) -> list[dict]:
    """Per pass: RTC items, and GRD slices (the descending pass of day 0 in two slices)."""
    x, y = _centre()
    items = []
    for i, (text, orbit, state, day) in enumerate(PASSES):
        start = when(text)
        sign = 1 if state == "ascending" else -1
        origin = (x - sign * 1500, y - sign * 2500)
        halves = [(origin, 500)] if i else [(origin, 260), (None, 260)]
        for k, (o, lines) in enumerate(halves):
            geom = SliceGeometry(o or origin, lines, 400, state)
            if o is None:  # the next slice of the pass starts where the first ends
                geom = SliceGeometry(tuple(map(float, halves_next(geom, 250))), lines, 400, state)
            pid = product_id("sentinel-1a", start + dt.timedelta(seconds=25 * k), 42000 + i)
            paths = write_grd_slice(files, pid, geom, day)
            items.append(
                grd_item(
                    pid,
                    {k2: server.file_url(p.name) for k2, p in paths.items()},
                    geom,
                    start + dt.timedelta(seconds=25 * k),
                    orbit,
                )
            )
        transform = Affine(10, 0, round(x / 10) * 10 - 4000, 0, -10, round(y / 10) * 10 + 4000)
        hrefs = {
            pol: server.file_url(
                write_rtc(files / f"{pid}_rtc_{pol}.tif", transform, (800, 800), pol, day).name
            )
            for pol in ("vv", "vh")
        }
        items.append(rtc_item(pid + "_rtc", hrefs, transform, (800, 800), start, orbit, state))
    return items


def halves_next(geom: SliceGeometry, lines: int) -> tuple[float, float]:
    x, y = geom.utm(np.array(float(lines)), np.array(0.0))
    return float(x), float(y)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    files = tmp_path_factory.mktemp("s1files")
    with S1Server(files) as server:
        items = _catalogue(server, files)
        server.reset(items)
        yield server, items, files


def _build(server: S1Server, tmp_path: Path, **opts) -> xr.Dataset:
    aoi = load_aoi(write_aoi(tmp_path))
    out = tmp_path / "test.zarr"
    options = RadarStacOptions(url=server.url, backoff_s=0.01, **opts)
    build_radar(aoi, RadarRequest(out=out, pre=PRE, stac=options, workers=1))
    return xr.open_zarr(out, decode_coords="all")


def _relative_error(ds: xr.Dataset, pol: str) -> np.ndarray:
    x, y = np.meshgrid(ds.x.values, ds.y.values)
    days = [p[3] for p in PASSES]
    return np.stack(
        [
            np.abs(ds[pol].isel(time=t).values / truth_sigma0(x, y, pol, days[t]) - 1)
            for t in range(ds.sizes["time"])
        ]
    )


def test_rtc_when_token_answers(served, tmp_path):
    server, items, files = served
    server.reset(items)
    ds = _build(server, tmp_path)
    assert ds.attrs[radar.ATTR_CALIBRATION] == radar.GAMMA0_RTC
    assert ds[radar.ORBIT].values.tolist() == [36, 36, 36, 43]
    assert ds[radar.ORBIT_STATE].values.tolist()[-1] == "ascending"
    assert ds[radar.PLATFORM].values.tolist() == ["sentinel-1a"] * 4
    assert np.nanmax(_relative_error(ds, "vv")) < 1e-4
    whole = sum(p.stat().st_size for p in files.glob("*_rtc_*.tif"))
    assert 0 < served_bytes(server, r"_rtc_.*\.tif$") < whole
    record = (tmp_path / "test.items.json").read_text()
    assert "sentinel-1-rtc" in record and "sig=" not in record


def test_grd_fallback_calibrated_and_mosaicked(served, tmp_path):
    server, items, _ = served
    server.reset(items)
    server.refuse_token = {"sentinel-1-rtc"}
    ds = _build(server, tmp_path)
    assert ds.attrs[radar.ATTR_CALIBRATION] == radar.SIGMA0
    assert ds.sizes["time"] == 4  # the two slices of the first pass are one acquisition
    err = _relative_error(ds, "vv")
    assert np.nanmedian(err) < 0.01 and np.nanpercentile(err, 99) < 0.03
    assert np.isfinite(ds.vv.isel(time=0).values).mean() > 0.99
    assert any("/api/sas/v1/token/sentinel-1-grd" in r for r in server.requests)


def test_expired_signature_is_renewed_and_faults_retried(served, tmp_path):
    server, items, _ = served
    server.reset(items)
    server.token_lifetime = 6
    server.token_faults = [429]
    server.faults["/api/stac/v1/search"] = [503]
    ds = _build(server, tmp_path)
    assert ds.sizes["time"] == 4
    tokens = [r for r in server.requests if "/api/sas/v1/token/" in r]
    assert len(tokens) > 2  # 429, the first token, then fresh ones after 403s
    assert server.refused_reads > 0
    assert any(r.startswith("GET /files/") for r in server.requests)


def test_token_renewed_before_expiry_and_on_403(served, tmp_path):
    """Issue 31.8: the radar reader signs with the Sentinel-2 reader's signer, so a token
    expiring within the margin is fetched anew (``msft:expiry``, as Planetary Computer
    answers) and a read refused with HTTP 403 fetches a fresh one."""
    server, items, _ = served
    server.reset(items)
    now = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
    clock = {"t": now}
    server.sas_expiry = (now + TOKEN_MARGIN * 3).isoformat().replace("+00:00", "Z")
    options = RadarStacOptions(url=server.url, backoff_s=0.01).stac("sentinel-1-rtc")
    signer = PlanetaryComputerSigner(options, clock=lambda: clock["t"])
    fetched = lambda: sum("/api/sas/v1/token/" in r for r in server.requests)  # noqa: E731
    first = signer("http://x/a.tif")
    assert signer("http://x/b.tif").endswith(first.split("?")[1]) and fetched() == 1
    clock["t"] = now + TOKEN_MARGIN * 2 + dt.timedelta(seconds=1)
    server.sas_expiry = (now + TOKEN_MARGIN * 9).isoformat()  # the next token lives longer
    assert signer("http://x/c.tif").split("?")[1] != first.split("?")[1] and fetched() == 2
    signer.renew(seen="sig=an-older-token")  # another thread renewed already: kept
    signer("http://x/d.tif")
    assert fetched() == 2
    server.reset(items)  # a whole build whose tokens expire within the margin: renewed
    server.sas_expiry = (dt.datetime.now(dt.UTC) + TOKEN_MARGIN / 5).isoformat()
    assert _build(server, tmp_path).sizes["time"] == 4
    assert fetched() > 2 and server.refused_reads == 0  # renewed before any read failed


def test_refused_everywhere_is_a_credentials_error(served, tmp_path):
    server, items, _ = served
    server.reset(items)
    server.refuse_token = {"sentinel-1-rtc", "sentinel-1-grd"}
    with pytest.raises(CredentialsError, match="SAFE"):
        _build(server, tmp_path)
    assert not (tmp_path / "test.zarr").exists()


def test_unreachable_service_names_the_host(tmp_path):
    aoi = load_aoi(write_aoi(tmp_path))
    opts = RadarStacOptions(url="http://127.0.0.1:9/api/stac/v1", max_attempts=1)
    with pytest.raises(ServiceError, match="cannot reach 127.0.0.1:9"):
        build_radar(aoi, RadarRequest(out=tmp_path / "t.zarr", pre=PRE, stac=opts))
    assert list(tmp_path.glob("*.zarr")) == []


def test_empty_window_is_refused(served, tmp_path):
    server, items, _ = served
    server.reset(items)
    aoi = load_aoi(write_aoi(tmp_path, after="2023-01-01"))
    with pytest.raises(Exception, match="post window 2023-01-01/2023-01-30"):
        build_radar(
            aoi,
            RadarRequest(out=tmp_path / "t.zarr", pre=PRE, stac=RadarStacOptions(url=server.url)),
        )
    assert not (tmp_path / "t.zarr").exists()
