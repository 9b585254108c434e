"""The balanced, leakage-free dataset NPZ in the original study's layout.

Splits first and spatially, then balances; never augments (augmentation belongs to training).

- ``blocks``: square ground blocks (default 640 m, counted in pixels from each AOI grid's
  origin) go whole to train, val or test. A patch belongs to the block holding its footprint;
  a patch whose footprint straddles a block edge (possible only with overlapping patches) is
  dropped, so patches of different splits never share ground. Blocks are assigned per AOI,
  greedily by the split's deficit of damaged patches, so every AOI contributes to every split
  where it has enough blocks.
- ``aoi``: the named AOIs (``--test-aois``) are the test set; validation comes from blocks of
  the remaining AOIs (or ``--val-aois``).

Each split is then balanced by sampling no-damage patches (``--negatives-per-positive``). A
share of them (``--hard-negative-share``, default 0.7) are *hard negatives*: undamaged patches of
built-up ground, so that "town versus field" no longer predicts the label. They are taken first
from patches holding UNOSAT "No Visible Damage" sites (``--nvd``: ground an analyst looked at and
found intact), then from patches whose before image looks built-up (:func:`built_up`), and the
rest of the negatives at random.
"""

from __future__ import annotations

import argparse
import json
import logging
import zlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
from affine import Affine

from contract.atomic import write_text_atomic
from contract.bands import BANDS
from contract.npz_keys import DATASET_EXTRA, PATCH_KEYS, SPLITS, split_key
from pipeline.errors import InputFileError, PipelineError, PipelineUsageError
from pipeline.npz import save_npz

log = logging.getLogger(__name__)
DEFAULT_HARD_NEGATIVE_SHARE = 0.7
#: Built-up pixel: little vegetation, bright and grey in the visible (see :func:`built_up`).
BUILT_NDVI_MAX, BUILT_VISIBLE_MIN, BUILT_RED_BLUE_MAX = 0.35, 700.0, 1.6
#: Share of built-up pixels, and NIR roughness, that make a patch built-up.
BUILT_PATCH_SHARE, BUILT_ROUGHNESS_MIN = 0.05, 0.12


@dataclass
class PatchSet:
    """The patches of one AOI, as written by :mod:`pipeline.patches`."""

    aoi: str
    before: np.ndarray
    after: np.ndarray
    label: np.ndarray
    row: np.ndarray
    col: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    resolution: float
    summary: dict[str, Any]
    crs: str | None = None
    transform: tuple[float, ...] | None = None

    @property
    def size(self) -> int:
        return int(self.before.shape[-1])


def load_patches(path: str | Path) -> PatchSet:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as d:
            missing = [k for k in PATCH_KEYS if k not in d.files]
            if missing:
                raise PipelineError(
                    f"{path}: not a patch file from 'pipeline patches' (missing {missing})"
                )
            return PatchSet(
                aoi=str(d["aoi"]),
                before=d["before"],
                after=d["after"],
                label=d["label"],
                row=d["row"],
                col=d["col"],
                lon=d["lon"],
                lat=d["lat"],
                resolution=float(abs(d["transform"][0])),
                summary=json.loads(str(d["summary"])),
                crs=str(d["crs"]) if "crs" in d.files else None,
                transform=tuple(float(v) for v in d["transform"]),
            )
    except (OSError, ValueError) as exc:
        raise PipelineError(f"{path}: cannot read patch file ({exc})") from exc


def built_up(before: np.ndarray) -> np.ndarray:
    """Whether each patch's before image looks built-up, from its own four bands.

    Without a short-wave infrared band there is no true NDBI; this is its visible/NIR stand-in
    plus texture. A pixel counts as impervious when it is barely vegetated (NDVI below 0.35),
    bright in the visible (mean of B02, B03, B04 above 700 DN, which leaves out water and
    shadow) and grey rather than brown (B04 under 1.6 x B02, which leaves out most bare soil).
    At 10 m a town is mostly mixed pixels of roof, tree and garden, so a patch is built-up when
    at least 5 % of its pixels are impervious *and* it is rough: the mean absolute NIR
    difference of neighbouring pixels is at least 12 % of its mean NIR (fields and stubble are
    smooth within a parcel). On the realistic synthetic bed 99 % of the patches it flags hold
    buildings and it flags 91 % of those that do. Values are L2A digital numbers without the
    2022 offset (the scene step harmonises them).
    """
    x = before.astype(np.float32)
    blue, green, red, nir = x[:, 0], x[:, 1], x[:, 2], x[:, 3]
    ndvi = (nir - red) / np.maximum(nir + red, 1.0)
    visible = (blue + green + red) / 3
    pixel = (
        (ndvi < BUILT_NDVI_MAX) & (visible > BUILT_VISIBLE_MIN) & (red < BUILT_RED_BLUE_MAX * blue)
    )
    step = (
        np.abs(np.diff(nir, axis=-1)).mean(axis=(1, 2))
        + np.abs(np.diff(nir, axis=-2)).mean(axis=(1, 2))
    ) / 2
    rough = step / np.maximum(nir.mean(axis=(1, 2)), 1.0)
    return (pixel.mean(axis=(1, 2)) >= BUILT_PATCH_SHARE) & (rough >= BUILT_ROUGHNESS_MIN)


def read_nvd_sites(paths: list[str | Path]) -> list[Any]:
    """The point geometries of UNOSAT "No Visible Damage" site files, as GeoSeries with CRS."""
    series = []
    for path in map(Path, paths):
        if not path.exists():
            raise InputFileError(f"{path}: 'No Visible Damage' site file not found")
        try:
            frame = gpd.read_file(path)
        except Exception as exc:  # pyogrio raises DataSourceError and friends
            raise InputFileError(f"{path}: cannot read as a vector file ({exc})") from exc
        if len(frame) and frame.crs is None:
            raise InputFileError(f"{path}: the 'No Visible Damage' sites have no CRS")
        points = frame.geometry[frame.geometry.geom_type.isin(["Point", "MultiPoint"])]
        series.append(points.representative_point() if len(points) else points)
    return series


def nvd_counts(ps: PatchSet, sites: list[Any]) -> np.ndarray:
    """How many "No Visible Damage" sites fall in each patch's footprint.

    Sites are counted on the patch grid (an integral image over site counts per pixel), so
    any number of overlapping patches and sites costs one pass each.
    """
    counts = np.zeros(len(ps.label), dtype=np.int64)
    if not sites or not len(ps.label) or ps.crs is None or ps.transform is None:
        return counts
    inv = ~Affine(*ps.transform[:6])
    h = int(ps.row.max()) + ps.size
    w = int(ps.col.max()) + ps.size
    grid = np.zeros((h + 1, w + 1), dtype=np.int64)
    for points in sites:
        if not len(points):
            continue
        xy = points.to_crs(ps.crs)
        cols, rows = inv * (xy.x.to_numpy(), xy.y.to_numpy())
        r, c = np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)
        ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        np.add.at(grid, (r[ok] + 1, c[ok] + 1), 1)
    integral = grid.cumsum(axis=0).cumsum(axis=1)
    r0, c0 = ps.row.astype(np.int64), ps.col.astype(np.int64)
    r1, c1 = r0 + ps.size, c0 + ps.size
    return integral[r1, c1] - integral[r0, c1] - integral[r1, c0] + integral[r0, c0]


def pick_negatives(
    rng: np.random.Generator,
    neg: np.ndarray,
    n_neg: int,
    share: float,
    nvd: np.ndarray,
    built: np.ndarray,
) -> np.ndarray:
    """``n_neg`` of the negative patch indices ``neg``: a ``share`` of hard ones first (at
    "No Visible Damage" sites, then built-up), the rest at random from what is left."""
    n_hard = int(round(share * n_neg))
    if n_hard == 0:
        return rng.choice(neg, n_neg, replace=False)
    order = rng.permutation(neg)
    tier = np.where(nvd[order] > 0, 0, np.where(built[order], 1, 2))
    ranked = order[np.argsort(tier, kind="stable")]
    hard = ranked[:n_hard][np.sort(tier)[:n_hard] < 2]
    rest = np.setdiff1d(neg, hard)
    return np.concatenate([hard, rng.choice(rest, n_neg - len(hard), replace=False)])


def block_ids(ps: PatchSet, block_m: float) -> tuple[np.ndarray, np.ndarray]:
    """(block id per patch, whether its footprint lies inside that one block)."""
    block_px = max(1, int(round(block_m / ps.resolution)))
    br, bc = ps.row // block_px, ps.col // block_px
    inside = ((ps.row + ps.size - 1) // block_px == br) & ((ps.col + ps.size - 1) // block_px == bc)
    return br.astype(np.int64) * 1_000_003 + bc, inside


def _assign_blocks(
    blocks: np.ndarray, positives: np.ndarray, fractions: dict[str, float], rng: np.random.Generator
) -> dict[int, str]:
    """Blocks of one AOI to splits, in random order: one block to each split first, then each
    block to the split furthest below its share (of damaged patches for blocks with damage, of
    all patches for the others)."""
    uniq, inv = np.unique(blocks, return_inverse=True)
    pos = np.bincount(inv, weights=positives, minlength=len(uniq))
    tot = np.bincount(inv, minlength=len(uniq)).astype(float)
    order = rng.permutation(len(uniq))
    order = order[np.argsort(~(pos[order] > 0), kind="stable")]  # blocks with damage first
    got_pos = dict.fromkeys(fractions, 0.0)
    got_tot = dict.fromkeys(fractions, 0.0)
    active = [s for s in ("test", "val", "train") if fractions[s] > 0]
    assigned: dict[int, str] = {}
    for i, b in enumerate(order):
        if i < len(active):
            split = active[i]
        elif pos[b] > 0:
            split = max(active, key=lambda s: fractions[s] - got_pos[s] / pos.sum())
        else:
            split = max(active, key=lambda s: fractions[s] - got_tot[s] / tot.sum())
        assigned[int(uniq[b])] = split
        got_pos[split] += pos[b]
        got_tot[split] += tot[b]
    return assigned


def build_dataset(
    patch_files: list[str | Path],
    out: str | Path,
    split: str = "blocks",
    block_m: float = 640.0,
    test_aois: list[str] | None = None,
    val_aois: list[str] | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    negatives_per_positive: float = 1.0,
    seed: int = 42,
    hard_negative_share: float = DEFAULT_HARD_NEGATIVE_SHARE,
    nvd_files: list[str | Path] | None = None,
    allow_empty_split: bool = False,
) -> dict[str, Any]:
    """Split, balance and write the dataset NPZ with its summary (JSON and Markdown)."""
    if not patch_files:
        raise PipelineError("no patch files given")
    if split not in ("blocks", "aoi"):
        raise PipelineError(f"--split must be 'blocks' or 'aoi', got {split!r}")
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise PipelineError(
            "--val-fraction and --test-fraction must be in [0, 1) and sum to less than 1"
        )
    if negatives_per_positive <= 0:
        raise PipelineError("--negatives-per-positive must be positive")
    if not 0 <= hard_negative_share <= 1:
        raise PipelineUsageError("--hard-negative-share must be in [0, 1]")
    sets = [load_patches(p) for p in sorted(map(str, patch_files))]
    sizes = {ps.size for ps in sets if len(ps.label)} or {s.size for s in sets}
    if len(sizes) > 1:
        detail = ", ".join(f"{ps.aoi}: {ps.size}" for ps in sets)
        raise PipelineError(f"patch files mix patch sizes ({detail}); cut all with one --size")
    names = [ps.aoi for ps in sets]
    if len(set(names)) != len(names):
        raise PipelineError(f"an AOI appears in more than one patch file: {names}")
    if not any(int(ps.label.sum()) for ps in sets):
        raise PipelineError(
            f"no damaged patch in any input ({', '.join(names)}); check the "
            "labels (UNOSAT file, dates, classes)"
        )
    test_aois, val_aois = list(test_aois or []), list(val_aois or [])
    unknown = set(test_aois + val_aois) - set(names)
    if unknown:
        raise PipelineError(
            f"--test-aois/--val-aois name AOIs without patches: {sorted(unknown)}; have {names}"
        )
    if split == "aoi" and not test_aois:
        raise PipelineError("--split aoi needs --test-aois")

    sites = read_nvd_sites(list(nvd_files or []))
    parts: dict[str, dict[str, list[np.ndarray]]] = {s: defaultdict(list) for s in SPLITS}
    table: dict[str, dict[str, Any]] = {}
    for ps in sets:
        rng = np.random.default_rng([seed, zlib.crc32(ps.aoi.encode())])
        blocks, inside = block_ids(ps, block_m)
        built, nvd = built_up(ps.before), nvd_counts(ps, sites)
        split_of = np.empty(len(ps.label), dtype=object)
        if split == "aoi" and ps.aoi in test_aois:
            split_of[:] = "test"
            inside[:] = True
        elif split == "aoi" and ps.aoi in val_aois:
            split_of[:] = "val"
            inside[:] = True
        else:
            fr = {
                "test": test_fraction if split == "blocks" else 0.0,
                "val": 0.0 if split == "aoi" and val_aois else val_fraction,
            }
            fr["train"] = 1.0 - fr["test"] - fr["val"]
            assignment = _assign_blocks(blocks[inside], ps.label[inside].astype(float), fr, rng)
            split_of[inside] = [assignment[int(b)] for b in blocks[inside]]
        row = {
            "dropped_nodata": ps.summary.get("dropped_nodata", 0),
            "dropped_unknown": ps.summary.get("dropped_unknown", 0),
            "dropped_block_edge": int((~inside).sum()),
        }
        for s in SPLITS:
            idx = np.nonzero(inside & (split_of == s))[0]
            pos, neg = idx[ps.label[idx] == 1], idx[ps.label[idx] == 0]
            n_neg = min(len(neg), int(round(negatives_per_positive * len(pos))))
            picked = pick_negatives(rng, neg, n_neg, hard_negative_share, nvd, built)
            chosen = np.sort(np.concatenate([pos, picked]))
            row[s] = {
                "blocks": int(len(np.unique(blocks[idx]))),
                "available": int(len(idx)),
                "available_damaged": int(len(pos)),
                "patches": int(len(chosen)),
                "damaged": int(len(pos)),
                "no_damage": int(n_neg),
                "available_no_damage_built_up": int(built[neg].sum()),
                "damaged_built_up": int(built[pos].sum()),
                "no_damage_built_up": int(built[picked].sum()),
                "no_damage_nvd": int((nvd[picked] > 0).sum()),
            }
            for key, arr in (
                ("Xb", ps.before),
                ("Xa", ps.after),
                ("row", ps.row),
                ("col", ps.col),
                ("lon", ps.lon),
                ("lat", ps.lat),
                ("block", blocks),
            ):
                parts[s][key].append(arr[chosen])
            parts[s]["y"].append(ps.label[chosen].astype(np.int64))
            parts[s]["aoi"].append(np.full(len(chosen), ps.aoi))
        table[ps.aoi] = row

    arrays: dict[str, np.ndarray] = {}
    size = next(iter(sizes))
    for s in SPLITS:
        for key in ("Xb", "Xa", "y", *DATASET_EXTRA):
            chunks = parts[s][key]
            arr = np.concatenate(chunks) if chunks else np.zeros(0)
            if key in ("Xb", "Xa"):
                arr = arr.astype(np.uint16).reshape(-1, len(BANDS), size, size)
            arrays[split_key(key, s)] = arr
        if not arrays[split_key("y", s)].sum() and (s != "val" or val_fraction > 0 or val_aois):
            if not allow_empty_split:  # a split without positives gives no recall to measure
                raise PipelineError(
                    f"split {s} has no damaged patch; use larger AOIs, smaller "
                    "--block-m or other fractions, or pass --allow-empty-split"
                )
            log.warning("split %s has no damaged patch (--allow-empty-split)", s)
    config = {
        "split": split,
        "block_m": block_m,
        "test_aois": test_aois,
        "val_aois": val_aois,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "negatives_per_positive": negatives_per_positive,
        "seed": seed,
        "hard_negative_share": hard_negative_share,
        "nvd_files": [str(p) for p in nvd_files or []],
        "patch_size": size,
        "inputs": names,
    }
    arrays["bands"] = np.array(BANDS)
    arrays["config"] = np.array(json.dumps(config, sort_keys=True))
    out = Path(out)
    save_npz(out, arrays)
    summary = {
        "config": config,
        "aois": table,
        "totals": {s: _totals(table, s, arrays) for s in SPLITS},
    }
    # with_name, not with_suffix: a dotted stem ("v1.2.npz") must keep its name
    write_text_atomic(
        out.with_name(out.stem + "_summary.json"), json.dumps(summary, indent=2) + "\n"
    )
    write_text_atomic(out.with_name(out.stem + "_summary.md"), summary_markdown(summary))
    log.info(
        "dataset %s: %s",
        out,
        ", ".join(
            f"{s} {v['patches']} ({v['damaged']} damaged)" for s, v in summary["totals"].items()
        ),
    )
    return summary


def _totals(
    table: dict[str, dict[str, Any]], split: str, arrays: dict[str, np.ndarray]
) -> dict[str, int]:
    """Per-split counts over AOIs, with how many negatives are built-up (hard)."""
    keys = ("no_damage", "no_damage_built_up", "no_damage_nvd", "damaged_built_up")
    out = {"patches": int(len(arrays[f"y_{split}"])), "damaged": int(arrays[f"y_{split}"].sum())}
    out.update({k: int(sum(row[split][k] for row in table.values())) for k in keys})
    return out


def summary_markdown(summary: dict[str, Any]) -> str:
    lines = [
        "# Dataset summary",
        "",
        f"Split: `{json.dumps(summary['config'])}`",
        "",
        "Built-up: the before image looks built-up by the dataset's built-up index; NVD: "
        "the patch holds a UNOSAT 'No Visible Damage' site.",
        "",
        "| AOI | split | blocks | available | patches | damaged | damaged built-up | "
        "no damage | no damage built-up | no damage at NVD sites | dropped nodata | "
        "dropped unknown | dropped block edge |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: |",
    ]
    for aoi, row in summary["aois"].items():
        for s in SPLITS:
            r = row[s]
            lines.append(
                f"| {aoi} | {s} | {r['blocks']} | {r['available']} | {r['patches']} | "
                f"{r['damaged']} | {r['damaged_built_up']} | {r['no_damage']} | "
                f"{r['no_damage_built_up']} | {r['no_damage_nvd']} | "
                f"{row['dropped_nodata']} | {row['dropped_unknown']} | "
                f"{row['dropped_block_edge']} |"
            )
    lines += [
        "",
        "| split | patches | damaged | damaged built-up | no damage | "
        "no damage built-up | no damage at NVD sites |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {s} | {v['patches']} | {v['damaged']} | {v['damaged_built_up']} | "
        f"{v['no_damage']} | {v['no_damage_built_up']} | {v['no_damage_nvd']} |"
        for s, v in summary["totals"].items()
    ]
    return "\n".join(lines) + "\n"


def _run(args: argparse.Namespace) -> int:
    build_dataset(
        args.patch_files,
        args.out,
        split=args.split,
        block_m=args.block_m,
        test_aois=args.test_aois,
        val_aois=args.val_aois,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        negatives_per_positive=args.negatives_per_positive,
        seed=args.seed,
        hard_negative_share=args.hard_negative_share,
        nvd_files=args.nvd,
        allow_empty_split=args.allow_empty_split,
    )
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dataset",
        help="split spatially, balance and write the dataset NPZ",
        description="Combine patch files into the study's NPZ layout (Xb_train, Xa_train, "
        "y_train, ... val, test) with per-split metadata, splitting by whole "
        "ground blocks or whole AOIs before balancing, so no ground is shared "
        "between splits. No augmentation. A summary per AOI and split is written "
        "as <out>_summary.json and .md.",
    )
    p.add_argument("patch_files", nargs="+", help="patch NPZ files from 'pipeline patches'")
    p.add_argument(
        "--out",
        default="data/processed/FinalBalanced_splits.npz",
        help="output NPZ (default: %(default)s)",
    )
    p.add_argument(
        "--split",
        choices=("blocks", "aoi"),
        default="blocks",
        help="blocks: whole ground blocks per split; aoi: hold out whole AOIs "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--block-m",
        type=float,
        default=640.0,
        help="block side in metres for --split blocks (default: %(default)s)",
    )
    p.add_argument("--test-aois", nargs="*", default=[], help="AOIs held out as test (--split aoi)")
    p.add_argument(
        "--val-aois",
        nargs="*",
        default=[],
        help="AOIs held out as validation (--split aoi; default: blocks of the training AOIs)",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="share of damaged patches for validation (default: %(default)s)",
    )
    p.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        help="share of damaged patches for test with --split blocks (default: %(default)s)",
    )
    p.add_argument(
        "--negatives-per-positive",
        type=float,
        default=1.0,
        help="no-damage patches sampled per damaged patch in each split (default: %(default)s)",
    )
    p.add_argument(
        "--hard-negative-share",
        type=_share,
        default=DEFAULT_HARD_NEGATIVE_SHARE,
        help="share of the no-damage patches drawn from built-up ground: patches "
        "holding 'No Visible Damage' sites (--nvd) first, then patches whose "
        "before image looks built-up (low NDVI, bright, grey); 0 samples "
        "negatives at random (default: %(default)s)",
    )
    p.add_argument(
        "--nvd",
        nargs="+",
        default=[],
        metavar="FILE",
        help="vector files of UNOSAT 'No Visible Damage' site points (any CRS); "
        "patches holding them are preferred as hard negatives",
    )
    p.add_argument("--seed", type=int, default=42, help="random seed (default: %(default)s)")
    p.add_argument(
        "--allow-empty-split",
        action="store_true",
        help="write the dataset even if a split has no damaged patch (default: refuse)",
    )
    p.set_defaults(func=_run)


def _share(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value
