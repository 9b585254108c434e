"""Device choice and batched inference, shared by training, evaluation and maps."""

from __future__ import annotations

import numpy as np
import torch

from damagenet.data import TensorSplit
from damagenet.errors import DamagenetError
from damagenet.model import SiameseResNet


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DamagenetError("--device cuda requested but no CUDA GPU is available")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise DamagenetError(f"--device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


@torch.no_grad()
def predict_logits(model: SiameseResNet, data: TensorSplit, batch_size: int,
                   device: torch.device) -> np.ndarray:
    """Logits for every pair of ``data``, in eval mode (mixed precision on CUDA)."""
    model.eval()
    out = []
    for start in range(0, len(data), batch_size):
        xb = data.before[start:start + batch_size].to(device, non_blocking=True)
        xa = data.after[start:start + batch_size].to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, dtype=torch.float16,
                            enabled=device.type == "cuda"):
            out.append(model(xb, xa).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-logits.astype(np.float64)))
