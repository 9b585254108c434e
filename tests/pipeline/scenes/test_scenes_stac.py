"""The STAC source through the real clients, against a STAC API and COGs the test serves.

pystac-client, odc-stac and GDAL's HTTP reader talk to :mod:`stac_server` on 127.0.0.1, which
serves items in the layouts of Earth Search (``sentinel-2-c1-l2a``, ``sentinel-2-l2a``) and
Planetary Computer, and small tiled COGs with overviews through HTTP range requests.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.windows import from_bounds
from support.scene_checks import assert_scene_product
from support.stac_server import StacServer, make_item, write_cog

from pipeline.aoi import load_aoi
from pipeline.cli import main
from pipeline.errors import InputFileError, PipelineError, PipelineUsageError, ServiceError
from pipeline.grid import aoi_grid
from pipeline.scenes import acquire_scene
from pipeline.scenes.stac_source import StacOptions

C1, L2A = "sentinel-2-c1-l2a", "sentinel-2-l2a"
TRUE = {"B02": 500, "B03": 700, "B04": 600, "B08": 2500}  # pre-2022 DN over the tile
TILE_PX = 1024
AOI_PX0 = 518  # the AOI's first row and column in the tile: inside one 256 px block


def _aoi_file(
    folder: Path,
    slug: str,
    lon: tuple[float, float],
    lat: tuple[float, float],
    before="2021-05",
    after="2022-05",
) -> Path:
    (x0, x1), (y0, y1) = lon, lat
    doc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {
                    "name": slug,
                    "slug": slug,
                    "before": before,
                    "after": after,
                    "unosat_aoi": "none",
                    "labels": {"path": "labels.zip"},
                },
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]],
                },
            }
        ],
    }
    path = folder / f"{slug}.geojson"
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture(autouse=True)
def gdal_http(monkeypatch):
    monkeypatch.setenv("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR")
    monkeypatch.setenv("CPL_VSIL_CURL_ALLOWED_EXTENSIONS", ".tif")
    # every open goes to the server, so served bytes and injected faults are seen per test
    monkeypatch.setenv("CPL_VSIL_CURL_NON_CACHED", "/vsicurl/http://127.0.0.1")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Two AOIs and the COGs of their tiles, written once."""
    base = tmp_path_factory.mktemp("stac")
    files = base / "files"
    files.mkdir()
    aoi = load_aoi(_aoi_file(base, "kyiv-test", (30.513, 30.527), (50.4455, 50.4545)))
    cross = load_aoi(_aoi_file(base, "zone-edge", (29.98, 30.03), (50.44, 50.46)))
    grid = aoi_grid(aoi)
    left, top = grid.transform.c - AOI_PX0 * 10, grid.transform.f + AOI_PX0 * 10
    t36 = Affine(10, 0, left, 0, -10, top)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(TILE_PX, TILE_PX), dtype=np.uint16)
    stored = {}
    for band, dn in TRUE.items():
        stored[band] = dn + noise
        write_cog(files / f"{band}.tif", stored[band], "EPSG:32636", t36)
        write_cog(files / f"{band}_plus.tif", stored[band] + 1000, "EPSG:32636", t36)
    t20 = Affine(20, 0, left, 0, -20, top)
    half = (TILE_PX // 2, TILE_PX // 2)
    write_cog(files / "SCL.tif", np.full(half, 4, np.uint8), "EPSG:32636", t20)
    write_cog(files / "SCL_cloud.tif", np.full(half, 9, np.uint8), "EPSG:32636", t20)
    # cloud over the west or the east half of the AOI (the AOI starts at 20 m column 259)
    split = AOI_PX0 // 2 + grid.width // 4
    for side, cols in (("west", slice(0, split)), ("east", slice(split, None))):
        scl = np.full(half, 4, np.uint8)
        scl[:, cols] = 8
        write_cog(files / f"SCL_{side}_cloud.tif", scl, "EPSG:32636", t20)
    tiles = _zone_tiles(cross, files)
    return {
        "dir": base,
        "files": files,
        "aoi": aoi,
        "grid": grid,
        "t36": t36,
        "stored": stored,
        "cross": cross,
        "tiles": tiles,
    }


def _zone_tiles(aoi, files: Path) -> dict[str, dict]:
    """Two tiles meeting near 30 deg E: T35 in EPSG:32635 (west), T36 in EPSG:32636 (east).

    T36 carries BOA_ADD_OFFSET in its values, T35 does not (``offset``: raster:bands offset).
    """
    lats = np.linspace(50.43, 50.47, 9)
    tiles = {}
    for name, epsg, west, east, add, offset in (
        ("T35", 32635, 29.97, 30.004, 10, 0.0),
        ("T36", 32636, 29.996, 30.04, 20, -0.1),
    ):
        to = Transformer.from_crs(4326, epsg, always_xy=True)
        xw, _ = to.transform(np.full(9, west), lats)
        xe, _ = to.transform(np.full(9, east), lats)
        _, ys = to.transform(
            np.array([west, east, west, east]), np.array([50.43, 50.43, 50.47, 50.47])
        )
        x0, x1 = np.floor(xw.min() / 10) * 10, np.ceil(xe.max() / 10) * 10
        y0, y1 = np.floor(ys.min() / 10) * 10, np.ceil(ys.max() / 10) * 10
        w, h = int((x1 - x0) / 10) // 2 * 2, int((y1 - y0) / 10) // 2 * 2
        transform = Affine(10, 0, x0, 0, -10, y1)
        hrefs = {}
        for band, dn in TRUE.items():
            stored = dn + add - round(offset * 10000)
            write_cog(
                files / f"{name}_{band}.tif",
                np.full((h, w), stored, np.uint16),
                f"EPSG:{epsg}",
                transform,
            )
            hrefs[band] = f"{name}_{band}.tif"
        write_cog(
            files / f"{name}_SCL.tif",
            np.full((h // 2, w // 2), 4, np.uint8),
            f"EPSG:{epsg}",
            Affine(20, 0, x0, 0, -20, y1),
        )
        hrefs["SCL"] = f"{name}_SCL.tif"
        tiles[name] = {
            "crs": f"EPSG:{epsg}",
            "transform": transform,
            "shape": (h, w),
            "hrefs": hrefs,
            "add": add,
            "offset": offset,
        }
    return tiles


@pytest.fixture(scope="module")
def server(site):
    with StacServer(site["files"]) as srv:
        yield srv


def _item(
    server,
    site,
    item_id: str,
    when: str,
    layout: str = "c1",
    plus: bool = True,
    scl: str = "SCL.tif",
    cloud: float = 5.0,
    collection: str = C1,
    **props,
):
    hrefs = {b: server.file_url(f"{b}_plus.tif" if plus else f"{b}.tif") for b in TRUE}
    hrefs["SCL"] = server.file_url(scl)
    return make_item(
        layout,
        item_id,
        when,
        "EPSG:32636",
        site["t36"],
        (TILE_PX, TILE_PX),
        hrefs,
        cloud,
        collection,
        **props,
    )


pytestmark = [  # odc-geo's own use of shapely; odc-loader warps bare arrays across zones
    pytest.mark.filterwarnings("ignore:The 'shapely.ops.transform:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning"),
]
FAST = {"backoff_s": 0.0, "max_attempts": 3, "timeout_s": 10.0}


def _options(server, collection=C1, **kw) -> StacOptions:
    return StacOptions(url=server.url, collection=collection, **{**FAST, **kw})


def _expected(site) -> np.ndarray:
    grid = site["grid"]
    win = from_bounds(*grid.bounds, transform=site["t36"])
    r0, c0 = round(win.row_off), round(win.col_off)
    return np.stack(
        [site["stored"][b][r0 : r0 + grid.height, c0 : c0 + grid.width] for b in TRUE]
    ).astype(np.int64)


def test_reads_only_the_aoi_blocks_and_writes_the_product(tmp_path, server, site):
    server.reset([_item(server, site, "S2A_T36UUA_20220505_L2A", "2022-05-05T09:05:00Z")])
    out = tmp_path / "after.tif"
    summary = acquire_scene(site["aoi"], "after", out, "stac", stac=_options(server))
    data = assert_scene_product(out, site["grid"])
    # same CRS and aligned pixels: the stored values minus the c1 offset, pixel for pixel
    np.testing.assert_array_equal(data.astype(np.int64), _expected(site))
    with rasterio.open(out) as src:
        tags = src.tags()
    assert tags["SOURCE"] == "stac" and tags["ACQUISITION_DATE"] == "2022-05-05"
    assert tags["BOA_ADD_OFFSET_APPLIED"] == "-1000,-1000,-1000,-1000"
    assert summary["collection"] == C1 and summary["items"][0]["crs"] == "EPSG:32636"
    assert summary["valid_fraction"] == 1.0
    # bytes: the blocks under the AOI and the headers, never whole files
    grid = site["grid"]
    for name, served in server.bytes_served.items():
        with rasterio.open(site["files"] / name) as src:
            size = (site["files"] / name).stat().st_size
            win = from_bounds(*grid.bounds, transform=src.transform)
            bh, bw = src.block_shapes[0]
            rows = range(int(win.row_off) // bh, int(win.row_off + win.height - 1e-6) // bh + 1)
            cols = range(int(win.col_off) // bw, int(win.col_off + win.width - 1e-6) // bw + 1)
            blocks = sum(src.block_size(1, r, c) for r in rows for c in cols)
        assert served <= blocks + 64 * 1024, (name, served, blocks)
        if size > 256 * 1024:  # the constant SCL compresses to a single small read
            assert served < 0.2 * size, (name, served, size)
    assert set(server.bytes_served) == {
        "B02_plus.tif",
        "B03_plus.tif",
        "B04_plus.tif",
        "B08_plus.tif",
        "SCL.tif",
    }


def test_chooses_the_least_cloudy_date_over_the_aoi(tmp_path, server, site):
    items = []
    for year in (2021, 2022):
        items += [  # the scene-wide least cloudy date is cloudy over the AOI itself
            _item(
                server,
                site,
                f"A_{year}0501",
                f"{year}-05-01T09:00:00Z",
                cloud=2.0,
                scl="SCL_cloud.tif",
            ),
            _item(server, site, f"A_{year}0506", f"{year}-05-06T09:00:00Z", cloud=30.0),
            _item(server, site, f"A_{year}0511", f"{year}-05-11T09:00:00Z", cloud=30.0),
            _item(server, site, f"A_{year}0516", f"{year}-05-16T09:00:00Z", cloud=80.0),
        ]
    server.reset(items)
    chosen = {}
    for epoch in ("before", "after"):
        summary = acquire_scene(
            site["aoi"], epoch, tmp_path / f"{epoch}.tif", "stac", stac=_options(server)
        )
        chosen[epoch] = summary["dates"]
        assert summary["acquisition"]["candidates"] == 4
        assert summary["acquisition"]["aoi_unusable_fraction"] == 0.0
    # ties on clouds go to the date nearest the event: latest before, earliest after
    assert chosen == {"before": ["2021-05-11"], "after": ["2022-05-06"]}


@pytest.mark.parametrize(
    "layout,collection,plus,props",
    [
        ("c1", C1, True, {}),  # Collection 1
        ("l2a", L2A, False, {"offset": 0.0, "s2:processing_baseline": "02.14"}),  # 2021 product
        (
            "l2a",
            L2A,
            True,
            {
                "s2:processing_baseline": "04.00",  # offset in the DN
                "earthsearch:boa_offset_applied": False,
            },
        ),
        (
            "l2a",
            L2A,
            False,
            {
                "s2:processing_baseline": "04.00",  # Earth Search removed it
                "earthsearch:boa_offset_applied": True,
            },
        ),
        ("l2a", L2A, True, {"offset": None, "s2:processing_baseline": "04.00"}),  # baseline only
        ("pc", L2A, True, {"s2:processing_baseline": "04.00"}),  # Planetary Computer
        ("pc", L2A, False, {"s2:processing_baseline": "03.01"}),
    ],
)
def test_harmonises_each_collection_convention(
    tmp_path, server, site, layout, collection, plus, props
):
    offset = props.pop("offset", -0.1)
    server.reset(
        [
            _item(
                server,
                site,
                "X",
                "2022-05-05T09:00:00Z",
                layout=layout,
                plus=plus,
                collection=collection,
                offset=offset,
                **props,
            )
        ]
    )
    out = tmp_path / "after.tif"
    acquire_scene(site["aoi"], "after", out, "stac", stac=_options(server, collection))
    with rasterio.open(out) as src:
        np.testing.assert_array_equal(src.read().astype(np.int64), _expected(site))
        assert src.tags()["BOA_ADD_OFFSET_APPLIED"] == ",".join(4 * ["-1000" if plus else "0"])


def test_mosaics_tiles_in_two_utm_zones_and_baselines(tmp_path, server, site):
    items = []
    for name, tile in site["tiles"].items():
        hrefs = {b: server.file_url(f) for b, f in tile["hrefs"].items()}
        items.append(
            make_item(
                "c1",
                f"S2B_{name}_20220505",
                "2022-05-05T09:10:00Z",
                tile["crs"],
                tile["transform"],
                tile["shape"],
                hrefs,
                3.0,
                C1,
                offset=tile["offset"],
            )
        )
    server.reset(items)
    out = tmp_path / "after.tif"
    aoi = site["cross"]
    summary = acquire_scene(aoi, "after", out, "stac", stac=_options(server))
    grid = aoi_grid(aoi)
    assert grid.crs.to_epsg() == 32636
    data = assert_scene_product(out, grid)
    assert summary["valid_fraction"] == 1.0 and (data > 0).all()
    assert summary["acquisition"]["id"] == "S2B_T35_20220505,S2B_T36_20220505"
    # one scale across tiles of different baselines
    assert [it["boa_add_offset"][0] for it in summary["items"]] == [-1000, 0]
    cols = np.arange(grid.width) * 10 + grid.transform.c + 5
    rows = grid.transform.f - 5 - np.arange(grid.height) * 10
    xx, yy = np.meshgrid(cols, rows)
    lon, _ = Transformer.from_crs(32636, 4326, always_xy=True).transform(xx, yy)
    west, east = lon < 29.99, lon > 30.0
    assert west.sum() > 1000 and east.sum() > 1000
    for b, band in enumerate(TRUE):
        assert (data[b][west] == TRUE[band] + site["tiles"]["T35"]["add"]).all()
        assert (data[b][east] == TRUE[band] + site["tiles"]["T36"]["add"]).all()


@pytest.mark.parametrize(
    "first_scl, second_scl",
    [("SCL_cloud.tif", "SCL.tif"), ("SCL_west_cloud.tif", "SCL_east_cloud.tif")],
    ids=["cloudy-then-clear", "half-cloudy-each"],
)
def test_a_cloudy_item_never_hides_a_clear_one_on_the_same_date(
    tmp_path, server, site, first_scl, second_scl
):
    """Issue 31.1: two items of one date (a reprocessing, an overlapping orbit), the first in
    read order cloudy by its SCL: each pixel comes from the item that saw it clear."""
    server.reset(
        [
            _item(server, site, "S2A_T36UUA_20220505_0_L2A", "2022-05-05T09:05:00Z", scl=first_scl),
            _item(
                server, site, "S2A_T36UUA_20220505_1_L2A", "2022-05-05T09:05:00Z", scl=second_scl
            ),
        ]
    )
    out = tmp_path / "after.tif"
    summary = acquire_scene(site["aoi"], "after", out, "stac", stac=_options(server))
    assert summary["valid_fraction"] == 1.0 and summary["cloud_fraction"] == 0.0
    np.testing.assert_array_equal(assert_scene_product(out, site["grid"]), _expected(site))


def test_without_a_clear_item_the_first_with_data_is_kept(tmp_path, server, site):
    """Both items cloudy: the mosaic still holds data (the first item's), masked as cloud."""
    server.reset(
        [
            _item(server, site, "A", "2022-05-05T09:05:00Z", scl="SCL_cloud.tif"),
            _item(server, site, "B", "2022-05-05T09:05:00Z", scl="SCL_cloud.tif"),
        ]
    )
    with pytest.raises(PipelineError, match=r"0\.0% of the AOI has a valid.*cloud 100\.0%"):
        acquire_scene(site["aoi"], "after", tmp_path / "a.tif", "stac", stac=_options(server))


def test_planetary_computer_token_renewed_before_expiry_and_on_403(tmp_path, server, site):
    """Issue 31.8: a token expiring within the margin is fetched anew; a read refused with
    HTTP 403 (a token that died mid-run) is retried once with a fresh token."""
    import datetime as dt

    from pipeline.stac_http import TOKEN_MARGIN, PlanetaryComputerSigner

    server.reset()
    now = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
    clock = {"t": now}
    server.sas_expiry = (now + TOKEN_MARGIN * 3).isoformat().replace("+00:00", "Z")
    signer = PlanetaryComputerSigner(_options(server, L2A), clock=lambda: clock["t"])
    fetched = lambda: sum("/api/sas/v1/token/" in r for r in server.requests)  # noqa: E731
    assert signer("http://x/a.tif?v=1") == f"http://x/a.tif?v=1&{server.sas_token}"
    signer("http://x/b.tif")
    assert fetched() == 1  # the token is reused while it is fresh
    clock["t"] = now + TOKEN_MARGIN * 2 + dt.timedelta(seconds=1)
    signer("http://x/c.tif")
    assert fetched() == 2  # within the margin of its expiry: renewed before it dies

    item = _item(server, site, "PC", "2022-05-05T09:00:00Z", layout="pc", collection=L2A)
    item["properties"]["s2:processing_baseline"] = "04.00"
    server.reset([item])
    server.require_token = True
    server.stale_tokens = ["st=2020-01-01&se=2099-01-01&sig=revoked"]
    summary = acquire_scene(
        site["aoi"],
        "after",
        tmp_path / "pc.tif",
        "stac",
        stac=_options(server, L2A, signing="planetary-computer"),
    )
    assert summary["valid_fraction"] == 1.0
    assert sum("/api/sas/v1/token/" in r for r in server.requests) == 2


def test_planetary_computer_urls_are_signed(tmp_path, server, site):
    server.reset(
        [
            _item(
                server,
                site,
                "PC",
                "2022-05-05T09:00:00Z",
                layout="pc",
                collection=L2A,
                **{"s2:processing_baseline": "04.00"},
            )
        ]
    )
    server.require_token = True
    with pytest.raises(ServiceError, match="403"):
        acquire_scene(
            site["aoi"],
            "after",
            tmp_path / "a.tif",
            "stac",
            stac=_options(server, L2A, signing="none"),
        )
    server.require_token = True
    summary = acquire_scene(
        site["aoi"],
        "after",
        tmp_path / "b.tif",
        "stac",
        stac=_options(server, L2A, signing="planetary-computer"),
    )
    assert summary["signing"] == "planetary-computer"
    assert sum("/api/sas/v1/token/sentinel-2-l2a" in r for r in server.requests) == 1
    assert StacOptions(url="https://planetarycomputer.microsoft.com/api/stac/v1").signs_urls()
    assert not StacOptions().signs_urls()


def test_retries_a_503_then_succeeds(tmp_path, server, site):
    server.reset([_item(server, site, "X", "2022-05-05T09:00:00Z")])
    server.faults["/api/stac/v1/search"] = [503]
    server.faults["/files/B04_plus.tif"] = [503]
    acquire_scene(site["aoi"], "after", tmp_path / "a.tif", "stac", stac=_options(server))
    assert sum(r.startswith("POST /api/stac/v1/search") for r in server.requests) == 2
    assert not server.faults["/files/B04_plus.tif"]  # GDAL met the 503 and retried
    assert (tmp_path / "a.tif").exists()


def test_no_item_names_the_aoi_window_and_collection(tmp_path, server, site):
    server.reset([_item(server, site, "X", "2022-06-05T09:00:00Z")])
    with pytest.raises(InputFileError) as err:
        acquire_scene(site["aoi"], "after", tmp_path / "a.tif", "stac", stac=_options(server))
    assert "kyiv-test" in str(err.value) and "2022-05-01/2022-05-31" in str(err.value)
    assert C1 in str(err.value)
    with pytest.raises(PipelineUsageError, match="no collection 'sentinel-2-nope'"):
        acquire_scene(
            site["aoi"],
            "after",
            tmp_path / "a.tif",
            "stac",
            stac=_options(server, "sentinel-2-nope"),
        )


def test_service_failures_name_the_host_and_leave_no_file(tmp_path, server, site):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = StacOptions(url=f"http://127.0.0.1:{port}/v1", **FAST)
    with pytest.raises(ServiceError, match=f"cannot reach 127.0.0.1:{port}"):
        acquire_scene(site["aoi"], "after", tmp_path / "a.tif", "stac", stac=dead)
    server.reset([_item(server, site, "X", "2022-05-05T09:00:00Z")])
    server.faults["/api/stac/v1/search"] = [502] * 3
    with pytest.raises(ServiceError, match="answered HTTP 502"):
        acquire_scene(site["aoi"], "after", tmp_path / "a.tif", "stac", stac=_options(server))
    server.faults.clear()
    server.stalls["/api/stac/v1/search"] = 1.0
    with pytest.raises(ServiceError, match="did not answer in time"):
        acquire_scene(
            site["aoi"],
            "after",
            tmp_path / "a.tif",
            "stac",
            stac=_options(server, timeout_s=0.2, max_attempts=2),
        )
    broken = _item(server, site, "X", "2022-05-05T09:00:00Z")
    broken["assets"]["nir"]["href"] = server.file_url("missing.tif")
    server.reset([broken])
    with pytest.raises(ServiceError, match="127.0.0.1"):
        acquire_scene(site["aoi"], "after", tmp_path / "a.tif", "stac", stac=_options(server))
    broken["assets"]["nir"]["href"] = f"http://127.0.0.1:{port}/files/B08.tif"
    with pytest.raises(ServiceError, match=f"cannot reach 127.0.0.1:{port}"):
        acquire_scene(site["aoi"], "after", tmp_path / "a.tif", "stac", stac=_options(server))
    assert list(tmp_path.iterdir()) == []  # no product, no partial file


def test_items_that_cannot_be_read_right_are_refused(tmp_path, server, site):
    no_nir = _item(server, site, "X", "2022-05-05T09:00:00Z")
    del no_nir["assets"]["nir"]
    server.reset([no_nir])
    with pytest.raises(InputFileError, match="no Cloud Optimized GeoTIFF asset for B08"):
        acquire_scene(site["aoi"], "after", tmp_path / "a.tif", "stac", stac=_options(server))
    server.reset(
        [
            _item(
                server,
                site,
                "X",
                "2022-05-05T09:00:00Z",
                layout="l2a",
                collection=L2A,
                offset="absent",
            )
        ]
    )
    with pytest.raises(InputFileError, match="BOA_ADD_OFFSET"):
        acquire_scene(site["aoi"], "after", tmp_path / "a.tif", "stac", stac=_options(server, L2A))
    assert list(tmp_path.iterdir()) == []


def test_cli(tmp_path, server, site, capsys):
    server.reset([_item(server, site, "X", "2022-05-05T09:00:00Z")])
    aoi_path = str(site["aoi"].source_file)
    out = tmp_path / "after.tif"
    base = ["scene", aoi_path, "--epoch", "after", "--source", "stac", "--stac-url", server.url]
    assert main([*base, "--out", str(out)]) == 0
    assert out.exists() and out.with_suffix(".json").exists()
    assert main([*base, "--out", str(tmp_path / "x.tif"), "--collection", "nope"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(err) == 1 and "no collection 'nope'" in err[0]
