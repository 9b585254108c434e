"""The study's Siamese network: one shared torchvision ResNet over both epochs.

Each epoch's 4-band patch (B02, B03, B04, B08) goes through the same ResNet (its first
convolution widened to 4 bands, its classifier removed), giving F-dimensional features (2048 for
ResNet-50/101/152, 512 for ResNet-18/34). Fusion ``[b, a, |b - a|, b * a]`` feeds the head
``Linear(4F, 256), BatchNorm1d, GELU, Dropout(0.5), Linear(256, 1)``: one logit per pair.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
from torch import nn
from torchvision import models

from contract.bands import BANDS
from damagenet.errors import DamagenetError

log = logging.getLogger(__name__)

#: backbone -> (constructor, ImageNet weights enum, feature dimension)
BACKBONES = {
    "resnet18": (models.resnet18, models.ResNet18_Weights.IMAGENET1K_V1, 512),
    "resnet34": (models.resnet34, models.ResNet34_Weights.IMAGENET1K_V1, 512),
    "resnet50": (models.resnet50, models.ResNet50_Weights.IMAGENET1K_V2, 2048),
    "resnet101": (models.resnet101, models.ResNet101_Weights.IMAGENET1K_V2, 2048),
    "resnet152": (models.resnet152, models.ResNet152_Weights.IMAGENET1K_V2, 2048),
}


def rgb_to_bands(rgb_weight: torch.Tensor) -> torch.Tensor:
    """Map an RGB first-convolution kernel onto B02, B03, B04, B08.

    ImageNet kernels are in R, G, B order while our bands are blue, green, red, NIR: B02 takes
    the B kernel, B03 the G kernel, B04 the R kernel, and NIR (no ImageNet counterpart) the mean
    of the three, so a pretrained filter responds to NIR brightness as to overall brightness.
    """
    if rgb_weight.ndim != 4 or rgb_weight.shape[1] != 3:
        raise DamagenetError(f"expected an RGB kernel (out, 3, k, k), got "
                             f"{tuple(rgb_weight.shape)}")
    r, g, b = rgb_weight[:, 0], rgb_weight[:, 1], rgb_weight[:, 2]
    return torch.stack([b, g, r, rgb_weight.mean(dim=1)], dim=1)


class SiameseResNet(nn.Module):
    """Shared-weight ResNet encoder with the study's fusion head."""

    def __init__(self, backbone: str = "resnet101", in_bands: int = len(BANDS),
                 hidden: int = 256, dropout: float = 0.5) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise DamagenetError(f"unknown backbone {backbone!r}; choose one of "
                                 f"{', '.join(BACKBONES)}")
        build, _, features = BACKBONES[backbone]
        encoder = build(weights=None)
        encoder.conv1 = nn.Conv2d(in_bands, 64, kernel_size=7, stride=2, padding=3, bias=False)
        encoder.fc = nn.Identity()
        self.encoder = encoder
        self.backbone = backbone
        self.in_bands = in_bands
        self.features = features
        self.head = nn.Sequential(nn.Linear(4 * features, hidden), nn.BatchNorm1d(hidden),
                                  nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 1))

    def architecture(self) -> dict:
        return {"backbone": self.backbone, "in_bands": self.in_bands,
                "features": self.features, "hidden": self.head[0].out_features,
                "dropout": self.head[3].p}

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        """Logits (N,) for pairs of (N, bands, S, S) patches.

        Both epochs go through the encoder in one batch: the same weights, half the kernel
        launches.
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


def load_imagenet(model: SiameseResNet, state_dict: Mapping[str, torch.Tensor] | None = None
                  ) -> None:
    """Initialise the encoder from torchvision's ImageNet weights, mapped onto the bands.

    ``state_dict`` is fetched through torchvision's weights API when not given; without network
    access (and no cached copy) this fails with a message saying what to do.
    """
    if model.in_bands != len(BANDS):
        raise DamagenetError("ImageNet weights can be mapped only onto the 4 bands "
                             f"{', '.join(BANDS)}")
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
        raise DamagenetError(f"ImageNet weights do not fit {model.backbone}: missing {missing}, "
                             f"unexpected {unexpected}")
    log.info("initialised %s from %s (bands mapped B04<-R, B03<-G, B02<-B, B08<-mean RGB)",
             model.backbone, weights)


def build_model(backbone: str = "resnet101", weights: str = "none") -> SiameseResNet:
    """The network with ``weights`` 'none' (random) or 'imagenet'."""
    model = SiameseResNet(backbone)
    if weights == "imagenet":
        load_imagenet(model)
    elif weights != "none":
        raise DamagenetError(f"--weights must be 'none' or 'imagenet', got {weights!r}")
    return model
