"""How close is the synthetic test bed to real Sentinel-2 pairs? Real vs realistic vs easy.

Usage: python benchmarks/synthetic_realism.py [--aois bucha irpin hostomel] [--seeds 0 1]
       [--km 4]

Generates synthetic towns in both modes and measures them exactly as the real figures of the
original study's EDA were measured (``../shared/reference/original_study.md``, "What real
patches look like"): 64 x 64 patch pairs, each image scaled by its own maximum (over its R, G, B
bands: the renderings were RGB), then

- background change: per patch, the mean over pixels outside damage discs of
  |after - before| (averaged over R, G, B); the median over patches;
- inside / outside: per patch with damage, the mean change inside ~50 m discs (5 px) around the
  damage sites over the mean change outside; median (10th-90th percentile);
- before/after correlation: per patch, Pearson's r of the before and after brightness
  (mean of R, G, B) over its pixels; median and 10th percentile;
- urban contrast: in urban patches (at least 10 % of the pixel centres on a building footprint
  of ``buildings.gpkg``), the mean absolute difference of horizontally and vertically adjacent
  brightness values of the before image; the median over patches.

Clouds and swath edges are switched off (the study's EDA patches were clear); the after scene's
+1000 DN offset is removed. Damage sites are the UNOSAT points of classes 1-3 assessed on or
before the after date (what the labels use).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from rasterio.features import rasterize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.aoi import load_aoi  # noqa: E402
from pipeline.synthetic import Nuisances, generate_synthetic  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PATCH, DISC_PX = 64, 5
#: A patch is urban when this share of its pixel centres falls on building footprints.
URBAN_SHARE = 0.1
RGB = (2, 1, 0)  # B04, B03, B02 in the project's B02, B03, B04, B08 order
#: The real figures (original study's EDA): name -> (value, detail)
REAL = {
    "background change": (0.069, ""),
    "inside / outside": (1.06, "0.75-1.48"),
    "correlation": (0.66, "p10 0.18"),
    "urban contrast": (0.066, ""),
}


def town_patches(aoi_slug: str, seed: int, km: float, mode: str, tmp: Path) -> dict:
    """Per-patch figures of one synthetic town."""
    aoi = load_aoi(ROOT / "aois" / f"{aoi_slug}.geojson")
    t0 = time.perf_counter()
    paths = generate_synthetic(
        aoi,
        tmp / f"{mode}_{aoi_slug}_{seed}",
        seed=seed,
        max_size_km=km,
        mode=mode,
        nuisances=Nuisances(cloud=False, swath_edge=False),
    )
    seconds = time.perf_counter() - t0
    with (
        rasterio.open(paths.before) as b,
        rasterio.open(paths.after) as a,
        rasterio.open(paths.truth) as t,
    ):
        before = b.read().astype(np.float64)
        after = a.read().astype(np.float64) - 1000
        cover = t.read(1)
        inv = ~b.transform
        crs = b.crs
        transform = b.transform
    footprints = gpd.read_file(paths.buildings)
    roofs = rasterize(
        footprints.geometry,
        out_shape=cover.shape,
        transform=transform,
        fill=0,
        default_value=1,
        dtype="uint8",
    ).astype(bool)
    sites = gpd.read_file(paths.unosat_gpkg).to_crs(crs)
    visible = sites["Main_Damage_Site_Class"].isin([1, 2, 3])
    cols, rows = inv * (sites.geometry.x[visible].to_numpy(), sites.geometry.y[visible].to_numpy())
    disc = _discs(cover.shape, np.asarray(rows), np.asarray(cols))
    return {**measure(before, after, disc, roofs), "seconds": seconds}


def _discs(shape: tuple[int, int], rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    rr, cc = np.mgrid[0 : shape[0], 0 : shape[1]]
    disc = np.zeros(shape, dtype=bool)
    for r, c in zip(rows, cols, strict=True):
        r0, r1 = max(0, int(r) - DISC_PX - 1), min(shape[0], int(r) + DISC_PX + 2)
        c0, c1 = max(0, int(c) - DISC_PX - 1), min(shape[1], int(c) + DISC_PX + 2)
        d = np.hypot(rr[r0:r1, c0:c1] + 0.5 - r, cc[r0:r1, c0:c1] + 0.5 - c)
        disc[r0:r1, c0:c1] |= d <= DISC_PX
    return disc


def measure(
    before: np.ndarray, after: np.ndarray, disc: np.ndarray, building: np.ndarray
) -> dict[str, list[float]]:
    """The four figures per 64 x 64 patch of one scene pair (lists over patches)."""
    out: dict[str, list[float]] = {"background": [], "ratio": [], "corr": [], "contrast": []}
    h, w = disc.shape
    for r in range(0, h - PATCH + 1, PATCH):
        for c in range(0, w - PATCH + 1, PATCH):
            win = (slice(r, r + PATCH), slice(c, c + PATCH))
            b = before[(list(RGB), *win)]
            a = after[(list(RGB), *win)]
            b, a = b / b.max(), a / a.max()
            change = np.abs(a - b).mean(axis=0)
            inside = disc[win]
            outside_change = change[~inside].mean()
            out["background"].append(float(outside_change))
            if inside.any():
                out["ratio"].append(float(change[inside].mean() / outside_change))
            gb, ga = b.mean(axis=0), a.mean(axis=0)
            out["corr"].append(float(np.corrcoef(gb.ravel(), ga.ravel())[0, 1]))
            if building[win].mean() >= URBAN_SHARE:
                contrast = np.concatenate(
                    [np.abs(np.diff(gb, axis=0)).ravel(), np.abs(np.diff(gb, axis=1)).ravel()]
                ).mean()
                out["contrast"].append(float(contrast))
    return out


def summarise(parts: list[dict]) -> dict[str, tuple[float, str]]:
    def pool(key: str) -> np.ndarray:
        return np.array([v for p in parts for v in p[key]])

    ratio, corr = pool("ratio"), pool("corr")
    return {
        "background change": (float(np.median(pool("background"))), ""),
        "inside / outside": (
            float(np.median(ratio)),
            f"{np.percentile(ratio, 10):.2f}-{np.percentile(ratio, 90):.2f}",
        ),
        "correlation": (float(np.median(corr)), f"p10 {np.percentile(corr, 10):.2f}"),
        "urban contrast": (
            float(np.median(pool("contrast"))) if len(pool("contrast")) else float("nan"),
            "",
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--aois", nargs="+", default=["bucha", "irpin", "hostomel"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--km", type=float, default=4.0, help="town side (default: 4 km)")
    args = parser.parse_args()
    results, timing, counts = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("realistic", "easy"):
            parts = [
                town_patches(a, s, args.km, mode, Path(tmp)) for a in args.aois for s in args.seeds
            ]
            results[mode] = summarise(parts)
            timing[mode] = np.median([p["seconds"] for p in parts])
            counts[mode] = (
                sum(len(p["background"]) for p in parts),
                sum(len(p["ratio"]) for p in parts),
                sum(len(p["contrast"]) for p in parts),
            )
    print(
        f"Synthetic realism: {len(args.aois)} AOIs x {len(args.seeds)} seeds, {args.km:g} km "
        f"towns, {PATCH} x {PATCH} px patches; {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}"
    )
    print()
    print("| figure | real (study EDA) | synthetic realistic | synthetic easy |")
    print("| --- | --- | --- | --- |")
    for name, (value, detail) in REAL.items():
        cells = [f"{value:.3g}" + (f" ({detail})" if detail else "")]
        for mode in ("realistic", "easy"):
            v, d = results[mode][name]
            cells.append(f"{v:.3g}" + (f" ({d})" if d else ""))
        print(f"| {name} | " + " | ".join(cells) + " |")
    for mode in ("realistic", "easy"):
        n, nd, nu = counts[mode]
        print(
            f"\n{mode}: {n} patches, {nd} with damage, {nu} urban; generation "
            f"{timing[mode]:.1f} s per {args.km:g} km town (median)",
            end="",
        )
    print()


if __name__ == "__main__":
    main()
