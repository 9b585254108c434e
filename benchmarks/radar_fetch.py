"""Bytes and time of ``pipeline radar`` for one AOI, against whole slices; and the synthetic
bed's PWTT footprint AUC against the published range.

Usage: python benchmarks/radar_fetch.py [--slice-km 50] [--aoi-km 10] [--dates 4] [--towns 3]

Part 1 serves Sentinel-1 slices from 127.0.0.1 through the tests' Planetary Computer server: a
GRD slice (uint16 amplitude in radar geometry, GCPs only, ZSTD COG, 512 px blocks, with its
calibration and noise XML) and an RTC slice (float32 gamma0, 10 m UTM, ZSTD COG), VV and VH,
as ``--dates`` acquisitions of one orbit. It runs the radar source for a square AOI inside them
through the RTC collection and through the GRD fallback, and prints the bytes served and the
wall time beside the competitor: downloading every slice whole. A real slice is about
290 x 220 km (29,000 x 22,000 px); ``--slice-km 100`` or more approaches that, the default
keeps the run short.

Part 2 renders the synthetic radar bed for ``--towns`` of the demo towns (Bucha, Irpin,
Hostomel; 4 km, seed 0, the optical bed's towns and damage) and runs PWTT on each: the
companion ``damagenet.radar.pwtt_map`` when it is importable, and always a plain per-pixel
t-test (no speckle filter, no smoothing) as the simple baseline. Footprint AUC (mean T per
footprint, damaged = UNOSAT 1-3 against intact) is printed per town, unweighted and
area-weighted (PWTT's published figure), beside PWTT's published per-city range on Ukrainian
cities (0.665-0.926, pooled 0.842).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
import requests
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(Path(__file__).resolve().parent), str(ROOT)]
from _common import OUT  # noqa: E402
from s1_server import (  # noqa: E402
    A0,
    A_SLOPE,
    NOISE0,
    S1Server,
    SliceGeometry,
    calibration_xml,
    grd_item,
    noise_xml,
    rtc_item,
    truth_sigma0,
    write_aoi,
)

from pipeline.aoi import DateWindow, load_aoi  # noqa: E402
from pipeline.radar.build import RadarRequest, build_radar  # noqa: E402
from pipeline.radar.stac import RadarStacOptions  # noqa: E402

LON, LAT = 30.52, 50.45
PUBLISHED = "PWTT published, Ukrainian cities: 0.665 (Avdiivka) - 0.926 (Kremenchuk), pooled 0.842"


def _strips(path: Path, shape: tuple[int, int], fill, gcps=None, **profile) -> None:
    """A tiled GeoTIFF written 512 rows at a time, then copied to a ZSTD COG."""
    h, w = shape
    tmp = path.with_suffix(".strip.tif")
    prof = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": 1,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        **profile,
    }
    rng = np.random.default_rng(0)
    with rasterio.open(tmp, "w", **prof) as dst:
        for r0 in range(0, h, 512):
            rows = np.arange(r0, min(h, r0 + 512), dtype=np.float64)
            dst.write(fill(rows, rng), 1, window=Window(0, r0, w, len(rows)))
        if gcps is not None:
            dst.gcps = (gcps, CRS.from_epsg(4326))
    with rasterio.open(tmp) as src:
        rasterio.shutil.copy(
            src,
            path,
            driver="COG",
            COMPRESS="ZSTD",
            BLOCKSIZE="512",
            OVERVIEWS="AUTO",
            NUM_THREADS="2",
        )
    tmp.unlink()


def _speckle(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    return rng.gamma(4.4, 1 / 4.4, size=shape)


def _grd(folder: Path, geom: SliceGeometry, pol: str) -> Path:
    path = folder / f"grd-{pol}.tif"
    if path.exists():
        return path
    pixel = np.arange(geom.pixels, dtype=np.float64)

    def fill(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        line, pix = np.meshgrid(rows, pixel, indexing="ij")
        x, y = geom.utm(line, pix)
        a = A0 + A_SLOPE * pix
        power = truth_sigma0(x, y, pol) * _speckle(rng, x.shape) * a * a + NOISE0
        return np.clip(np.sqrt(power), 1, 65535).astype(np.uint16)

    _strips(path, (geom.lines, geom.pixels), fill, gcps=geom.gcps(step=500), dtype="uint16")
    for kind, body in (
        ("calibration", calibration_xml(geom.lines, geom.pixels, pol)),
        ("noise", noise_xml(geom.lines, geom.pixels)),
    ):
        (folder / f"grd-{kind}-{pol}.xml").write_bytes(body)
    return path


def _rtc(folder: Path, transform: Affine, px: int, pol: str) -> Path:
    path = folder / f"rtc-{pol}.tif"
    if path.exists():
        return path
    cols = np.arange(px) + 0.5

    def fill(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c, r = np.meshgrid(cols, rows + 0.5)
        x, y = transform * (c, r)
        return (truth_sigma0(np.asarray(x), np.asarray(y), pol) * _speckle(rng, c.shape)).astype(
            np.float32
        )

    _strips(
        path, (px, px), fill, dtype="float32", crs="EPSG:32636", transform=transform, nodata=-32768
    )
    return path


def _slices(folder: Path, km: float) -> tuple[SliceGeometry, Affine, int]:
    """One GRD and one RTC slice of ``km`` a side centred on the AOI (cached)."""
    px = int(round(km * 100)) // 2 * 2
    x, y = Transformer.from_crs(4326, 32636, always_xy=True).transform(LON, LAT)
    geom = SliceGeometry((x + px * 5.0, y + px * 5.0), px, px, "descending")
    transform = Affine(10, 0, round(x / 10) * 10 - px * 5, 0, -10, round(y / 10) * 10 + px * 5)
    folder.mkdir(parents=True, exist_ok=True)
    for pol in ("vv", "vh"):
        _grd(folder, geom, pol)
        _rtc(folder, transform, px, pol)
    return geom, transform, px


def _items(
    server: S1Server, geom: SliceGeometry, transform: Affine, px: int, dates: int
) -> list[dict]:
    """``dates`` acquisitions of one orbit, 12 days apart, pre and post the war."""
    items = []
    days = [
        dt.datetime(2021, 6, 1, 4, 30, tzinfo=dt.UTC) + dt.timedelta(days=12 * k)
        for k in range(dates - 2)
    ]
    days += [
        dt.datetime(2022, 5, 3, 4, 30, tzinfo=dt.UTC) + dt.timedelta(days=12 * k) for k in range(2)
    ]
    grd = {"vv": "grd-vv.tif", "vh": "grd-vh.tif"} | {
        f"{k}-{p}": f"grd-{k}-{p}.xml" for k in ("calibration", "noise") for p in ("vv", "vh")
    }
    for i, start in enumerate(days):
        hrefs = {k: server.file_url(v) for k, v in grd.items()}
        items.append(grd_item(f"S1A_GRD_{i:03d}", hrefs, geom, start, 36))
        rtc = {p: server.file_url(f"rtc-{p}.tif") for p in ("vv", "vh")}
        items.append(
            rtc_item(f"S1A_RTC_{i:03d}", rtc, transform, (px, px), start, 36, "descending")
        )
    return items


def _fetch(args: argparse.Namespace) -> None:
    folder = OUT / f"radar_slices_{args.slice_km:g}km"
    geom, transform, px = _slices(folder, args.slice_km)
    sizes = {
        k: sum((folder / f"{k}-{p}.tif").stat().st_size for p in ("vv", "vh"))
        for k in ("grd", "rtc")
    }
    print(
        f"slice {args.slice_km:g} km = {px} x {px} px; per acquisition VV+VH: GRD "
        f"{sizes['grd'] / 2**20:.1f} MiB, RTC {sizes['rtc'] / 2**20:.1f} MiB; "
        f"{args.dates} acquisitions"
    )
    with S1Server(folder) as server, tempfile.TemporaryDirectory() as tmp:
        items = _items(server, geom, transform, px, args.dates)
        half = args.aoi_km / 2 / 111.32 / np.cos(np.radians(LAT))
        aoi = load_aoi(write_aoi(Path(tmp), LON, LAT, half_deg=half, after="2022-05-01"))
        pre = DateWindow(dt.date(2021, 3, 1), dt.date(2022, 2, 23))
        for name, refuse in (("rtc", set()), ("grd", {"sentinel-1-rtc"})):
            server.reset(items)
            server.refuse_token = refuse
            t0 = time.perf_counter()
            build_radar(
                aoi,
                RadarRequest(
                    out=Path(tmp) / f"{name}.zarr", pre=pre, stac=RadarStacOptions(url=server.url)
                ),
            )
            seconds = time.perf_counter() - t0
            got = sum(v for k, v in server.bytes_served.items() if k.endswith(".tif"))
            xml = sum(v for k, v in server.bytes_served.items() if k.endswith(".xml"))
            reads = sum(r.startswith("GET /files/") for r in server.requests)
            whole = sizes[name] * args.dates
            print(
                f"{name}: {got / 2**20:.2f} MiB of COG ranges (+{xml / 2**10:.0f} KiB XML) "
                f"in {reads} requests, {seconds:.1f} s; whole slices {whole / 2**20:.1f} "
                f"MiB = {got / whole:.2%} of them"
            )
        server.reset(items)
        server.signed = False
        t0 = time.perf_counter()
        for name in ("grd-vv.tif", "grd-vh.tif"):
            requests.get(server.file_url(name), timeout=600).raise_for_status()
        once = time.perf_counter() - t0
    print(
        f"whole-slice download of one GRD acquisition: {once:.1f} s on loopback "
        f"(x{args.dates} acquisitions = {once * args.dates:.1f} s); at 100 Mbit/s "
        f"{sizes['grd'] * args.dates * 8 / 1e8:.0f} s"
    )


def _footprint_auc(t_map: np.ndarray, transform: Affine, buildings: Path) -> tuple[float, float]:
    import pyogrio
    from rasterio.features import rasterize
    from sklearn.metrics import roc_auc_score

    frame = pyogrio.read_dataframe(buildings)
    bid = rasterize(
        zip(frame.geometry, frame.building_id, strict=True),
        out_shape=t_map.shape,
        transform=transform,
        dtype="int64",
    )
    ok = np.isfinite(t_map)
    n = int(frame.building_id.max()) + 1
    total = np.bincount(bid[ok], weights=t_map[ok], minlength=n)
    count = np.bincount(bid[ok], minlength=n)
    keep = frame[(count[frame.building_id] > 0) & frame.damage_class.isin([0, 1, 2, 3])]
    y = keep.damage_class.isin([1, 2, 3]).to_numpy()
    score = (total / np.maximum(count, 1))[keep.building_id]
    area = keep.geometry.area.to_numpy()
    return roc_auc_score(y, score), roc_auc_score(y, score, sample_weight=area)


def _plain_t(store: Path) -> tuple[np.ndarray, Affine]:
    """Per orbit and polarisation, |mean_post - mean_pre| / pooled s.e. of log power; max."""
    import rioxarray  # noqa: F401
    import xarray as xr

    from contract import radar

    ds = xr.open_zarr(store, decode_coords="all")
    post_start = np.datetime64(ds.attrs[radar.ATTR_POST].split("/")[0])
    t_max = None
    for orbit in sorted(set(ds[radar.ORBIT].values.tolist())):
        mine = ds[radar.ORBIT].values == orbit
        post = ds.time.values >= post_start
        for pol in radar.POLARISATIONS:
            a = np.log(ds[pol].values[mine])
            pre_a, post_a = a[~post[mine]], a[post[mine]]
            n1, n2 = len(pre_a), len(post_a)
            if n1 < 3 or n2 < 2:
                continue
            pooled = ((n1 - 1) * pre_a.var(0, ddof=1) + (n2 - 1) * post_a.var(0, ddof=1)) / (
                n1 + n2 - 2
            )
            t = np.abs(post_a.mean(0) - pre_a.mean(0)) / np.sqrt(pooled * (1 / n1 + 1 / n2))
            t_max = t if t_max is None else np.maximum(t_max, t)
    return t_max, ds.rio.transform()


def _pwtt(store: Path, out: Path) -> tuple[np.ndarray, Affine] | None:
    try:
        from damagenet.radar.pwtt_map import PwttOptions, pwtt_map
    except ImportError:
        return None
    pwtt_map(store, out, PwttOptions())
    with rasterio.open(out) as src:
        return src.read(1), src.transform


def _calibration(args: argparse.Namespace) -> None:
    from pipeline.synthetic import generate_synthetic

    print(PUBLISHED)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for slug in ("bucha", "irpin", "hostomel")[: args.towns]:
            aoi = load_aoi(ROOT / "aois" / f"{slug}.geojson")
            folder = Path(tmp) / slug
            town = generate_synthetic(aoi, folder / "syn", seed=0, max_size_km=4.0)
            store = folder / f"{slug}.zarr"
            t0 = time.perf_counter()
            build_radar(
                aoi,
                RadarRequest(out=store, source="synthetic", input=folder / "syn", max_size_km=4.0),
            )
            seconds = time.perf_counter() - t0
            plain = _footprint_auc(*_plain_t(store), town.buildings)
            pw = _pwtt(store, folder / "pwtt" / f"{slug}_pwtt.tif")
            pw_auc = _footprint_auc(*pw, town.buildings) if pw is not None else None
            rows.append((slug, plain, pw_auc))
            shown = "not available" if pw_auc is None else f"{pw_auc[0]:.3f} / {pw_auc[1]:.3f}"
            print(
                f"{slug}: store {seconds:.1f} s; footprint AUC unweighted / area-weighted: "
                f"plain per-pixel t-test {plain[0]:.3f} / {plain[1]:.3f}, "
                f"PWTT (damagenet.radar) {shown}"
            )
    if rows and all(r[2] is not None for r in rows):
        weighted = [r[2][1] for r in rows]
        print(
            f"PWTT area-weighted AUC over the towns: mean {np.mean(weighted):.3f}, "
            f"range {min(weighted):.3f}-{max(weighted):.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--slice-km",
        type=float,
        default=50.0,
        help="side of the served slices in km (real: about 290 x 220)",
    )
    parser.add_argument("--aoi-km", type=float, default=10.0, help="side of the AOI in km")
    parser.add_argument("--dates", type=int, default=4, help="acquisitions served (>= 3)")
    parser.add_argument("--towns", type=int, default=3, help="synthetic towns for part 2 (0-3)")
    parser.add_argument("--skip-fetch", action="store_true", help="only part 2")
    args = parser.parse_args()
    os.environ.setdefault("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    if not args.skip_fetch:
        _fetch(args)
    if args.towns:
        _calibration(args)


if __name__ == "__main__":
    main()
