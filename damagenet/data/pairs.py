"""Loading the dataset NPZ into normalised in-memory tensors, and train-time augmentation.

Two layouts are read: the study's splits (``Xb_train``, ``Xa_train``, ``y_train``, ... val,
test), as ``pipeline dataset`` writes them, and a flat ``x_before``, ``x_after``, ``y`` with an
optional ``split`` array. Values are L2A digital numbers; they are scaled by 1/10000 and
standardised per band with statistics of the training split only (both epochs), so nothing of
validation or test leaks into the inputs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from contract.bands import BANDS, QUANTIFICATION
from contract.npz_keys import (
    DATASET_KIND,
    FLAT_KEYS,
    PATCHES,
    PREWAR,
    PROCESSING_LEVEL,
    SPLITS,
    TILES,
    split_key,
)
from damagenet.errors import DamagenetError, DamagenetUsageError, InputFileError

log = logging.getLogger(__name__)
SCALE = 1.0 / QUANTIFICATION
N_BANDS = len(BANDS)


@dataclass
class Split:
    """One split as raw arrays (digital numbers) plus metadata."""

    before: np.ndarray  # (N, 4, S, S)
    after: np.ndarray
    y: np.ndarray  # (N,) int64
    aoi: np.ndarray | None = None
    row: np.ndarray | None = None  # (N,) top-left pixel of each patch in its AOI's grid
    col: np.ndarray | None = None
    lon: np.ndarray | None = None  # (N,) centre of each patch in EPSG:4326
    lat: np.ndarray | None = None
    #: (N,) 1 for a tile of a temporal negative pair (tile datasets only)
    prewar: np.ndarray | None = None

    def take(self, idx: np.ndarray) -> Split:
        """The pairs ``idx`` selects (indices or a mask), with their provenance."""
        picked: dict[str, Any] = {
            f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[idx]
            for f in dataclasses.fields(self)
        }
        return Split(**picked)


@dataclass
class Normalisation:
    """Per-band standardisation of reflectance (DN / 10000)."""

    mean: list[float]
    std: list[float]
    scale: float = SCALE

    @classmethod
    def fit(cls, split: Split, chunk: int = 256) -> Normalisation:
        """Per-band mean and standard deviation of both dates of the split, in reflectance.

        Two passes over ``chunk`` pairs at a time, so ten thousand 64 px tiles need no float64
        copy of the whole split (2.6 GB) to be summed.
        """
        dates = (split.before, split.after)
        count = 2 * split.before[:, 0].size
        mean = np.add(*(_band_sums(x, chunk, lambda a: a) for x in dates)) / count

        def centred(a: np.ndarray) -> np.ndarray:
            return (a - mean[None, :, None, None]) ** 2

        std = np.sqrt(np.add(*(_band_sums(x, chunk, centred) for x in dates)) / count)
        return cls(mean=mean.tolist(), std=np.maximum(std, 1e-6).tolist())

    def apply(self, x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(x.astype(np.float32)) * self.scale
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        return (t - mean) / std


def _band_sums(x: np.ndarray, chunk: int, f: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Per-band sum of ``f(reflectance)`` over (N, bands, H, W), ``chunk`` samples at a time."""
    out = np.zeros(x.shape[1])
    for start in range(0, len(x), chunk):
        out += f(x[start : start + chunk].astype(np.float64) * SCALE).sum(axis=(0, 2, 3))
    return out


def _split_from_flat(d, path: Path) -> dict[str, Split]:
    missing = [k for k in FLAT_KEYS if k not in d.files]
    if missing:
        raise DamagenetError(f"{path}: flat layout misses {missing}")
    xb, xa, y = (d[k] for k in FLAT_KEYS)
    aoi, row, col = (d[k] if k in d.files else None for k in ("aoi", "row", "col"))
    if "split" not in d.files:
        log.warning(
            "%s has no 'split' array: splitting at random 70/15/15, which lets "
            "neighbouring patches leak between splits (as in the original study); "
            "prefer 'pipeline dataset'",
            path,
        )
        order = np.random.default_rng(0).permutation(len(y))
        split = np.empty(len(y), dtype=object)
        a, b = int(0.7 * len(y)), int(0.85 * len(y))
        split[order[:a]], split[order[a:b]], split[order[b:]] = "train", "val", "test"
    else:
        raw = d["split"]
        split = np.array([SPLITS[int(s)] if str(s).isdigit() else str(s) for s in raw])
    out = {}
    for s in SPLITS:
        m = split == s
        if m.any():
            out[s] = Split(
                xb[m],
                xa[m],
                y[m].astype(np.int64),
                *(a[m] if a is not None else None for a in (aoi, row, col)),
            )
    return out


@contextlib.contextmanager
def open_npz(path: Path) -> Iterator[Any]:
    """The opened NPZ (closed on exit); a missing or unreadable file is a clear error."""
    if not path.exists():
        raise DamagenetUsageError(f"{path}: cannot read: no such dataset file")
    try:
        d = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InputFileError(
            f"{path}: cannot read as NPZ, the file is truncated or not an NPZ ({exc})"
        ) from exc
    with d:
        yield d


def dataset_kind(d: Any) -> str:
    """:data:`~contract.npz_keys.PATCHES` or :data:`~contract.npz_keys.TILES` of an open NPZ
    (files written before the key existed are patch datasets)."""
    return str(d[DATASET_KIND]) if DATASET_KIND in d.files else PATCHES


def processing_level(path: str | Path) -> str | None:
    """The scenes' processing level a dataset records (L1C or L2A), or None when it does not."""
    with open_npz(Path(path)) as d:
        return str(d[PROCESSING_LEVEL]) if PROCESSING_LEVEL in d.files else None


def study_splits(d: Any, path: Path, int_labels: bool = True) -> dict[str, Split]:
    """The ``Xb_<s>``, ``Xa_<s>``, ``y_<s>`` splits (and their provenance) of an open NPZ.

    ``int_labels`` turns labels into int64 (patch labels); tile targets keep their dtype.
    """
    splits = {}
    for s in SPLITS:
        keys = [split_key(k, s) for k in ("Xb", "Xa", "y")]
        present = [k in d.files for k in keys]
        if not any(present):
            continue
        if not all(present):
            lacking = [k for k, p in zip(keys, present, strict=True) if not p]
            raise DamagenetError(f"{path}: split {s!r} misses {lacking}")
        extra = (d.get(split_key(k, s)) for k in ("aoi", "row", "col", "lon", "lat", PREWAR))
        y = d[keys[2]]
        splits[s] = Split(d[keys[0]], d[keys[1]], y.astype(np.int64) if int_labels else y, *extra)
    return splits


def load_splits(path: str | Path) -> dict[str, Split]:
    """Read either patch layout and validate it; the error names the file and the problem.

    Tile datasets (per-pixel targets) are refused: :func:`damagenet.data.tiles.load_tiles`.
    """
    path = Path(path)
    with open_npz(path) as d:
        if dataset_kind(d) == TILES:
            raise DamagenetError(
                f"{path}: a tile dataset (one target per pixel), not a patch dataset (one label "
                "per pair); the pixel model reads it (--arch siamese-unet)"
            )
        if any(k.startswith("Xb_") for k in d.files):
            splits = study_splits(d, path)
        elif "x_before" in d.files or "x_after" in d.files:
            splits = _split_from_flat(d, path)
        else:
            raise DamagenetError(
                f"{path}: neither the study's layout (Xb_train, Xa_train, "
                f"y_train, ...) nor the flat one (x_before, x_after, y); keys "
                f"found: {d.files}"
            )
    for s, sp in splits.items():
        _validate(path, s, sp)
    sizes = {sp.before.shape[-1] for sp in splits.values() if len(sp.y)}
    if len(sizes) > 1:
        raise DamagenetError(f"{path}: splits have different patch sizes {sorted(sizes)}")
    return splits


def dataset_config(path: str | Path) -> dict | None:
    """The configuration ``pipeline dataset`` records in the NPZ (split method, AOIs), if any."""
    try:
        with np.load(path, allow_pickle=False) as d:
            return json.loads(str(d["config"])) if "config" in d.files else None
    except (OSError, ValueError):
        return None


def check_pairs(path: Path, name: str, sp: Split, what: str = "patches") -> None:
    """What patches and tiles share: two dates of one shape, 4 bands, square, finite values,
    one provenance entry per pair."""
    if sp.before.shape != sp.after.shape:
        raise DamagenetError(
            f"{path}: {name}: before {sp.before.shape} and after {sp.after.shape} shapes differ"
        )
    if sp.before.ndim != 4:
        raise DamagenetError(
            f"{path}: {name}: {what} must be (N, bands, H, W), got {sp.before.shape}"
        )
    if sp.before.shape[1] != N_BANDS:
        raise DamagenetError(
            f"{path}: {name}: {sp.before.shape[1]} bands, expected {N_BANDS} (B02, B03, B04, B08)"
        )
    if sp.before.shape[2] != sp.before.shape[3]:
        raise DamagenetError(f"{path}: {name}: {what} must be square, got {sp.before.shape[2:]}")
    for arr, date in ((sp.before, "before"), (sp.after, "after")):
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            raise DamagenetError(f"{path}: {name}: {date} {what} contain NaN or infinite values")
    n = len(sp.before)
    for key in ("aoi", "row", "col", "lon", "lat", "prewar"):
        extra = getattr(sp, key)
        if extra is not None and extra.shape != (n,):
            raise DamagenetError(
                f"{path}: {name}: {key} array of shape {extra.shape} for {n} pairs"
            )


def _validate(path: Path, name: str, sp: Split) -> None:
    check_pairs(path, name, sp)
    if len(sp.y) != len(sp.before) or sp.y.ndim != 1:
        raise DamagenetError(f"{path}: {name}: {len(sp.y)} labels for {len(sp.before)} pairs")
    if len(sp.y) and not np.isin(sp.y, (0, 1)).all():
        raise DamagenetError(f"{path}: {name}: labels must be 0 or 1, found {np.unique(sp.y)[:5]}")


def require_both_classes(path: str | Path, name: str, sp: Split) -> None:
    classes = set(np.unique(sp.y).tolist())
    if classes != {0, 1}:
        raise DamagenetError(
            f"{path}: split {name!r} has only class {sorted(classes)} "
            f"({len(sp.y)} pairs); training and evaluation need both damage "
            "and no-damage pairs"
        )


def training_ground(splits: dict[str, Split], patch_size: int) -> dict | None:
    """Per AOI and split, the (row, col) of every patch in the AOI's grid; None if unknown.

    Maps drawn over an AOI the model was trained on use it to tell ground the model saw in
    training from ground it never saw (``training_ground`` of the checkpoint). Tiles give the
    top-left pixel of every tile, ``patch_size`` their size.
    """
    known = {
        name: (sp.aoi, sp.row, sp.col)
        for name, sp in splits.items()
        if sp.aoi is not None and sp.row is not None and sp.col is not None
    }
    if not splits or len(known) != len(splits):
        return None
    aois: dict[str, dict[str, torch.Tensor]] = {}
    for slug in sorted({str(a) for aoi, _, _ in known.values() for a in aoi.tolist()}):
        aois[slug] = {}
        for name in SPLITS:
            aoi, row, col = known.get(name, (np.zeros(0), np.zeros(0), np.zeros(0)))
            m = aoi == slug
            rc = np.stack([row[m], col[m]], axis=1) if m.any() else np.zeros((0, 2))
            aois[slug][name] = torch.from_numpy(np.ascontiguousarray(rc, dtype=np.int32))
    return {"patch_size": int(patch_size), "aois": aois}


@dataclass
class TensorSplit:
    """A split as normalised float tensors, held in memory and indexed by batch."""

    before: torch.Tensor
    after: torch.Tensor
    y: torch.Tensor
    aoi: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device) -> TensorSplit:
        return TensorSplit(
            self.before.to(device), self.after.to(device), self.y.to(device), self.aoi
        )


class Preprocess(Protocol):
    """Raw digital numbers to network input: a :class:`Normalisation`, or one with reordering."""

    def apply(self, x: np.ndarray) -> torch.Tensor: ...


def to_tensors(sp: Split, norm: Preprocess) -> TensorSplit:
    return TensorSplit(
        norm.apply(sp.before),
        norm.apply(sp.after),
        torch.from_numpy(sp.y.astype(np.float32)),
        sp.aoi,
    )


def augment(
    before: torch.Tensor, after: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One random symmetry of the square per pair, the same for both epochs."""
    out_b, out_a = augment_all((before, after), generator)
    return out_b, out_a


def augment_all(
    tensors: Sequence[torch.Tensor], generator: torch.Generator
) -> tuple[torch.Tensor, ...]:
    """One random symmetry of the square per sample, the same for every tensor given.

    For both epochs of a pair, and for a tile's per-pixel target with them. The 8 symmetries
    (4 rotations, each optionally transposed) act on the last two axes and are applied
    group-wise, 8 tensor operations per batch rather than one per sample.
    """
    n = tensors[0].shape[0]
    k = torch.randint(0, 8, (n,), generator=generator).to(tensors[0].device)
    out = [t.clone() for t in tensors]
    for sym in range(8):
        idx = (k == sym).nonzero(as_tuple=True)[0]
        if idx.numel() == 0:
            continue
        for o, t in zip(out, tensors, strict=True):
            o[idx] = symmetry(t[idx], sym)
    return tuple(out)


def symmetry(x: torch.Tensor, sym: int) -> torch.Tensor:
    """Symmetry ``sym`` (0-7) of the square on the last two axes: rotate, then transpose."""
    y = torch.rot90(x, sym % 4, dims=(-2, -1))
    return y.transpose(-2, -1) if sym >= 4 else y


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(2**20), b""):
            h.update(chunk)
    return h.hexdigest()
