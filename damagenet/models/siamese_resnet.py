"""The study's Siamese network: one shared torchvision ResNet over both epochs.

Each epoch's 4-band patch (B02, B03, B04, B08) goes through the same ResNet (its first
convolution widened to 4 bands, its classifier removed), giving F-dimensional features (2048 for
ResNet-50/101/152, 512 for ResNet-18/34). Fusion ``[b, a, |b - a|, b * a]`` feeds the head
``Linear(4F, 256), BatchNorm1d, GELU, Dropout(0.5), Linear(256, 1)`` (the study's README) or
its published code's deeper 4096-1024-256 head: one logit per pair.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torchvision import models

from contract.bands import BANDS
from damagenet.defaults import BACKBONE_FEATURES, HEADS
from damagenet.errors import DamagenetError

log = logging.getLogger(__name__)

_TORCHVISION = {
    "resnet18": (models.resnet18, models.ResNet18_Weights.IMAGENET1K_V1),
    "resnet34": (models.resnet34, models.ResNet34_Weights.IMAGENET1K_V1),
    "resnet50": (models.resnet50, models.ResNet50_Weights.IMAGENET1K_V2),
    "resnet101": (models.resnet101, models.ResNet101_Weights.IMAGENET1K_V2),
    "resnet152": (models.resnet152, models.ResNet152_Weights.IMAGENET1K_V2),
}
#: backbone -> (constructor, ImageNet weights enum, feature dimension)
BACKBONES = {name: (*_TORCHVISION[name], dim) for name, dim in BACKBONE_FEATURES.items()}


def rgb_to_bands(rgb_weight: torch.Tensor) -> torch.Tensor:
    """Map an RGB first-convolution kernel onto B02, B03, B04, B08.

    ImageNet kernels are in R, G, B order while our bands are blue, green, red, NIR: B02 takes
    the B kernel, B03 the G kernel, B04 the R kernel, and NIR (no ImageNet counterpart) the mean
    of the three, so a pretrained filter responds to NIR brightness as to overall brightness.
    """
    if rgb_weight.ndim != 4 or rgb_weight.shape[1] != 3:
        raise DamagenetError(
            f"expected an RGB kernel (out, 3, k, k), got {tuple(rgb_weight.shape)}"
        )
    r, g, b = rgb_weight[:, 0], rgb_weight[:, 1], rgb_weight[:, 2]
    return torch.stack([b, g, r, rgb_weight.mean(dim=1)], dim=1)


def head_name(hidden: Sequence[int]) -> str | None:
    """The study's name of a head with these hidden widths, or None for another head."""
    return next((n for n, (h, _) in HEADS.items() if tuple(hidden) == h), None)


def build_head(in_features: int, hidden: Sequence[int], dropout: Sequence[float]) -> nn.Sequential:
    """The study's head layout; the module indices match its ``self.head`` state-dict keys."""
    layers: list[nn.Module] = []
    width = in_features
    for units, p in zip(hidden, dropout, strict=True):
        layers += [nn.Linear(width, units), nn.BatchNorm1d(units), nn.GELU(), nn.Dropout(p)]
        width = units
    return nn.Sequential(*layers, nn.Linear(width, 1))


class PairBatchNorm2d(nn.BatchNorm2d):
    """A batch norm that, in training, normalises the before and the after half apart.

    :class:`SiameseResNet` sends both epochs through its encoder as one batch ``[before;
    after]`` (half the layer calls). The study ran its encoder once per epoch, so each batch
    norm saw one epoch's batch: each epoch was normalised by its own statistics and the running
    averages were updated with the before batch, then the after one. A plain batch norm over the
    joint batch would mix the epochs' statistics and learn a different, much faster-fitting
    model (docs/performance.md); this one keeps the study's arithmetic exactly. In evaluation
    running averages are used and the joint batch is harmless.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training and self.track_running_stats:
            return super().forward(x)
        if x.shape[0] % 2:
            raise DamagenetError(
                f"a pair batch norm needs [before; after] halves of equal "
                f"size, got a batch of {x.shape[0]}"
            )
        before, after = x.chunk(2)
        return torch.cat([super().forward(before), super().forward(after)])


def use_plain_batch_norms(model: nn.Module) -> None:
    """Turn every :class:`PairBatchNorm2d` of ``model`` back into ``nn.BatchNorm2d`` in place.

    For the study's two-pass network (each pass one epoch's batch) and for ``torch.fx``
    folding, which recognises batch norms by their exact type.
    """
    for module in model.modules():
        if type(module) is PairBatchNorm2d:
            module.__class__ = nn.BatchNorm2d  # type: ignore[assignment]  # a class swap


class SiameseResNet(nn.Module):
    """Shared-weight ResNet encoder with the study's fusion and one of its heads."""

    def __init__(
        self,
        backbone: str = "resnet101",
        in_bands: int = len(BANDS),
        hidden: Sequence[int] = HEADS["study-readme"][0],
        dropout: Sequence[float] = HEADS["study-readme"][1],
    ) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise DamagenetError(
                f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}"
            )
        if len(hidden) != len(dropout) or not hidden:
            raise DamagenetError(
                f"head needs one dropout per hidden layer, got {list(hidden)} and {list(dropout)}"
            )
        build, _, features = BACKBONES[backbone]
        encoder = build(weights=None, norm_layer=PairBatchNorm2d)
        encoder.conv1 = nn.Conv2d(in_bands, 64, kernel_size=7, stride=2, padding=3, bias=False)
        encoder.fc = nn.Identity()
        self.encoder = encoder
        self.backbone = backbone
        self.in_bands = in_bands
        self.features = features
        self.hidden = tuple(int(h) for h in hidden)
        self.dropout = tuple(float(p) for p in dropout)
        self.head = build_head(4 * features, self.hidden, self.dropout)

    def architecture(self) -> dict[str, Any]:
        """Everything needed to rebuild the network: backbone, bands, head layers."""
        return {
            "name": "siamese-resnet",
            "backbone": self.backbone,
            "in_bands": self.in_bands,
            "features": self.features,
            "fusion": "[b, a, |b - a|, b * a]",
            "head": [
                {"linear": h, "batchnorm": True, "activation": "GELU", "dropout": p}
                for h, p in zip(self.hidden, self.dropout, strict=True)
            ]
            + [{"linear": 1}],
            "head_name": head_name(self.hidden),
        }

    @classmethod
    def from_architecture(cls, arch: Mapping[str, Any]) -> SiameseResNet:
        """The network an :meth:`architecture` dict describes (weights random)."""
        layers = list(arch["head"])
        if not layers or layers[-1] != {"linear": 1}:
            raise DamagenetError(f"head {layers} does not end in one logit")
        hidden = [int(layer["linear"]) for layer in layers[:-1]]
        dropout = [float(layer["dropout"]) for layer in layers[:-1]]
        return cls(arch["backbone"], in_bands=int(arch["in_bands"]), hidden=hidden, dropout=dropout)

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        """Logits (N,) for pairs of (N, bands, S, S) patches.

        Both epochs go through the encoder in one batch: the same weights, half the layer
        calls; :class:`PairBatchNorm2d` keeps each epoch's batch statistics apart in training.
        """
        n = before.shape[0]
        feats = self.encoder(torch.cat([before, after], dim=0))
        fb, fa = feats[:n], feats[n:]
        fused = torch.cat([fb, fa, (fb - fa).abs(), fb * fa], dim=1)
        return self.head(fused).squeeze(1)

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())


def load_imagenet(
    model: SiameseResNet, state_dict: Mapping[str, torch.Tensor] | None = None
) -> None:
    """Initialise the encoder from torchvision's ImageNet weights, mapped onto the bands.

    ``state_dict`` is fetched through torchvision's weights API when not given; without network
    access (and no cached copy) this fails with a message saying what to do.
    """
    if model.in_bands != len(BANDS):
        raise DamagenetError(
            f"ImageNet weights can be mapped only onto the 4 bands {', '.join(BANDS)}"
        )
    _, weights, _ = BACKBONES[model.backbone]
    if state_dict is None:
        try:
            state_dict = weights.get_state_dict(progress=False)
        except Exception as exc:  # URLError, OSError, hash mismatches...
            raise DamagenetError(
                f"could not fetch the ImageNet weights {weights} for {model.backbone} through "
                f"torchvision ({type(exc).__name__}: {exc}). Without network access, copy "
                f"{weights.url.rsplit('/', 1)[-1]} into $TORCH_HOME/hub/checkpoints "
                "(~/.cache/torch/hub/checkpoints), or train from scratch with --weights none."
            ) from exc
    state = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
    state["conv1.weight"] = rgb_to_bands(state["conv1.weight"])
    missing, unexpected = model.encoder.load_state_dict(state, strict=False)
    if unexpected or [m for m in missing if not m.startswith("fc.")]:
        raise DamagenetError(
            f"ImageNet weights do not fit {model.backbone}: missing {missing}, "
            f"unexpected {unexpected}"
        )
    log.info(
        "initialised %s from %s (bands mapped B04<-R, B03<-G, B02<-B, B08<-mean RGB)",
        model.backbone,
        weights,
    )


def build_model(
    backbone: str = "resnet101", weights: str = "none", head: str = "study-readme"
) -> SiameseResNet:
    """The network with ``weights`` 'none' (random) or 'imagenet' and one of the study's heads."""
    if head not in HEADS:
        raise DamagenetError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
    model = SiameseResNet(backbone, hidden=HEADS[head][0], dropout=HEADS[head][1])
    if weights == "imagenet":
        load_imagenet(model)
    elif weights != "none":
        raise DamagenetError(f"--weights must be 'none' or 'imagenet', got {weights!r}")
    return model
