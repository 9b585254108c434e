"""PWTT map throughput and memory: a 20 x 20 km city with 60 acquisitions over three orbits.

Usage: python benchmarks/pwtt_throughput.py [--km 20] [--acquisitions 60] [--strip-rows 512]
       [--null] [--keep]

Writes a radar store in the layout of :mod:`contract.radar` (consolidated Zarr 2, one
acquisition by 512 x 512 px, five-look speckle over a town-like backscatter field, a damaged
quarter after the war's start), then runs ``damagenet pwtt`` on it in a fresh process and
prints the seconds, km2 per second, and that process's peak resident memory beside the target
(under a minute on the 2-core machine) and beside the floor of a process that only imports the
modules. ``--null`` also runs the pre-war null test (``damagenet pwtt --null``, what the
workflow does with both sensors), then times ``damagenet fuse`` of that T map with a
probability map on the same grid.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT, baseline_rss, run_child  # noqa: E402

from contract import radar  # noqa: E402

TARGET_S = 60.0
ORBITS = (21, 94, 167)

CHILD = """
import json, time
from damagenet.radar.pwtt_map import PwttOptions, pwtt_map
t0 = time.perf_counter()
summary = pwtt_map({store!r}, {out!r}, PwttOptions(strip_rows={rows}, null={null}))
print(json.dumps({{"seconds": time.perf_counter() - t0, "damaged_km2": summary["damaged_km2"]}}))
"""


FUSE_CHILD = """
import json, time
from damagenet.radar.fused_map import FuseOptions, fuse_map
t0 = time.perf_counter()
summary = fuse_map({pwtt!r}, {prob!r}, {out!r}, FuseOptions())
print(json.dumps({{"seconds": time.perf_counter() - t0, "damaged_km2": summary["damaged_km2"]}}))
"""


def time_fuse(t_map: Path, size: int) -> None:
    """Fuse the T map with a probability map of the same grid (damage in the same quarter)."""
    import rasterio

    prob = t_map.with_name("city_damage_prob.tif")
    with rasterio.open(t_map) as src:
        profile = {**src.profile, "driver": "GTiff", "tiled": True}
    p = np.random.default_rng(1).beta(1, 12, (size, size)).astype(np.float32)
    p[: size // 2, : size // 2] = np.clip(p[: size // 2, : size // 2] + 0.5, 0, 1)
    with rasterio.open(prob, "w", **profile) as dst:
        dst.write(p, 1)
        dst.set_band_description(1, "damage_probability")
    out = t_map.with_name("city_fused.tif")
    lines, peak = run_child(FUSE_CHILD.format(pwtt=str(t_map), prob=str(prob), out=str(out)))
    seconds = lines[0]["seconds"]
    km2 = (size / 100) ** 2
    print(
        f"fused map of {km2:.0f} km2: {seconds:.1f} s = {km2 / seconds:.1f} km2/s, peak memory "
        f"{peak:.0f} MiB; damaged {lines[0]['damaged_km2']:.1f} km2"
    )


def schedule(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` passes over three orbits, a quarter of each orbit's after the war's start."""
    per = n // len(ORBITS)
    n_post = max(2, per // 4)
    times, orbits = [], []
    for k, orbit in enumerate(ORBITS):
        pre0 = np.datetime64("2021-02-25T04:00") + np.timedelta64(k * 2, "D")
        post0 = np.datetime64("2022-03-01T04:00") + np.timedelta64(k * 2, "D")
        times += [pre0 + np.timedelta64(12 * i, "D") for i in range(per - n_post)]
        times += [post0 + np.timedelta64(12 * i, "D") for i in range(n_post)]
        orbits += [orbit] * per
    order = np.argsort(np.array(times, "datetime64[ns]"), kind="stable")
    return np.array(times, "datetime64[ns]")[order], np.array(orbits, np.int16)[order]


def write_city(path: Path, size: int, n: int) -> Path:
    """The benchmark's store, generated and written chunk by chunk by dask."""
    import dask
    import dask.array as da
    import rioxarray  # noqa: F401
    import xarray as xr
    from affine import Affine

    times, orbits = schedule(n)
    post = (times >= np.datetime64("2022-03-01"))[:, None, None]
    chunks = (1, radar.CHUNK, radar.CHUNK)
    rng = da.random.default_rng(0)
    field = 0.05 + 0.5 * rng.random((1, size, size), chunks=chunks) ** 3  # streets to roofs
    quarter = np.zeros((1, size, size), dtype=bool)
    quarter[:, : size // 2, : size // 2] = True
    damaged = da.from_array(quarter, chunks=chunks)
    change = da.where(post & damaged, 0.5, 1.0)
    pols = {
        pol: (rng.gamma(5.0, 0.2, (n, size, size), chunks=chunks) * field * change * k).astype(
            np.float32
        )
        for pol, k in (("vv", 1.0), ("vh", 0.2))
    }
    x = 300_000 + (np.arange(size) + 0.5) * 10
    y = 5_600_000 - (np.arange(size) + 0.5) * 10
    coords = {
        "time": times,
        "y": y,
        "x": x,
        radar.ORBIT: ("time", orbits),
        radar.ORBIT_STATE: ("time", np.array(["ascending"] * n, dtype=object)),
        radar.PLATFORM: ("time", np.array(["sentinel-1a"] * n, dtype=object)),
    }
    attrs = {
        radar.ATTR_CALIBRATION: radar.GAMMA0_RTC,
        radar.ATTR_SOURCE: "benchmark",
        radar.ATTR_AOI: "city",
        radar.ATTR_PRE: "2021-02-24/2022-02-23",
        radar.ATTR_POST: "2022-03-01/2022-05-31",
        "units": radar.UNITS,
    }
    dims = ("time", "y", "x")
    ds = xr.Dataset({p: (dims, a) for p, a in pols.items()}, coords=coords, attrs=attrs)
    ds = ds.rio.write_crs("EPSG:32636", grid_mapping_name=radar.GRID_MAPPING)
    ds = ds.rio.write_transform(
        Affine(10, 0, 300_000, 0, -10, 5_600_000), grid_mapping_name=radar.GRID_MAPPING
    )
    enc = {p: {**ds[p].encoding, "chunks": chunks} for p in radar.POLARISATIONS}
    with dask.config.set(scheduler="threads"):
        ds.to_zarr(path, mode="w", encoding=enc, zarr_format=2, consolidated=True)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--km", type=float, default=20.0, help="side of the city in km")
    p.add_argument("--acquisitions", type=int, default=60)
    p.add_argument("--strip-rows", type=int, default=512)
    p.add_argument("--null", action="store_true", help="with the pre-war null test, then fuse")
    p.add_argument("--keep", action="store_true", help="keep the store for another run")
    args = p.parse_args()
    size = round(args.km * 100)
    folder = OUT / f"pwtt_{size}_{args.acquisitions}"
    store = folder / "city.zarr"
    if not store.exists():
        t0 = time.perf_counter()
        write_city(store, size, args.acquisitions)
        print(f"store written in {time.perf_counter() - t0:.0f} s: {store}")
    out = folder / "maps" / "city_pwtt.tif"
    code = CHILD.format(store=str(store), out=str(out), rows=args.strip_rows, null=args.null)
    lines, peak = run_child(code)
    seconds = lines[0]["seconds"]
    km2 = (size / 100) ** 2
    floor = baseline_rss("damagenet.radar.pwtt_map")
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(
        f"PWTT map of {km2:.0f} km2 ({size} x {size} px), {args.acquisitions} acquisitions over "
        f"{len(ORBITS)} orbits, VV+VH{' with the null test' if args.null else ''}: "
        f"{seconds:.1f} s = {km2 / seconds:.1f} km2/s "
        f"(target: under {TARGET_S:.0f} s -> {'met' if seconds < TARGET_S else 'NOT met'})"
    )
    print(f"peak memory {peak:.0f} MiB (a process importing the modules: {floor:.0f} MiB)")
    print(f"damaged area found: {lines[0]['damaged_km2']:.1f} km2 of {km2 / 4:.0f} km2 damaged")
    if args.null:
        time_fuse(out, size)
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
