"""Self-contained checkpoints: everything needed to reuse a model without its dataset.

Weights, architecture (a record naming its entry in :mod:`damagenet.models.registry`, which
rebuilds it), the network's band order and input convention (``input``), patch size (the tile
size of a pixel model), the decision threshold chosen on validation, the training history, a
hash of the dataset, the ground it was trained on (``training_ground``), the processing level of
its scenes (``processing_level``, None when the dataset did not record it), whether training
finished (``complete``) and a model card (:mod:`damagenet.models.card`). Saved with plain
types and tensors only, so loading uses ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contract.atomic import atomic_path
from contract.bands import BANDS, band_permutation
from contract.errors import first_line
from damagenet.data.pairs import Normalisation, file_sha256
from damagenet.errors import CheckpointError, DamagenetError, DamagenetUsageError
from damagenet.models import registry
from damagenet.models.card import build_card, software
from damagenet.models.registry import Network, Weights

FORMAT = "damagenet-checkpoint/2"


@dataclass(frozen=True)
class ModelInput:
    """How arrays in the project's band order (B02, B03, B04, B08) become network input.

    The network may expect another order (the study's R, G, B, NIR = B04, B03, B02, B08):
    bands are reordered first, then scaled and standardised with statistics in network order.
    """

    bands: tuple[str, ...]
    norm: Normalisation

    @property
    def order(self) -> list[int]:
        """Index into the project's bands of each network input channel."""
        return [BANDS.index(b) for b in self.bands]

    def apply(self, x: np.ndarray) -> torch.Tensor:
        """(N, 4, S, S) digital numbers in B02, B03, B04, B08 -> normalised network input."""
        return self.norm.apply(np.asarray(x)[:, self.order])


def check_bands(bands: Sequence[str], what: str) -> tuple[str, ...]:
    """``bands`` as a tuple if it is a permutation of the project's four bands."""
    names = band_permutation(bands)
    if names is None or tuple(bands) != names:
        raise CheckpointError(
            f"{what}: bands {list(bands)} are not a permutation of {', '.join(BANDS)}"
        )
    return names


def save_checkpoint(
    path: str | Path,
    model: Weights,
    *,
    patch_size: int,
    norm: Normalisation,
    threshold: dict[str, Any],
    history: list[dict[str, Any]],
    dataset: dict[str, Any] | None,
    bands: Sequence[str] = BANDS,
    complete: bool = True,
    card: Mapping[str, Any] | None = None,
    training_ground: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    processing_level: str | None = None,
) -> dict[str, Any]:
    """Write atomically (temporary file, then rename); return the payload.

    ``norm`` is in the order of ``bands`` (the network's input channels). ``card`` may give the
    card's ``training`` and ``test`` sections; the rest is derived from the payload.
    """
    bands = check_bands(bands, str(path))
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload: dict[str, Any] = {
        "format": FORMAT,
        "state_dict": state,
        "architecture": model.architecture(),
        "bands": list(bands),
        "patch_size": int(patch_size),
        "normalisation": {
            "mean": list(norm.mean),
            "std": list(norm.std),
            "scale": float(norm.scale),
        },
        "input": {
            "bands": list(bands),
            "scale": float(norm.scale),
            "mean": list(norm.mean),
            "std": list(norm.std),
        },
        "threshold": dict(threshold),
        "history": history,
        "dataset": dataset,
        "complete": bool(complete),
        "processing_level": processing_level,
        **software(),
        **(extra or {}),
    }
    if training_ground is not None:
        payload["training_ground"] = training_ground
    card = card or {}
    payload["card"] = build_card(payload, card.get("training"), card.get("test"))
    buffer = io.BytesIO()  # torch names the archive after the file: a buffer keeps the name
    torch.save(payload, buffer)  # fixed, so the same model gives the same bytes (and hash)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return payload


def read_payload(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint's payload, refusing files that are not checkpoints of this project."""
    path = Path(path)
    if not path.is_file():
        raise DamagenetUsageError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # zip, pickle and unpickler errors all mean the same here
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(exc).__name__}: {first_line(exc)})"
        ) from exc
    found = payload.get("format") if isinstance(payload, dict) else None
    if found == "damagenet-checkpoint/1":
        raise CheckpointError(
            f"{path}: made by an earlier damagenet (format 1, no model card "
            "or input convention); retrain it or re-import it"
        )
    if found != FORMAT:
        raise CheckpointError(
            f"{path}: not a damagenet checkpoint (format {found or '?'}); "
            "a state dict of the original study needs 'damagenet import-seed'"
        )
    return payload


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", allow_provisional: bool = False
) -> tuple[Network, dict[str, Any]]:
    """The model (in eval mode) and the checkpoint's metadata.

    The network is rebuilt through :mod:`damagenet.models.registry` from the recorded
    architecture (records without a name are ``siamese-resnet``); call it as
    ``model(before, after)``; :func:`damagenet.models.registry.output_of` of
    ``payload["architecture"]`` says whether it returns (N,) pair or (N, 1, H, W) pixel logits.

    A provisional checkpoint (saved during training, ``complete`` False) is refused unless
    ``allow_provisional``: a model from an interrupted run must not slip into maps unnoticed.
    """
    payload = read_payload(path, map_location)
    arch = payload["architecture"]
    bands = check_bands(payload["bands"], str(path))
    if arch["in_bands"] != len(bands):
        raise CheckpointError(
            f"{path}: network takes {arch['in_bands']} bands, checkpoint lists {list(bands)}"
        )
    if not payload.get("complete") and not allow_provisional:
        raise CheckpointError(
            f"{path}: provisional checkpoint (saved at epoch {payload.get('best_epoch', '?')} "
            "while training was still running; training did not finish). Finish the training, "
            "or pass --allow-provisional to use it anyway"
        )
    try:
        model = registry.rebuild(arch)
        model.load_state_dict(payload["state_dict"])
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    except (RuntimeError, KeyError, TypeError, DamagenetError) as exc:
        raise CheckpointError(
            f"{path}: weights do not match the recorded architecture "
            f"{registry.describe(arch)} ({first_line(exc)})"
        ) from exc
    model.eval()
    return model, payload


def checkpoint_hash(path: str | Path) -> str:
    """First 16 hex digits of the file's SHA-256: how maps and reports name a checkpoint."""
    try:
        return file_sha256(path)[:16]
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint ({exc.strerror})") from exc


def norm_of(payload: dict[str, Any]) -> Normalisation:
    """Scale and standardisation in the *network's* band order (``payload['bands']``).

    For arrays in the project's band order use :func:`input_of`, which also reorders.
    """
    n = payload["input"]
    return Normalisation(mean=list(n["mean"]), std=list(n["std"]), scale=float(n["scale"]))


def input_of(payload: dict[str, Any]) -> ModelInput:
    """Reordering plus normalisation, for arrays in B02, B03, B04, B08 (scenes, the dataset)."""
    return ModelInput(bands=tuple(payload["input"]["bands"]), norm=norm_of(payload))


def processing_level(payload: Mapping[str, Any]) -> str | None:
    """The processing level (L1C, L2A) of the scenes the model was trained on, None if unknown.

    For :func:`contract.processing_level.warn_if_mismatch` when the model scores a scene.
    """
    level = payload.get("processing_level")
    return str(level) if level else None
