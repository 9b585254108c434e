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
found intact), then from patches whose before image looks built-up
(:func:`contract.built_up.built_up`), and the
rest of the negatives at random. When a split of an AOI has too few no-damage patches, its
damaged patches are sampled down to balance (and a warning names the AOIs and counts), unless
``--keep-imbalance`` keeps them, warned.

With ``--tile-size`` the inputs are tile files (``pipeline tiles``) and the dataset is a tile
dataset (:data:`contract.npz_keys.TILES`): the same splits, every tile of a split kept, and a
pre-war tile file of an AOI on that AOI's blocks, so its ground stays in one split.
"""

from __future__ import annotations

import json
import logging
import zipfile
import zlib
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from contract.atomic import output_set
from contract.bands import BANDS
from contract.built_up import built_up
from contract.labels import DAMAGE, NO_DAMAGE, UNKNOWN
from contract.npz import save_npz
from contract.npz_keys import (
    DAMAGE_PIXELS,
    DATASET_EXTRA,
    DATASET_KIND,
    PATCH_KEYS,
    PATCHES,
    PROCESSING_LEVEL,
    SPLITS,
    TILE_EXTRA,
    TILES,
    split_key,
)
from contract.npz_keys import PREWAR as PREWAR_FLAG
from pipeline.defaults import DEFAULT_HARD_NEGATIVE_SHARE
from pipeline.errors import InputFileError, PipelineError, PipelineUsageError
from pipeline.tiles import PAIR, PREWAR
from pipeline.tiles.summary import TILE_COUNTS, tile_log_line, tile_markdown, tile_totals

log = logging.getLogger(__name__)


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
    #: :data:`contract.npz_keys.PATCHES` or :data:`contract.npz_keys.TILES` (``label`` (N, T, T))
    kind: str = PATCHES
    #: the scenes' processing level, when the file records it
    level: str | None = None
    #: tiles of a temporal negative pair (two dates before the war, all negative)
    prewar: bool = False
    source: Path | None = None

    @property
    def size(self) -> int:
        return int(self.before.shape[-1])

    @property
    def positives(self) -> np.ndarray:
        """(N,) 0/1: the pair is damaged (a patch) or holds a damage pixel (a tile)."""
        if self.kind == TILES:
            return (self.label == DAMAGE).any(axis=(1, 2)).astype(int)
        return self.label.astype(int)


def load_patches(path: str | Path) -> PatchSet:
    """A patch file (``pipeline patches``) or tile file (``pipeline tiles``), read whole.

    A truncated or corrupt file fails here, naming the file, whatever layer of the zip or
    ``.npy`` reader notices it first.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as d:
            missing = [k for k in PATCH_KEYS if k not in d.files]
            if missing:
                raise PipelineError(
                    f"{path}: not a patch file from 'pipeline patches' (missing {missing})"
                )
            return _patch_set(path, d)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise InputFileError(
            f"{path}: truncated or corrupt patch file ({exc}); cut it again with "
            "'pipeline patches' (or 'pipeline tiles')"
        ) from exc


def _patch_set(path: Path, d: Any) -> PatchSet:
    level = str(d[PROCESSING_LEVEL]) if PROCESSING_LEVEL in d.files else None
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
        kind=str(d[DATASET_KIND]) if DATASET_KIND in d.files else PATCHES,
        level=level,
        prewar=PAIR in d.files and str(d[PAIR]) == PREWAR,
        source=path,
    )


def read_nvd_sites(paths: list[str | Path]) -> list[Any]:
    """The point geometries of UNOSAT "No Visible Damage" site files, as GeoSeries with CRS."""
    import geopandas as gpd  # here, not at the top: 'pipeline --help' stays fast

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
    from affine import Affine

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


@dataclass(frozen=True)
class DatasetOptions:
    """What ``pipeline dataset`` is told: how to split, how to balance, what to write.

    Lists given for the AOI and file fields are kept as tuples, so the record stays hashable
    and a caller's list cannot change it afterwards.
    """

    split: str = "blocks"
    block_m: float = 640.0
    test_aois: tuple[str, ...] = ()
    val_aois: tuple[str, ...] = ()
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    negatives_per_positive: float = 1.0
    seed: int = 42
    hard_negative_share: float = DEFAULT_HARD_NEGATIVE_SHARE
    nvd_files: tuple[str | Path, ...] = ()
    allow_empty_split: bool = False
    #: keep every damaged patch when negatives run short (warned), instead of sampling down
    keep_imbalance: bool = False
    #: tiles of this side (``pipeline tiles`` files) instead of patches
    tile_size: int | None = None

    def __post_init__(self) -> None:
        for name in ("test_aois", "val_aois", "nvd_files"):
            object.__setattr__(self, name, tuple(getattr(self, name) or ()))

    def check(self) -> None:
        """Refuse values out of range before any file is read."""
        if self.split not in ("blocks", "aoi"):
            raise PipelineError(f"--split must be 'blocks' or 'aoi', got {self.split!r}")
        vf, tf = self.val_fraction, self.test_fraction
        if not (0 <= vf < 1 and 0 <= tf < 1 and vf + tf < 1):
            raise PipelineError(
                "--val-fraction and --test-fraction must be in [0, 1) and sum to less than 1"
            )
        if self.negatives_per_positive <= 0:
            raise PipelineError("--negatives-per-positive must be positive")
        if not 0 <= self.hard_negative_share <= 1:
            raise PipelineUsageError("--hard-negative-share must be in [0, 1]")
        if self.tile_size is not None and self.tile_size < 1:
            raise PipelineUsageError(f"--tile-size must be positive, got {self.tile_size}")

    @property
    def kind(self) -> str:
        return PATCHES if self.tile_size is None else TILES


@dataclass
class _Placed:
    """One input's pairs with their ground block and split (None: dropped at a block edge)."""

    ps: PatchSet
    blocks: np.ndarray
    inside: np.ndarray
    split_of: np.ndarray


@dataclass
class _Parts:
    """Chosen arrays per split and key, the per-AOI table and the balance record."""

    arrays: dict[str, dict[str, list[np.ndarray]]] = field(
        default_factory=lambda: {s: defaultdict(list) for s in SPLITS}
    )
    table: dict[str, dict[str, Any]] = field(default_factory=dict)
    short: list[dict[str, Any]] = field(default_factory=list)


def build_dataset(
    inputs: list[str | Path],
    out: str | Path,
    options: DatasetOptions | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Split, balance and write the dataset NPZ with its summary (JSON and Markdown).

    ``overrides`` replace fields of ``options``: ``build_dataset(files, out, block_m=320)``.
    """
    opts = replace(options or DatasetOptions(), **overrides)
    opts.check()
    sets = load_inputs(inputs, opts)
    level = common_level(sets)
    size = sets_size(sets)
    sites = read_nvd_sites(list(opts.nvd_files)) if opts.kind == PATCHES else []
    parts = _Parts()
    for aoi, group in _groups(sets).items():
        _take_aoi(aoi, group, opts, sites, parts)
    _report_balance(parts.short, opts)
    arrays = _assemble(parts, opts, size)
    config = _config(opts, sets, size)
    arrays["bands"] = np.array(BANDS)
    arrays["config"] = np.array(json.dumps(config, sort_keys=True))
    arrays[DATASET_KIND] = np.array(opts.kind)
    if level is not None:
        arrays[PROCESSING_LEVEL] = np.array(level)
    return _write(Path(out), arrays, config, parts, opts)


def load_inputs(inputs: list[str | Path], opts: DatasetOptions) -> list[PatchSet]:
    """Read every input and refuse sets that cannot make one dataset, saying why."""
    if not inputs:
        raise PipelineError("no patch files given")
    sets = [load_patches(p) for p in sorted(map(str, inputs))]
    for ps in sets:
        _check_kind(ps, opts)
    sets_size(sets)
    war = [ps.aoi for ps in sets if not ps.prewar]
    if len(set(war)) != len(war):
        raise PipelineError(f"an AOI appears in more than one patch file: {war}")
    names = list(dict.fromkeys(ps.aoi for ps in sets))
    if not any(ps.positives.any() for ps in sets):
        raise PipelineError(
            f"no damaged patch in any input ({', '.join(names)}); check the "
            "labels (UNOSAT file, dates, classes)"
        )
    _check_held_out(names, opts)
    return sets


def _check_kind(ps: PatchSet, opts: DatasetOptions) -> None:
    if ps.kind == opts.kind:
        if opts.tile_size is not None and ps.size != opts.tile_size and len(ps.label):
            raise PipelineUsageError(
                f"{ps.source}: tiles of {ps.size} px, but --tile-size {opts.tile_size}; cut "
                f"them with 'pipeline tiles --size {opts.tile_size}'"
            )
        return
    if ps.kind == TILES:
        raise PipelineUsageError(
            f"{ps.source}: a tile file from 'pipeline tiles' ({ps.size} px); build a tile "
            f"dataset with --tile-size {ps.size}, or give patch files from 'pipeline patches'"
        )
    raise PipelineUsageError(
        f"{ps.source}: a patch file from 'pipeline patches' (one label per patch); a tile "
        "dataset (--tile-size) is built from 'pipeline tiles' files (one target per pixel)"
    )


def sets_size(sets: list[PatchSet]) -> int:
    """The one patch (or tile) side of all inputs, or a refusal naming each file's."""
    sizes = {ps.size for ps in sets if len(ps.label)} or {s.size for s in sets}
    if len(sizes) > 1:
        detail = ", ".join(f"{ps.aoi}: {ps.size}" for ps in sets)
        raise PipelineError(f"patch files mix patch sizes ({detail}); cut all with one --size")
    return next(iter(sizes))


def _check_held_out(names: list[str], opts: DatasetOptions) -> None:
    """``--test-aois``/``--val-aois`` must name given AOIs and leave some to train on."""
    held = list(opts.test_aois) + list(opts.val_aois)
    unknown = set(held) - set(names)
    if unknown:
        raise PipelineError(
            f"--test-aois/--val-aois name AOIs without patches: {sorted(unknown)}; have {names}"
        )
    if opts.split != "aoi":
        return
    if not opts.test_aois:
        raise PipelineError("--split aoi needs --test-aois")
    if set(names) <= set(held):
        raise PipelineUsageError(
            f"--split aoi --test-aois {' '.join(opts.test_aois)}: the inputs hold only "
            f"{', '.join(names)}, so no AOI is left to train on; give patch files of more "
            f"AOIs, or use --split blocks to hold out ground blocks of {', '.join(names)}"
        )


def common_level(sets: list[PatchSet]) -> str | None:
    """The processing level every input records; L1C and L2A are never mixed.

    Files that record none (written before levels were recorded) make the dataset's level
    unknown rather than the level of the others: an unknown file may be of either.
    """
    levels = {ps.level for ps in sets if ps.level}
    if len(levels) > 1:
        detail = ", ".join(f"{ps.source}: {ps.level or 'unknown'}" for ps in sets)
        raise InputFileError(
            f"inputs of different processing levels ({detail}); L1C and L2A differ by the "
            "atmosphere, so build one dataset per level"
        )
    if levels and any(ps.level is None for ps in sets):
        unknown = [str(ps.source) for ps in sets if ps.level is None]
        log.warning(
            "%s record no processing level while the others are %s: the dataset records none",
            ", ".join(unknown),
            next(iter(levels)),
        )
        return None
    return next(iter(levels)) if levels else None


def _groups(sets: list[PatchSet]) -> dict[str, list[PatchSet]]:
    """Inputs per AOI, its war pair first: a temporal negative pair shares its AOI's blocks."""
    groups: dict[str, list[PatchSet]] = defaultdict(list)
    for ps in sorted(sets, key=lambda p: p.prewar):
        groups[ps.aoi].append(ps)
    return dict(sorted(groups.items(), key=lambda kv: [p.aoi for p in sets].index(kv[0])))


def _take_aoi(
    aoi: str, group: list[PatchSet], opts: DatasetOptions, sites: list[Any], parts: _Parts
) -> None:
    """Place one AOI's pairs in splits, choose what each split keeps, record the counts."""
    rng = np.random.default_rng([opts.seed, zlib.crc32(aoi.encode())])
    placed = _place(aoi, group, opts, rng)
    row: dict[str, Any] = {
        "dropped_nodata": sum(p.ps.summary.get("dropped_nodata", 0) for p in placed),
        "dropped_unknown": sum(p.ps.summary.get("dropped_unknown", 0) for p in placed),
        "dropped_block_edge": int(sum((~p.inside).sum() for p in placed)),
    }
    if opts.kind == TILES:
        row.update(tile_rows(placed, parts.arrays))
    else:
        (p,) = placed
        row.update(_patch_rows(p, opts, sites, rng, parts))
    parts.table[aoi] = row


def _place(
    aoi: str, group: list[PatchSet], opts: DatasetOptions, rng: np.random.Generator
) -> list[_Placed]:
    """Every input of one AOI on its ground blocks, whole blocks to splits."""
    ref = group[0]
    for ps in group[1:]:
        if ps.transform != ref.transform or ps.crs != ref.crs:
            raise InputFileError(
                f"{ps.source}: the pre-war tiles of {aoi} are on another grid than {ref.source}; "
                "cut both on the AOI's one grid"
            )
    placed = []
    for ps in group:
        blocks, inside = block_ids(ps, opts.block_m)
        placed.append(_Placed(ps, blocks, inside, np.empty(len(ps.label), dtype=object)))
    held = "test" if aoi in opts.test_aois else "val" if aoi in opts.val_aois else None
    if opts.split == "aoi" and held:
        for p in placed:
            p.split_of[:] = held
            p.inside[:] = True
        return placed
    if opts.tile_size is not None and not any(p.inside.any() for p in placed if len(p.inside)):
        block_px = opts.block_m / ref.resolution
        raise PipelineUsageError(
            f"{aoi}: every {ref.size} px tile straddles a {opts.block_m:g} m ({block_px:g} px) "
            "block edge; make --block-m a multiple of the tile side in metres"
        )
    fr = {
        "test": opts.test_fraction if opts.split == "blocks" else 0.0,
        "val": 0.0 if opts.split == "aoi" and opts.val_aois else opts.val_fraction,
    }
    fr["train"] = 1.0 - fr["test"] - fr["val"]
    blocks = np.concatenate([p.blocks[p.inside] for p in placed])
    positives = np.concatenate(
        [(p.ps.positives * (not p.ps.prewar))[p.inside] for p in placed]
    ).astype(float)
    assignment = _assign_blocks(blocks, positives, fr, rng)
    for p in placed:
        p.split_of[p.inside] = [assignment[int(b)] for b in p.blocks[p.inside]]
    return placed


def _patch_rows(
    p: _Placed, opts: DatasetOptions, sites: list[Any], rng: np.random.Generator, parts: _Parts
) -> dict[str, Any]:
    """Balance each split of one AOI's patches; their counts per split."""
    ps = p.ps
    built, nvd = built_up(ps.before), nvd_counts(ps, sites)
    rows: dict[str, Any] = {}
    for s in SPLITS:
        idx = np.nonzero(p.inside & (p.split_of == s))[0]
        pos, neg = idx[ps.label[idx] == 1], idx[ps.label[idx] == 0]
        kept, n_neg = balance(rng, pos, len(neg), opts)
        if len(kept) < len(pos) or n_neg < round(opts.negatives_per_positive * len(pos)):
            parts.short.append(
                {
                    "aoi": ps.aoi,
                    "split": s,
                    "damaged": len(pos),
                    "no_damage": len(neg),
                    "damaged_kept": len(kept),
                }
            )
        picked = pick_negatives(rng, neg, n_neg, opts.hard_negative_share, nvd, built)
        chosen = np.sort(np.concatenate([kept, picked]))
        rows[s] = {
            "blocks": int(len(np.unique(p.blocks[idx]))),
            "available": int(len(idx)),
            "available_damaged": int(len(pos)),
            "patches": int(len(chosen)),
            "damaged": int(len(kept)),
            "no_damage": int(n_neg),
            "damaged_dropped_for_balance": int(len(pos) - len(kept)),
            "available_no_damage_built_up": int(built[neg].sum()),
            "damaged_built_up": int(built[kept].sum()),
            "no_damage_built_up": int(built[picked].sum()),
            "no_damage_nvd": int((nvd[picked] > 0).sum()),
        }
        take(parts.arrays[s], p, chosen)
        parts.arrays[s]["y"].append(ps.label[chosen].astype(np.int64))
    return rows


def balance(
    rng: np.random.Generator, pos: np.ndarray, n_available_neg: int, opts: DatasetOptions
) -> tuple[np.ndarray, int]:
    """(damaged patches kept, no-damage patches to draw) for one split of one AOI.

    When the split has fewer no-damage patches than ``negatives_per_positive`` times its
    damaged ones, the damaged are sampled down to what the negatives balance (the study's
    layout promises equal classes), unless ``keep_imbalance`` keeps them all.
    """
    want = int(round(opts.negatives_per_positive * len(pos)))
    if n_available_neg >= want:
        return pos, want
    if opts.keep_imbalance:
        return pos, n_available_neg
    n_pos = min(len(pos), int(n_available_neg // opts.negatives_per_positive))
    kept = np.sort(rng.choice(pos, n_pos, replace=False))
    return kept, min(n_available_neg, int(round(opts.negatives_per_positive * n_pos)))


def take(out: dict[str, list[np.ndarray]], p: _Placed, chosen: np.ndarray) -> None:
    """Append the chosen pairs' images and provenance (all but ``y``) to one split."""
    ps = p.ps
    for key, arr in (
        ("Xb", ps.before),
        ("Xa", ps.after),
        ("row", ps.row),
        ("col", ps.col),
        ("lon", ps.lon),
        ("lat", ps.lat),
        ("block", p.blocks),
    ):
        out[key].append(arr[chosen])
    out["aoi"].append(np.full(len(chosen), ps.aoi))


def _report_balance(short: list[dict[str, Any]], opts: DatasetOptions) -> None:
    """One warning naming every AOI and split where the negatives ran short."""
    if not short:
        return
    detail = "; ".join(
        f"{r['aoi']} {r['split']}: {r['damaged']} damaged, {r['no_damage']} no damage"
        + ("" if opts.keep_imbalance else f" -> {r['damaged_kept']} damaged kept")
        for r in short
    )
    if opts.keep_imbalance:
        log.warning("the dataset is NOT balanced (--keep-imbalance): %s", detail)
    else:
        log.warning(
            "too few no-damage patches to balance; damaged patches sampled down (pass "
            "--keep-imbalance to keep them all): %s",
            detail,
        )


def _assemble(parts: _Parts, opts: DatasetOptions, size: int) -> dict[str, np.ndarray]:
    """The per-split arrays, in the study's key order, and the empty-split refusal."""
    arrays: dict[str, np.ndarray] = {}
    keys = ["Xb", "Xa", "y", *DATASET_EXTRA] + (list(TILE_EXTRA) if opts.tile_size else [])
    for s in SPLITS:
        for key in keys:
            chunks = parts.arrays[s][key]
            arr = np.concatenate(chunks) if chunks else np.zeros(0)
            if key in ("Xb", "Xa"):
                arr = arr.astype(np.uint16).reshape(-1, len(BANDS), size, size)
            elif key == "y" and opts.tile_size:
                arr = arr.astype(np.uint8).reshape(-1, size, size)
            arrays[split_key(key, s)] = arr
        _check_split_has_damage(arrays[split_key("y", s)], s, opts)
    return arrays


def _check_split_has_damage(y: np.ndarray, split: str, opts: DatasetOptions) -> None:
    """A split without damage gives no recall to measure (an unused val split is fine)."""
    if (y == DAMAGE).any() or (split == "val" and opts.val_fraction == 0 and not opts.val_aois):
        return
    what = "damaged patch" if opts.tile_size is None else "damage pixel"
    if not opts.allow_empty_split:
        raise PipelineError(
            f"split {split} has no {what}; use larger AOIs, smaller "
            "--block-m or other fractions, or pass --allow-empty-split"
        )
    log.warning("split %s has no %s (--allow-empty-split)", split, what)


def _config(opts: DatasetOptions, sets: list[PatchSet], size: int) -> dict[str, Any]:
    """What the dataset was built with, recorded in the NPZ (the patch layout's keys as ever)."""
    config: dict[str, Any] = {
        "split": opts.split,
        "block_m": opts.block_m,
        "test_aois": list(opts.test_aois),
        "val_aois": list(opts.val_aois),
        "val_fraction": opts.val_fraction,
        "test_fraction": opts.test_fraction,
        "negatives_per_positive": opts.negatives_per_positive,
        "seed": opts.seed,
        "hard_negative_share": opts.hard_negative_share,
        "nvd_files": [str(p) for p in opts.nvd_files],
        "patch_size": size,
        "inputs": [ps.aoi for ps in sets if not ps.prewar],
    }
    if opts.keep_imbalance:
        config["keep_imbalance"] = True
    if opts.tile_size is not None:
        config.update({"kind": TILES, "tile_size": size})
        config["prewar_inputs"] = [ps.aoi for ps in sets if ps.prewar]
    return config


def _write(
    out: Path,
    arrays: dict[str, np.ndarray],
    config: dict[str, Any],
    parts: _Parts,
    opts: DatasetOptions,
) -> dict[str, Any]:
    """The NPZ and its summary as JSON and Markdown, published together; the summary is
    returned."""
    if opts.tile_size is None:
        totals = {s: _totals(parts.table, s, arrays) for s in SPLITS}
        summary = {"config": config, "aois": parts.table, "totals": totals}
        summary["balance"] = {
            "rule": "keep imbalance" if opts.keep_imbalance else "sample damaged down",
            "short": parts.short,
        }
        markdown = summary_markdown(summary)
    else:
        totals = {s: tile_totals(arrays, s) for s in SPLITS}
        summary = {"config": config, "aois": parts.table, "totals": totals}
        markdown = tile_markdown(summary)
    with output_set() as outputs:
        save_npz(outputs.path(out), arrays)
        # with_name, not with_suffix: a dotted stem ("v1.2.npz") must keep its name
        text = json.dumps(summary, indent=2) + "\n"
        outputs.path(out.with_name(out.stem + "_summary.json")).write_text(text, "utf-8")
        outputs.path(out.with_name(out.stem + "_summary.md")).write_text(markdown, "utf-8")
    if opts.tile_size is None:
        line = ", ".join(f"{s} {v['patches']} ({v['damaged']} damaged)" for s, v in totals.items())
    else:
        line = tile_log_line(totals)
    log.info("dataset %s: %s", out, line)
    return summary


def tile_rows(placed: list[_Placed], arrays: dict[str, dict[str, list[np.ndarray]]]) -> dict:
    """Every tile of one AOI goes to its block's split (tiles are not balanced by sampling:
    training oversamples tiles with damage); their counts per split."""
    rows: dict[str, Any] = {}
    for s in SPLITS:
        blocks: set[int] = set()
        row = dict.fromkeys(TILE_COUNTS, 0)
        for p in placed:
            idx = np.nonzero(p.inside & (p.split_of == s))[0]
            y = p.ps.label[idx]
            damage = (y == DAMAGE).sum(axis=(1, 2)).astype(np.int32)
            blocks.update(int(b) for b in p.blocks[idx])
            row["tiles"] += len(idx)
            row["prewar_tiles"] += len(idx) if p.ps.prewar else 0
            row["tiles_with_damage"] += int((damage > 0).sum())
            row["damage_pixels"] += int(damage.sum())
            row["negative_pixels"] += int((y == NO_DAMAGE).sum())
            row["ignored_pixels"] += int((y == UNKNOWN).sum())
            take(arrays[s], p, idx)
            arrays[s]["y"].append(y)
            arrays[s][DAMAGE_PIXELS].append(damage)
            arrays[s][PREWAR_FLAG].append(np.full(len(idx), int(p.ps.prewar), dtype=np.uint8))
        row["blocks"] = len(blocks)
        rows[s] = row
    return rows


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
