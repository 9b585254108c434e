"""The seam between a task that scores one value per pair and one that scores every pixel.

Training, validation and the test evaluation are the same loop for both kinds of network; what
differs lives here and nowhere else: which dataset layout is read, what a target is, the loss,
what a batch's accuracy counts, which symmetries move the target, how an epoch draws its
examples, and which values validation and test score.

- :class:`PairTask` (``siamese-resnet``): one 0/1 label per before/after patch pair, BCE with
  logits (the study's), one random symmetry per pair for both dates, a shuffled pass per epoch,
  patch-level metrics and the evaluation artefacts of :mod:`damagenet.evaluation.evaluate`.
- :class:`PixelTask` (``siamese-unet``): a tile of 1/0/255 targets per pair, the masked loss of
  :mod:`damagenet.training.losses` over labelled pixels, the same symmetry for both dates and the
  target, epochs that oversample tiles holding damage, metrics over labelled pixels (the
  threshold is chosen on validation pixels), and at the end the evaluation ``damagenet
  evaluate`` writes for a tile dataset (pixel, patch and point levels beside the baselines).

:func:`task_for` picks the task from the architecture's registry entry; :func:`build_network`
builds the network a :class:`~damagenet.training.config.TrainConfig` asks for.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from contract.labels import DAMAGE, UNKNOWN
from damagenet.data import pairs, tiles
from damagenet.data.pairs import Preprocess, Split, TensorSplit, augment_all, dataset_config
from damagenet.errors import DamagenetUsageError
from damagenet.evaluation.evaluate import protocol_text, score_test, write_evaluation
from damagenet.evaluation.metrics import ranking_metrics, report
from damagenet.evaluation.tile_evaluate import evaluate_tiles
from damagenet.inference.scoring import predict_logits, resolve_device
from damagenet.logits import sigmoid
from damagenet.models import registry
from damagenet.models.card import THRESHOLD_HOW
from damagenet.models.checkpoint import load_checkpoint
from damagenet.models.registry import Network
from damagenet.models.siamese_resnet import build_model
from damagenet.models.unet import SiameseUNet, load_imagenet_file
from damagenet.training.config import TrainConfig
from damagenet.training.losses import MaskedLoss

log = logging.getLogger(__name__)
Evaluation = tuple[dict[str, Any], np.ndarray]


class Task(Protocol):
    """What the training loop asks of a task (see the module docstring)."""

    unit: str

    def load(self, npz: str | Path) -> dict[str, Split]: ...
    def require_both_classes(self, npz: str | Path, name: str, split: Split) -> None: ...
    def tensors(self, split: Split, norm: Preprocess) -> TensorSplit: ...
    def target(self, y: np.ndarray) -> torch.Tensor: ...
    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...
    def counts(self, logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int]: ...
    def augment(
        self, xb: torch.Tensor, xa: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...
    def order(self, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor: ...
    def scored(self, logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...
    def score_test(
        self,
        model: nn.Module,
        norm: Preprocess,
        splits: dict[str, Split],
        threshold: dict,
        npz: str | Path,
        batch_size: int,
        device: torch.device,
    ) -> Evaluation | None: ...
    def write_test(
        self,
        evaluation: Evaluation,
        splits: dict[str, Split],
        val_prob: np.ndarray,
        threshold: dict,
        out: Path,
    ) -> None: ...
    def card_test(self, metrics: dict[str, Any]) -> dict[str, Any]: ...
    def protocol(self, npz: str | Path) -> str: ...
    def eval_batch(self, batch_size: int, size: int) -> int: ...


class PairTask:
    """One label per pair: the study's patch classifier."""

    unit = "pair"

    def load(self, npz: str | Path) -> dict[str, Split]:
        return pairs.load_splits(npz)

    def require_both_classes(self, npz: str | Path, name: str, split: Split) -> None:
        pairs.require_both_classes(npz, name, split)

    def tensors(self, split: Split, norm: Preprocess) -> TensorSplit:
        return pairs.to_tensors(split, norm)

    def target(self, y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(y.astype(np.float32))

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(logits.float(), y)

    def counts(self, logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int]:
        return ((logits > 0).float() == y).sum(), len(y)

    def augment(
        self, xb: torch.Tensor, xa: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        xb, xa = augment_all((xb, xa), generator)
        return xb, xa, y

    def order(self, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return torch.randperm(len(y), generator=generator)

    def scored(self, logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return y, logits

    def protocol(self, npz: str | Path) -> str:
        return protocol_text(npz)

    def eval_batch(self, batch_size: int, size: int) -> int:
        return batch_size

    def score_test(
        self,
        model: nn.Module,
        norm: Preprocess,
        splits: dict[str, Split],
        threshold: dict,
        npz: str | Path,
        batch_size: int,
        device: torch.device,
    ) -> Evaluation | None:
        if len(np.unique(splits["test"].y)) < 2:
            log.warning("%s: the test split lacks a class; no test metrics", npz)
            return None
        return score_test(model, norm, splits, threshold, npz, batch_size, device)

    def write_test(
        self,
        evaluation: Evaluation,
        splits: dict[str, Split],
        val_prob: np.ndarray,
        threshold: dict,
        out: Path,
    ) -> None:
        metrics, prob = evaluation
        write_evaluation(metrics, splits, prob, val_prob, threshold, out)

    def card_test(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """Headline figures at the map threshold and the protocol."""
        return {
            "metrics": {
                "threshold": metrics["threshold"]["value"],
                "accuracy": metrics["accuracy"],
                "damage_precision": metrics["Damage"]["precision"],
                "damage_recall": metrics["Damage"]["recall"],
                "macro_f1": metrics["macro_f1"],
                "roc_auc": metrics["roc_auc"],
                "pr_auc": metrics["pr_auc"],
                "test_pairs": metrics["test_pairs"],
            },
            "protocol": metrics["protocol"],
        }


@dataclass(frozen=True)
class PixelTask:
    """A target per pixel with unknown ground: the Siamese U-Net's task.

    ``oversample`` is the share of each epoch's draws given to tiles holding damage (drawn with
    replacement; 0, or a split that already holds that share, keeps a plain shuffled pass).
    """

    pos_weight: float | None = None
    dice_weight: float = 0.0
    oversample: float = 0.5
    #: where and in batches of how many 16 px patches' pixels the final evaluation scores
    eval_device: str = "auto"
    eval_batch_size: int = 512
    unit = "tile"

    def load(self, npz: str | Path) -> dict[str, Split]:
        return tiles.load_tiles(npz)

    def require_both_classes(self, npz: str | Path, name: str, split: Split) -> None:
        tiles.require_both_classes(npz, name, split)

    def tensors(self, split: Split, norm: Preprocess) -> TensorSplit:
        return TensorSplit(
            norm.apply(split.before), norm.apply(split.after), self.target(split.y), split.aoi
        )

    def target(self, y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(y, dtype=np.uint8))

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return MaskedLoss(self.pos_weight, self.dice_weight)(logits, y)

    def counts(self, logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int]:
        known = y != UNKNOWN
        right = (logits.reshape(y.shape) > 0) == (y == DAMAGE)
        return (right & known).sum(), int(known.sum())

    def augment(
        self, xb: torch.Tensor, xa: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        xb, xa, y = augment_all((xb, xa, y), generator)
        return xb, xa, y

    def order(self, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        damaged = (y == DAMAGE).flatten(1).any(dim=1).cpu()
        n, n_damaged = len(y), int(damaged.sum())
        if n_damaged in (0, n) or n_damaged / n >= self.oversample:
            return torch.randperm(n, generator=generator)
        share = torch.where(
            damaged,
            torch.tensor(self.oversample / n_damaged, dtype=torch.float64),
            torch.tensor((1 - self.oversample) / (n - n_damaged), dtype=torch.float64),
        )
        return torch.multinomial(share, n, replacement=True, generator=generator)

    def scored(self, logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """0/1 labels and logits of the labelled pixels, flattened."""
        known = y != UNKNOWN
        return (y[known] == DAMAGE).astype(np.int64), logits.reshape(y.shape)[known]

    def protocol(self, npz: str | Path) -> str:
        return pixel_protocol(npz)

    def eval_batch(self, batch_size: int, size: int) -> int:
        """As many tiles as ``batch_size`` 16 px patches hold pixels: a U-Net keeps every
        pixel's features, so a batch of 512 tiles of 64 px would need gigabytes."""
        return max(1, batch_size * 16 * 16 // (size * size))

    def score_test(
        self,
        model: nn.Module,
        norm: Preprocess,
        splits: dict[str, Split],
        threshold: dict,
        npz: str | Path,
        batch_size: int,
        device: torch.device,
    ) -> Evaluation | None:
        test = splits["test"]
        logits = predict_logits(model.to(device), self.tensors(test, norm), batch_size, device)
        y, scores = self.scored(logits, test.y)
        if len(np.unique(y)) < 2:
            log.warning("%s: the test split lacks damaged or undamaged pixels; no metrics", npz)
            return None
        prob = sigmoid(scores)
        return pixel_metrics(y, prob, threshold, npz, len(test.y)), prob

    def write_test(
        self,
        evaluation: Evaluation,
        splits: dict[str, Split],
        val_prob: np.ndarray,
        threshold: dict,
        out: Path,
    ) -> None:
        """What ``damagenet evaluate`` writes, for the checkpoint just saved: the pixel, patch
        and point levels beside the per-pixel baselines, with paired intervals, plots and
        metrics.json (:func:`~damagenet.evaluation.tile_evaluate.evaluate_tiles`), scored from
        the checkpoint by the maps' scorer. The run's test figures become those written."""
        metrics = evaluation[0]
        record = {"checkpoint": metrics["checkpoint"]}
        device = resolve_device(self.eval_device)
        loaded = load_checkpoint(record["checkpoint"]["path"], map_location=device)
        full = evaluate_tiles(
            metrics["dataset"], loaded, out, device, self.eval_batch_size, record=record
        )
        metrics.update(full)

    def card_test(self, metrics: dict[str, Any]) -> dict[str, Any]:
        return {
            "metrics": {
                "level": "pixel",
                "threshold": metrics["threshold"]["value"],
                "damage_precision": metrics["Damage"]["precision"],
                "damage_recall": metrics["Damage"]["recall"],
                "damage_f1": metrics["Damage"]["f1-score"],
                "roc_auc": metrics["roc_auc"],
                "pr_auc": metrics["pr_auc"],
                "test_pixels": metrics["test_pixels"],
            },
            "protocol": metrics["protocol"],
        }


def pixel_metrics(
    y: np.ndarray, prob: np.ndarray, threshold: dict, npz: str | Path, n_tiles: int
) -> dict[str, Any]:
    """metrics.json of a pixel model: the change class at the map threshold, ranking metrics."""
    rule = str(threshold.get("rule"))
    at_map = report(y, prob, float(threshold["value"]))
    return {
        "level": "pixel",
        "threshold": {**threshold, "how": THRESHOLD_HOW.get(rule, rule) + " (pixels)"},
        **{k: v for k, v in at_map.items() if k != "threshold"},
        **ranking_metrics(y, prob),
        "test_tiles": int(n_tiles),
        "test_pixels": int(len(y)),
        "damaged_pixels": int(y.sum()),
        "protocol": pixel_protocol(npz),
        "dataset": str(npz),
    }


def pixel_protocol(npz: str | Path) -> str:
    """How the test tiles were held out, and that pixels of unknown ground are not scored."""
    config = dataset_config(npz) or {}
    held = {
        "blocks": f"whole {float(config.get('block_m', 0)):g} m ground blocks held out",
        "aoi": f"whole AOIs held out ({', '.join(config.get('test_aois') or [])})",
    }.get(str(config.get("split")), "how the test split was held out is not recorded")
    return f"test tiles of {Path(npz).name}: {held}; labelled pixels only (255 unknown ignored)"


def task_for(cfg: TrainConfig) -> Task:
    """The task of the architecture ``cfg.arch`` names (its registry entry's output)."""
    if registry.entry(cfg.arch).output == registry.PIXEL:
        return PixelTask(
            cfg.pos_weight, cfg.dice_weight, cfg.oversample, cfg.device, cfg.eval_batch_size
        )
    return PairTask()


def build_network(cfg: TrainConfig) -> Network:
    """The untrained network of ``cfg``: today's Siamese ResNet or a Siamese U-Net."""
    if cfg.arch == "siamese-resnet":
        return build_model(cfg.backbone, cfg.weights, cfg.head)
    model = SiameseUNet(cfg.encoder, cfg.fusion, cfg.fusion_conv, width=cfg.width)
    if cfg.weights == "imagenet":
        if cfg.weights_file is None:
            raise DamagenetUsageError(
                "--weights imagenet for the U-Net needs --weights-file: a local torchvision "
                f"{cfg.encoder} ImageNet state dict (nothing is downloaded)"
            )
        load_imagenet_file(model, cfg.weights_file)
    return model
