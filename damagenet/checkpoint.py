"""Self-contained checkpoints: everything needed to reuse a model without its dataset.

Weights, architecture, band order, patch size, normalisation statistics, the decision
threshold chosen on validation, the training history and a hash of the dataset. Saved with
plain types and tensors only, so loading uses ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from contract.atomic import atomic_path
from contract.bands import BANDS
from damagenet.data import Normalisation
from damagenet.errors import DamagenetError
from damagenet.model import SiameseResNet

FORMAT = "damagenet-checkpoint/1"


def save_checkpoint(path: str | Path, model: SiameseResNet, *, patch_size: int,
                    norm: Normalisation, threshold: dict[str, Any],
                    history: list[dict[str, Any]], dataset: dict[str, Any],
                    extra: dict[str, Any] | None = None) -> None:
    """Write atomically (temporary file, then rename)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "state_dict": state, "architecture": model.architecture(),
               "bands": list(BANDS), "patch_size": int(patch_size),
               "normalisation": {"mean": norm.mean, "std": norm.std, "scale": norm.scale},
               "threshold": threshold, "history": history, "dataset": dataset,
               "torch": str(torch.__version__), **(extra or {})}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"
                    ) -> tuple[SiameseResNet, dict[str, Any]]:
    """The model (in eval mode) and the checkpoint's metadata; refuses foreign files."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError as exc:
        raise DamagenetError(f"{path}: checkpoint not found") from exc
    except Exception as exc:
        raise DamagenetError(f"{path}: not a readable checkpoint ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DamagenetError(f"{path}: not a damagenet checkpoint (format "
                             f"{payload.get('format') if isinstance(payload, dict) else '?'})")
    arch = payload["architecture"]
    if list(payload["bands"]) != list(BANDS) or arch["in_bands"] != len(BANDS):
        raise DamagenetError(f"{path}: checkpoint expects bands {payload['bands']}, this "
                             f"version uses {list(BANDS)}")
    model = SiameseResNet(arch["backbone"], in_bands=arch["in_bands"], hidden=arch["hidden"],
                          dropout=arch["dropout"])
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise DamagenetError(f"{path}: weights do not match the recorded architecture "
                             f"{arch} ({str(exc).splitlines()[0]})") from exc
    model.eval()
    return model, payload


def norm_of(payload: dict[str, Any]) -> Normalisation:
    n = payload["normalisation"]
    return Normalisation(mean=list(n["mean"]), std=list(n["std"]), scale=float(n["scale"]))
