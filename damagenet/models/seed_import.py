"""``damagenet import-seed``: the original study's trained model as a checkpoint of this project.

The study published ``Model_3_weights.pt``, a ``state_dict`` of its ``SiameseCNN``: the backbone
as ``features`` (``nn.Sequential(*list(resnet.children())[:-1])`` of a ResNet with a 4-band first
convolution) and the head as ``head`` (``nn.Sequential`` of ``Linear, BatchNorm1d, GELU,
Dropout`` blocks and a final ``Linear(., 1)``), plus ``normalization_stats.npz`` (``mean``,
``std`` per band of values / 10000, in the band order of its arrays: R, G, B, NIR). The import
recognises the backbone and the head from the tensor shapes, renames the backbone's keys to
ours, and records the study's input convention in the checkpoint, so ``damagenet predict``
reorders a scene's B02, B03, B04, B08 into the network's order and normalises exactly as the
study did. Everything is checked before anything is written.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contract.bands import BANDS, QUANTIFICATION
from contract.errors import first_line
from damagenet.data.pairs import Normalisation
from damagenet.defaults import STUDY_BANDS
from damagenet.errors import CheckpointError, DamagenetUsageError, InputFileError
from damagenet.models.checkpoint import check_bands, save_checkpoint
from damagenet.models.siamese_resnet import BACKBONES, HEADS, SiameseResNet, head_name

log = logging.getLogger(__name__)

#: Index in the study's ``features`` Sequential -> our encoder's module name (2 ReLU, 3 max
#: pooling and 8 average pooling hold no tensors).
FEATURE_MODULES = {
    "0": "conv1",
    "1": "bn1",
    "4": "layer1",
    "5": "layer2",
    "6": "layer3",
    "7": "layer4",
}
#: What the study reported for its published model, by patch size (leaky protocol).
STUDY_REPORTED = {
    64: {"accuracy": 0.851, "damage_recall": 0.907, "test_pairs": None},
    16: {
        "accuracy": 0.826,
        "damage_precision": 0.77,
        "damage_recall": 0.92,
        "macro_f1": 0.82,
        "test_pairs": 592,
    },
}
STUDY_PROTOCOL = (
    "reported by the original study, not measured here: random split of "
    "overlapping patches over all cities, with augmented copies made before the "
    "split; these figures are inflated by leakage"
)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a saved state dict; also unwraps ``{"state_dict": ...}`` and ``module.``."""
    if not path.is_file():
        raise DamagenetUsageError(f"{path}: weights file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip, pickle and unpickler errors all mean the same here
        raise CheckpointError(
            f"{path}: not a readable PyTorch state dict ({type(exc).__name__}: {first_line(exc)})"
        ) from exc
    if isinstance(obj, dict) and "format" in obj:
        raise CheckpointError(
            f"{path}: already a damagenet checkpoint ({obj['format']}); use it directly"
        )
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if (
        not isinstance(obj, dict)
        or not obj
        or not all(isinstance(v, torch.Tensor) for v in obj.values())
    ):
        raise CheckpointError(f"{path}: not a state dict (a mapping of names to tensors)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def split_study_keys(
    path: Path, state: Mapping[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(encoder state in our names, head state) from the study's ``features.*``/``head.*``."""
    encoder, head, foreign = {}, {}, []
    for key, value in state.items():
        parts = key.split(".", 2)
        if parts[0] == "features" and len(parts) == 3 and parts[1] in FEATURE_MODULES:
            encoder[f"{FEATURE_MODULES[parts[1]]}.{parts[2]}"] = value
        elif parts[0] == "head":
            head[key.removeprefix("head.")] = value
        else:
            foreign.append(key)
    if foreign or not encoder or not head:
        raise CheckpointError(
            f"{path}: not the study's SiameseCNN (expected 'features.*' and 'head.*' tensors; "
            f"found {len(encoder)} backbone, {len(head)} head"
            + (f", and foreign keys such as {foreign[:3]}" if foreign else "")
            + ")"
        )
    return encoder, head


@functools.cache
def encoder_shapes(backbone: str) -> dict[str, tuple[int, ...]]:
    """Names and shapes of a 4-band encoder's tensors, built without allocating weights."""
    with torch.device("meta"):
        encoder = SiameseResNet(backbone).encoder
    return {k: tuple(v.shape) for k, v in encoder.state_dict().items()}


def detect_backbone(path: Path, encoder: Mapping[str, torch.Tensor]) -> str:
    """The ResNet whose tensor names and shapes the backbone has, or a clear refusal."""
    conv = encoder.get("conv1.weight")
    if conv is None or conv.ndim != 4:
        raise CheckpointError(f"{path}: backbone has no first convolution 'features.0.weight'")
    if conv.shape[1] != len(BANDS):
        raise CheckpointError(
            f"{path}: first convolution takes {conv.shape[1]} bands; the "
            f"study's network takes {len(BANDS)} (R, G, B, NIR)"
        )
    shapes = _without_counters({k: tuple(v.shape) for k, v in encoder.items()})
    for backbone in BACKBONES:
        if _without_counters(encoder_shapes(backbone)) == shapes:
            return backbone
    blocks = sorted(
        {re.sub(r"^(layer\d\.\d+)\..*", r"\1", k) for k in shapes if k.startswith("layer")}
    )
    raise CheckpointError(
        f"{path}: backbone is none of {', '.join(BACKBONES)} with a 4-band "
        f"first convolution ({len(shapes)} tensors, {len(blocks)} residual "
        "blocks); not the study's architecture"
    )


def _without_counters(shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """BatchNorm's ``num_batches_tracked`` is absent from state dicts of old PyTorch versions."""
    return {k: v for k, v in shapes.items() if not k.endswith("num_batches_tracked")}


def detect_head(
    path: Path, head: Mapping[str, torch.Tensor], in_features: int
) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Hidden widths and dropouts of one of the study's heads, read from the shapes.

    The layout is ``[Linear, BatchNorm1d, GELU, Dropout] * k`` then ``Linear(., 1)``, so Linear
    layers sit at indices 0, 4, ..., 4k and BatchNorm at 1, 5, ...; dropout rates are not in a
    state dict and come from the study's head of the same widths.
    """
    linear = sorted(
        int(k.split(".")[0]) for k, v in head.items() if k.endswith(".weight") and v.ndim == 2
    )
    norms = sorted(int(k.split(".")[0]) for k in head if k.endswith(".running_mean"))
    k = len(linear) - 1
    widths = [int(head[f"{i}.weight"].shape[0]) for i in linear]
    found = (
        "-".join(map(str, [int(head[f"{linear[0]}.weight"].shape[1])] + widths))
        if linear
        else "none"
    )
    known = " or ".join("-".join(map(str, (in_features, *h, 1))) for h, _ in HEADS.values())
    shaped = (
        k >= 1
        and linear == list(range(0, 4 * k + 1, 4))
        and norms == list(range(1, 4 * k, 4))
        and widths[-1] == 1
        and int(head["0.weight"].shape[1]) == in_features
        and all(int(head[f"{linear[j + 1]}.weight"].shape[1]) == widths[j] for j in range(k))
    )
    name = head_name(widths[:-1]) if shaped else None
    if name is None:
        raise CheckpointError(
            f"{path}: head {found} is not one of the study's heads ({known}, "
            "Linear/BatchNorm1d/GELU/Dropout blocks)"
        )
    return HEADS[name]


def read_stats(path: Path) -> tuple[list[float], list[float]]:
    """Per-band ``mean`` and ``std`` of values / 10000 from the study's statistics file."""
    try:
        with np.load(path, allow_pickle=False) as d:
            missing = [k for k in ("mean", "std") if k not in d.files]
            if missing:
                raise InputFileError(
                    f"{path}: statistics lack {missing} (found {d.files}); the "
                    "study's normalization_stats.npz holds 'mean' and 'std'"
                )
            mean, std = (np.asarray(d[k], dtype=np.float64).ravel() for k in ("mean", "std"))
    except (OSError, ValueError) as exc:
        if isinstance(exc, InputFileError):
            raise
        raise InputFileError(f"{path}: cannot read as NPZ ({exc})") from exc
    for name, arr in (("mean", mean), ("std", std)):
        if arr.size != len(BANDS):
            raise InputFileError(
                f"{path}: {name} has {arr.size} values, expected one per band ({len(BANDS)})"
            )
        if not np.isfinite(arr).all():
            raise InputFileError(f"{path}: {name} holds NaN or infinite values")
    if (std <= 0).any():
        raise InputFileError(f"{path}: std must be positive, got {std.tolist()}")
    if mean.max() > 2:
        log.warning(
            "%s: means %s look like digital numbers, not values / %d; the study's "
            "statistics are of values / %d",
            path,
            mean.tolist(),
            QUANTIFICATION,
            QUANTIFICATION,
        )
    return mean.tolist(), std.tolist()


def import_seed(
    weights: str | Path,
    stats: str | Path,
    out: str | Path,
    bands: tuple[str, ...] = STUDY_BANDS,
    patch_size: int = 64,
) -> dict[str, Any]:
    """Check the study's weights and statistics, then write the checkpoint; return its payload."""
    weights, stats, out = Path(weights), Path(stats), Path(out)
    try:
        bands = check_bands(bands, "--bands")
    except CheckpointError as exc:
        raise DamagenetUsageError(str(exc)) from exc
    if patch_size < 1:
        raise DamagenetUsageError(f"--patch-size must be at least 1, got {patch_size}")
    mean, std = read_stats(stats)
    model = study_model(weights)
    name = head_name(model.hidden)
    card = _study_card(weights, stats, name, patch_size)
    payload = save_checkpoint(
        out,
        model,
        patch_size=patch_size,
        norm=Normalisation(mean=mean, std=std, scale=1.0 / QUANTIFICATION),
        threshold={"value": 0.5, "rule": "study", "chosen_on": None},
        history=[],
        dataset=None,
        bands=bands,
        complete=True,
        card=card,
        extra={"imported": {"weights": str(weights), "stats": str(stats)}},
    )
    log.info(
        "imported %s (%s backbone, %s head, bands %s, %d px) -> %s",
        weights,
        model.backbone,
        name,
        ",".join(bands),
        patch_size,
        out,
    )
    return payload


def study_model(weights: Path) -> SiameseResNet:
    """The study's network (backbone and head read off its state dict) with its weights."""
    encoder, head = split_study_keys(weights, read_state_dict(weights))
    backbone = detect_backbone(weights, encoder)
    hidden, dropout = detect_head(weights, head, 4 * BACKBONES[backbone][2])
    model = SiameseResNet(backbone, hidden=hidden, dropout=dropout)
    state = {f"encoder.{k}": v for k, v in encoder.items()} | {
        f"head.{k}": v for k, v in head.items()
    }
    for key, value in model.state_dict().items():  # older torch saved no batch counters
        if key.endswith("num_batches_tracked"):
            state.setdefault(key, torch.zeros_like(value))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{weights}: does not fit {backbone} with the study's head ({first_line(exc)})"
        ) from exc
    return model.eval()


def _study_card(weights: Path, stats: Path, name: str | None, patch_size: int) -> dict[str, Any]:
    """The card's training and test sections of an imported study model."""
    reported = STUDY_REPORTED.get(int(patch_size))
    return {
        "training": {
            "origin": f"imported from the original study's published weights ({weights.name}, "
            f"statistics {stats.name}) with damagenet import-seed",
            "aois": "the study's 22 Ukrainian cities (all splits drawn from all cities)",
            "dates": "before: a 2021 scene per city; after: a scene on or after 2022-03-01 "
            "(per city in the study's seed_aois.csv)",
            "head": f"{name} ({'published code, Model_3' if name == 'study-code' else 'README'})",
        },
        "test": {"metrics": reported, "protocol": STUDY_PROTOCOL}
        if reported
        else {
            "metrics": None,
            "protocol": f"the study reported no figures for {patch_size} px patches",
        },
    }
