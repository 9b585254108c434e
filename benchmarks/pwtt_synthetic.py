"""PWTT, Sentinel-2 baselines and their fusions on the synthetic towns, leave-town-out.

Usage: python benchmarks/pwtt_synthetic.py [--towns 8] [--km 2] [--seed0 0]

Per town (one seed each), from the same ground and the same damage: ``pipeline synthetic`` draws
the town, its damage and clear before / after / pre-war Sentinel-2 scenes; the radar bed
(``pipeline.radar.synthetic``) renders three orbits of Sentinel-1 for the war's windows (twelve
months before 2022-02-24, May-June 2022) and for a no-war pair of windows a year earlier.
``damagenet pwtt --null`` maps T and records its pre-war null (the test inside the pre window,
what a user has at map time). Cloud over the after scene (0, 50, 90 % of the town, the
generator's own cumulus and shadow) hides the optical evidence beneath it.

Methods, each a score per unit:

- ``pwtt``: mean T, standardised with the town's pre-war null (monotone within a town, so its
  per-town AUC is PWTT's; pooled, every town is on one scale as the fusions are);
- ``s2 change``: the project's training-free detector, per pixel mean |after - before|
  reflectance, standardised robustly over the town (median, 1.4826 MAD), unit mean; unseen: 0;
- ``s2 gbt``: the project's Sentinel-2 baseline (``damagenet.evaluation.baselines``: 144
  features of a 16 x 16 px window, before, after and change; for a footprint the window around
  it), fitted on the other towns' clear scenes, as a deployed model is; a unit whose window is
  touched by cloud has no optical value and gets its town's median score (no evidence);
- ``fusion sum``: ``damagenet fuse``'s arithmetic per pixel, z of T with the pre-war null plus
  the robust z of the optical change, a missing optical value counting 0, unit mean;
- ``fusion sum, no-war null``: the same with both nulls from the true no-war pair (radar a
  year earlier, optical pre-war against before): what a perfect null would give;
- ``fusion sum, s2 gbt``: the same sum with the trees' probability as the optical evidence
  (its logit, standardised robustly over the town's units; a clouded unit counts 0): what
  ``damagenet fuse`` does with a Sentinel-2 model's map;
- ``fusion gbt``: the learned fusion (``damagenet.radar.fusion``) on each unit's mean and max of
  the radar and optical z, fitted on the other towns at the same cloud cover.

Units: building footprints, area-weighted (PWTT's protocol; damaged = UNOSAT classes 1-3,
intact = 0, "possible" left out), and 16 x 16 px patches holding assessed buildings (damaged if
any damaged building pixel; unweighted). Pooled ROC-AUC over the towns with 95 % percentile
intervals that resample whole towns, and paired intervals on differences
(``damagenet.evaluation.intervals``); for footprints also PWTT's per-city protocol, the mean of
per-town AUCs and of per-town differences, with intervals over resampled towns. No Sentinel-2
network is trained here: see ``docs/radar-damage.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyogrio
import rasterio
from rasterio.features import rasterize
from scipy.stats import bootstrap

from damagenet.evaluation.baselines import fit_gbt, patch_features
from damagenet.evaluation.intervals import grouped_interval, paired_difference
from damagenet.evaluation.scores import roc_auc
from damagenet.radar.fusion import NullStats, fit_learned, logit, training_free
from damagenet.radar.pwtt_map import PwttOptions, pwtt_map
from pipeline.aoi import DateWindow, load_aoi
from pipeline.radar.build import RadarRequest, build_radar
from pipeline.synthetic import generate_synthetic
from pipeline.synthetic.nuisances import add_cloud
from pipeline.synthetic.town import Nuisances

PUBLISHED = "Ukraine 0.665 (Avdiivka) - 0.926 (Kremenchuk), pooled 0.842 over 23 cities"
DAMAGED = (1, 2, 3)
WAR = (
    DateWindow(dt.date(2021, 2, 24), dt.date(2022, 2, 23)),
    DateWindow(dt.date(2022, 5, 1), dt.date(2022, 6, 30)),
)
#: the no-war pair: a year earlier; one month after, as S1B's 6-day repeat doubles the passes
NULL = (
    DateWindow(dt.date(2020, 2, 24), dt.date(2021, 2, 23)),
    DateWindow(dt.date(2021, 5, 1), dt.date(2021, 5, 31)),
)
CLOUDS = (0.0, 0.5, 0.9)
PATCH = 16
METHODS = (
    "pwtt",
    "s2 change",
    "s2 gbt",
    "fusion sum",
    "fusion sum, no-war null",
    "fusion sum, s2 gbt",
    "fusion gbt",
)
#: paired differences printed under each table: (a, b) for a minus b
PAIRS = (
    ("s2 change", "pwtt"),
    ("s2 gbt", "pwtt"),
    ("fusion sum", "pwtt"),
    ("fusion sum, s2 gbt", "pwtt"),
    ("fusion sum, s2 gbt", "s2 gbt"),
    ("fusion gbt", "fusion sum, s2 gbt"),
    ("fusion sum", "fusion sum, no-war null"),
)


@dataclass
class Units:
    """One town's scored units at one level: labels, weights, scores and learned features."""

    y: np.ndarray
    w: np.ndarray
    scores: dict[tuple[str, float], np.ndarray] = field(default_factory=dict)
    features: dict[tuple[str, float], np.ndarray] = field(default_factory=dict)
    #: per cloud cover, whether the unit's 16 x 16 window is free of cloud
    clear: dict[float, np.ndarray] = field(default_factory=dict)


def write_aoi(folder: Path, seed: int, km: float) -> Path:
    lon, lat, half = 30.0 + 0.3 * seed, 50.0, km / 111.0 / 1.3
    ring = [
        [lon - half, lat - half],
        [lon + half, lat - half],
        [lon + half, lat + half],
        [lon - half, lat + half],
        [lon - half, lat - half],
    ]
    props = {
        "name": f"Town {seed}",
        "slug": f"town{seed}",
        "before": "2021-10-01",
        "after": "2022-05-01",
        "unosat_aoi": "none",
    }
    geometry = {"type": "Polygon", "coordinates": [ring]}
    doc = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": props, "geometry": geometry}],
    }
    path = folder / f"town{seed}.geojson"
    path.write_text(json.dumps(doc))
    return path


def t_map(aoi, folder: Path, seed: int, km: float, windows, name: str, null: bool):
    """T of one pair of windows, and the pre-war null ``damagenet pwtt --null`` records."""
    store = folder / f"{name}.zarr"
    req = RadarRequest(
        out=store,
        source="synthetic",
        input=folder / "syn",
        seed=seed,
        max_size_km=km,
        pre=windows[0],
        post=windows[1],
    )
    build_radar(aoi, req)
    out = folder / "maps" / f"{name}_pwtt.tif"
    summary = pwtt_map(store, out, PwttOptions(null=null))
    with rasterio.open(out) as src:
        t = src.read(1, masked=True).filled(np.nan).astype(np.float64)
    stats = summary["null"]
    return t, (NullStats(stats["mean"], stats["sd"]) if null else None)


def scene_dn(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read().astype(np.float32)


def cloud_masks(shape: tuple[int, int], seed: int) -> dict[float, np.ndarray]:
    """Where the generator's cumulus and its shadow cover the after scene, per cover."""
    masks = {}
    for cover in CLOUDS:
        mask = np.zeros(shape, bool)
        if cover > 0:
            dn = np.zeros((4, *shape), np.float32)
            mask = add_cloud(np.random.default_rng(seed), dn, np.zeros(shape, np.uint8), cover)
        masks[cover] = mask
    return masks


def unit_means(ids: np.ndarray, n: int, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and max of ``values`` per unit id (NaN where under half the unit is seen)."""
    ok = (ids > 0) & np.isfinite(values)
    count = np.bincount(ids[ids > 0], minlength=n).astype(float)
    seen = np.bincount(ids[ok], minlength=n)
    total = np.bincount(ids[ok], weights=values[ok], minlength=n)
    top = np.full(n, -np.inf)
    np.maximum.at(top, ids[ok], values[ok])
    good = seen >= 0.5 * np.maximum(count, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(good, total / seen, np.nan), np.where(good, top, np.nan)


@dataclass
class Town:
    """One town's per-pixel maps and its units' ids and labels."""

    t: np.ndarray
    radar_null: NullStats
    radar_nowar: NullStats
    before: np.ndarray
    after: np.ndarray
    optical_nowar: NullStats
    clouds: dict[float, np.ndarray]
    ids: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    weighted: dict[str, bool]


def make_town(folder: Path, seed: int, km: float) -> Town:
    aoi = load_aoi(write_aoi(folder, seed, km))
    nuisances = Nuisances(cloud=False, swath_edge=False, offset=False)
    syn = generate_synthetic(
        aoi, folder / "syn", seed=seed, max_size_km=km, prewar=True, nuisances=nuisances
    )
    t, radar_null = t_map(aoi, folder, seed, km, WAR, "war", null=True)
    t_nowar, _ = t_map(aoi, folder, seed, km, NULL, "nowar", null=False)
    before, after, prewar = (scene_dn(p) for p in (syn.before, syn.after, syn.prewar))
    frame = pyogrio.read_dataframe(syn.buildings)
    with rasterio.open(syn.after) as src:
        fid = rasterize(
            zip(frame.geometry, frame.building_id, strict=True),
            out_shape=t.shape,
            transform=src.transform,
            dtype="int64",
        )
    n = int(max(fid.max(), frame.building_id.max())) + 1
    cls = np.full(n, -1)
    cls[frame.building_id] = frame.damage_class
    lab = np.where(np.isin(cls, DAMAGED), 1, np.where(cls == 0, 0, -1))
    rows, cols = np.indices(t.shape)
    assessed = (fid > 0) & (lab[fid] >= 0)
    pid = np.where(assessed, 1 + (rows // PATCH) * (t.shape[1] // PATCH + 1) + cols // PATCH, 0)
    plab = np.full(int(pid.max()) + 1, -1)
    np.maximum.at(plab, pid[assessed], lab[fid[assessed]])
    return Town(
        t,
        radar_null,
        NullStats.of(t_nowar),
        before,
        after,
        NullStats.of(change(prewar, before)),
        cloud_masks(t.shape, seed),
        {"footprint": fid, "patch": pid},
        {"footprint": lab, "patch": plab},
        {"footprint": True, "patch": False},
    )


def change(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """The training-free detector per pixel: mean over bands of |after - before| reflectance."""
    return np.abs(after - before).mean(axis=0) / 10000.0


def corners(level: str, ids: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Top-left corners of each kept unit's 16 x 16 window: a patch's own, a footprint's
    centred on it (within the grid)."""
    h, w = ids.shape
    if level == "patch":
        per_row = w // PATCH + 1
        r, c = (keep - 1) // per_row * PATCH, (keep - 1) % per_row * PATCH
        return np.column_stack([np.minimum(r, h - PATCH), np.minimum(c, w - PATCH)])
    rows, cols = np.indices(ids.shape)
    n = int(ids.max()) + 1
    count = np.maximum(np.bincount(ids.ravel(), minlength=n), 1)
    centre = [
        np.bincount(ids.ravel(), weights=a.ravel(), minlength=n) / count for a in (rows, cols)
    ]
    return np.column_stack(
        [
            np.clip(np.round(c[keep]) - PATCH // 2, 0, size - PATCH)
            for c, size in zip(centre, (h, w), strict=True)
        ]
    ).astype(int)


def windows(town: Town, level: str, keep: np.ndarray, image: np.ndarray) -> np.ndarray:
    """``(units, ..., 16, 16)``: each kept unit's window of ``image`` (bands first)."""
    return np.stack(
        [image[..., r : r + PATCH, c : c + PATCH] for r, c in corners(level, town.ids[level], keep)]
    )


def town_units(town: Town, level: str) -> Units:
    """Scores and features of one town's units at one level, for every cloud cover."""
    ids, lab = town.ids[level], town.labels[level]
    n = len(lab)
    area = np.bincount(ids[ids > 0], minlength=n).astype(float)
    keep = np.flatnonzero((area > 0) & (lab >= 0))
    u = Units(lab[keep], area[keep] if town.weighted[level] else np.ones(len(keep)))
    z_radar = town.radar_null.z(town.t)
    for cloud in CLOUDS:
        opt = np.where(town.clouds[cloud], np.nan, change(town.before, town.after))
        z_opt = NullStats.robust(opt).z(opt)
        maps = {
            "pwtt": z_radar,
            "s2 change": z_opt,
            "fusion sum": training_free([z_radar, z_opt]),
            "fusion sum, no-war null": training_free(
                [town.radar_nowar.z(town.t), town.optical_nowar.z(opt)]
            ),
        }
        for name, values in maps.items():
            u.scores[name, cloud] = np.nan_to_num(unit_means(ids, n, values)[0][keep])
        radar = [a[keep] for a in unit_means(ids, n, z_radar)]
        optical = [a[keep] for a in unit_means(ids, n, z_opt)]
        u.features["fusion gbt", cloud] = np.column_stack([*radar, *optical])
        u.clear[cloud] = ~windows(town, level, keep, town.clouds[cloud]).any(axis=(1, 2))
    u.features["s2 gbt", 0.0] = patch_features(
        windows(town, level, keep, town.before), windows(town, level, keep, town.after)
    )
    return u


def learned_scores(towns: list[Units]) -> None:
    """Leave-town-out scores of both learned models, fitted on the other towns' units: the
    Sentinel-2 trees once on clear scenes, the fusion at each cloud cover."""
    for k, u in enumerate(towns):
        rest = [v for i, v in enumerate(towns) if i != k]
        y = np.concatenate([v.y for v in rest])
        w = np.concatenate([v.w for v in rest])
        x = np.concatenate([v.features["s2 gbt", 0.0] for v in rest])
        p = fit_gbt(x, y, seed=0).predict_proba(u.features["s2 gbt", 0.0])[:, 1]
        for cloud in CLOUDS:
            seen = u.clear[cloud]
            blind = float(np.median(p[seen])) if seen.any() else 0.5
            u.scores["s2 gbt", cloud] = np.where(seen, p, blind)
            z_opt = np.zeros(len(p))  # the map's robust null over what the optics saw
            if len(np.unique(p[seen])) > 1:
                z_opt[seen] = NullStats.robust(logit(p[seen])).z(logit(p[seen]))
            radar_mean = u.features["fusion gbt", cloud][:, 0]
            u.scores["fusion sum, s2 gbt", cloud] = training_free([radar_mean, z_opt])
            x = np.concatenate([v.features["fusion gbt", cloud] for v in rest])
            model = fit_learned(x, y, w)
            u.scores["fusion gbt", cloud] = model.scores(u.features["fusion gbt", cloud])


def pooled(towns: list[Units], method: str, cloud: float, weighted: bool):
    """Labels, scores and town of every unit; a footprint repeated by its area in pixels, so
    an unweighted metric of the repeated units is the area-weighted one."""
    reps = [v.w.astype(int) if weighted else np.ones(len(v.y), int) for v in towns]
    y = np.concatenate([np.repeat(v.y, r) for v, r in zip(towns, reps, strict=True)])
    s = np.concatenate(
        [np.repeat(v.scores[method, cloud], r) for v, r in zip(towns, reps, strict=True)]
    )
    g = np.concatenate([np.full(r.sum(), i) for i, r in enumerate(reps)])
    return y, s, g


def fmt(iv) -> str:
    return f"{iv.value:.3f} ({iv.low:.3f}-{iv.high:.3f})"


def fmt_diff(iv) -> str:
    return f"{iv.value:+.3f} ({iv.low:+.3f} to {iv.high:+.3f})"


def report(level: str, towns: list[Units], weighted: bool) -> None:
    """One Markdown table per level: methods by cloud cover, then paired differences."""
    print(
        f"\n{level} level, pooled ROC-AUC ({len(towns)} towns, leave-town-out; 95 % interval "
        "resampling whole towns):\n"
    )
    print("| method | " + " | ".join(f"cloud {c:.0%}" for c in CLOUDS) + " |")
    print("| --- |" + " --- |" * len(CLOUDS))
    for m in METHODS:
        cells = []
        for cloud in CLOUDS:
            y, s, g = pooled(towns, m, cloud, weighted)
            cells.append(fmt(grouped_interval(roc_auc, y, s, g, seed=0)))
        print(f"| {m} | " + " | ".join(cells) + " |")
    print("\n| paired difference | " + " | ".join(f"cloud {c:.0%}" for c in CLOUDS) + " |")
    print("| --- |" + " --- |" * len(CLOUDS))
    for a, b in PAIRS:
        cells = []
        for cloud in CLOUDS:
            y, sa, g = pooled(towns, a, cloud, weighted)
            sb = pooled(towns, b, cloud, weighted)[1]
            cells.append(fmt_diff(paired_difference(roc_auc, y, sa, sb, g, seed=0)))
        print(f"| {a} minus {b} | " + " | ".join(cells) + " |")


def town_bootstrap(values: np.ndarray) -> tuple[float, float, float]:
    """Mean of per-town figures and its 95 % percentile interval over resampled towns."""
    res = bootstrap(
        (values,), np.mean, n_resamples=1000, method="percentile", rng=np.random.default_rng(0)
    )
    ci = res.confidence_interval
    return float(np.mean(values)), float(ci.low), float(ci.high)


def per_town_report(towns: list[Units]) -> None:
    """Footprints by PWTT's own protocol: each town's area-weighted AUC, averaged over towns,
    and the mean of per-town paired differences, both with intervals over resampled towns."""

    def auc(u: Units, m: str, cloud: float) -> float:
        return roc_auc(u.y, u.scores[m, cloud], sample_weight=u.w)

    print("\nfootprint level, mean of per-town area-weighted ROC-AUC (PWTT's per-city protocol):\n")
    print("| method | " + " | ".join(f"cloud {c:.0%}" for c in CLOUDS) + " |")
    print("| --- |" + " --- |" * len(CLOUDS))
    for m in METHODS:
        cells = [town_bootstrap(np.array([auc(u, m, c) for u in towns])) for c in CLOUDS]
        print(
            f"| {m} | " + " | ".join(f"{v:.3f} ({lo:.3f}-{hi:.3f})" for v, lo, hi in cells) + " |"
        )
    print(
        "\n| paired difference (per town) | " + " | ".join(f"cloud {c:.0%}" for c in CLOUDS) + " |"
    )
    print("| --- |" + " --- |" * len(CLOUDS))
    for a, b in PAIRS:
        cells = [
            town_bootstrap(np.array([auc(u, a, c) - auc(u, b, c) for u in towns])) for c in CLOUDS
        ]
        print(
            f"| {a} minus {b} | "
            + " | ".join(f"{v:+.3f} ({lo:+.3f} to {hi:+.3f})" for v, lo, hi in cells)
            + " |"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--towns", type=int, default=8)
    p.add_argument("--km", type=float, default=2.0)
    p.add_argument("--seed0", type=int, default=0)
    args = p.parse_args()
    started = time.perf_counter()
    levels: dict[str, list[Units]] = {"footprint": [], "patch": []}
    per_town = []
    for seed in range(args.seed0, args.seed0 + args.towns):
        with tempfile.TemporaryDirectory() as tmp:
            town = make_town(Path(tmp), seed, args.km)
        for level, units in levels.items():
            units.append(town_units(town, level))
        fp = levels["footprint"][-1]
        per_town.append(roc_auc(fp.y, fp.scores["pwtt", 0.0], sample_weight=fp.w))
        print(
            f"town {seed}: {len(fp.y)} footprints, {int(fp.y.sum())} damaged, "
            f"{len(levels['patch'][-1].y)} patches; PWTT footprint AUC {per_town[-1]:.3f} "
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    print(
        f"PWTT per-town footprint AUC {min(per_town):.3f}-{max(per_town):.3f} "
        f"(mean {np.mean(per_town):.3f}); published: {PUBLISHED}"
    )
    for level, towns in levels.items():
        learned_scores(towns)
        report(level, towns, weighted=level == "footprint")
        if level == "footprint":
            per_town_report(towns)
    print(f"\nwall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
