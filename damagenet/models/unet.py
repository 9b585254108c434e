"""A Siamese U-Net: one encoder shared by both dates, fused at every skip scale, a logit per pixel.

The patch network (:mod:`damagenet.models.siamese_resnet`) gives one number per 16 px window; a
U-Net gives one per pixel, so a scene is mapped in one pass and a damaged building stays a
building, not a blur of window scores. The family follows the published baselines of
Sentinel-2 change detection (FC-Siam-diff / FC-Siam-conc, Daudt et al. 2018: a small encoder
from scratch, about 1-1.5 M parameters) and the project's seed ("Change Detection with UNet
ResNet50 Fusion"); ``docs/model.md`` and ``shared/reference/change_detection.md`` say why.

Settings (all recorded by :meth:`SiameseUNet.architecture`, so a checkpoint rebuilds the net):

- ``encoder``: ``small`` (the default, from scratch: four stages of 3 x 3 convolutions, widths
  ``width`` x 1, 2, 4, 8, max pooling between them: FC-Siam-like) or torchvision ``resnet18``,
  ``resnet34``, ``resnet50`` (five scales: the stem at 1/2 and layer1-4 at 1/4 to 1/32; their
  first convolution takes the 4 bands; ImageNet weights only from a local file through
  :func:`load_imagenet_file`, never downloaded);
- ``fusion`` at every skip scale: ``diff`` |after - before|, ``conc`` [before, after], or
  ``both`` [before, after, |after - before|]; ``fusion_conv`` adds a 1 x 1 convolution (with
  batch norm and ReLU) that brings the fused features back to the encoder's width;
- :data:`PRESETS` names the published settings: ``fc-siam-diff`` (the default), ``fc-siam-conc``
  and ``seed`` (ResNet-50, concatenation and convolution at all five scales: the seed's own).

Both dates go through the encoder as one batch ``[before; after]`` with plain batch norms over
the joint batch: both dates are normalised by the same statistics, so a difference of features
is a difference of the images, not of two normalisations (and inference folding, which
recognises ``nn.BatchNorm2d`` by type, applies unchanged).

Forward contract (stable; the map and benchmark code rely on it): ``model(before, after)`` with
two float tensors (N, in_bands, H, W) normalised as the checkpoint's ``input`` says, any H and
W of at least 1 (sizes that are a multiple of :attr:`SiameseUNet.size_multiple` avoid padding
inside the decoder), returns change logits (N, 1, H, W) in float: apply a sigmoid for the
probability of change or damage.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torchvision import models

from contract.bands import BANDS
from contract.errors import first_line
from damagenet.errors import DamagenetError, DamagenetUsageError
from damagenet.models.choices import FUSIONS, UNET_ENCODERS
from damagenet.models.siamese_resnet import rgb_to_bands

log = logging.getLogger(__name__)

NAME = "siamese-unet"
#: torchvision encoders: constructor, channels of stem and layer1-4, decoder widths per scale.
RESNETS: dict[str, tuple[Any, tuple[int, ...], tuple[int, ...]]] = {
    "resnet18": (models.resnet18, (64, 64, 128, 256, 512), (32, 64, 128, 256, 256)),
    "resnet34": (models.resnet34, (64, 64, 128, 256, 512), (32, 64, 128, 256, 256)),
    "resnet50": (models.resnet50, (64, 256, 512, 1024, 2048), (64, 128, 256, 512, 512)),
}
ENCODERS = UNET_ENCODERS
#: Convolutions per stage of the small encoder (FC-Siam's 2, 2, 3, 3).
SMALL_DEPTHS = (2, 2, 3, 3)
#: Named settings: the published small baselines and the seed's configuration.
PRESETS: dict[str, dict[str, Any]] = {
    "fc-siam-diff": {"encoder": "small", "fusion": "diff", "fusion_conv": False},
    "fc-siam-conc": {"encoder": "small", "fusion": "conc", "fusion_conv": False},
    "seed": {"encoder": "resnet50", "fusion": "conc", "fusion_conv": True},
}


def conv_bn_relu(cin: int, cout: int, kernel: int = 3) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class SmallEncoder(nn.Module):
    """Four stages of 3 x 3 convolutions at full, 1/2, 1/4 and 1/8 resolution (FC-Siam-like)."""

    def __init__(self, in_bands: int, width: int) -> None:
        super().__init__()
        self.channels = tuple(width * 2**i for i in range(len(SMALL_DEPTHS)))
        stages, cin = [], in_bands
        for cout, depth in zip(self.channels, SMALL_DEPTHS, strict=True):
            layers = [m for i in range(depth) for m in conv_bn_relu(cin if i == 0 else cout, cout)]
            stages.append(nn.Sequential(*layers))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.first_scale = 1

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, stage in enumerate(self.stages):
            x = stage(x if i == 0 else F.max_pool2d(x, 2, ceil_mode=True))
            feats.append(x)
        return feats


class ResNetEncoder(nn.Module):
    """A torchvision ResNet's stem (1/2) and layer1-4 (1/4 to 1/32), first convolution 4-band."""

    def __init__(self, name: str, in_bands: int) -> None:
        super().__init__()
        build, self.channels, _ = RESNETS[name]
        net = build(weights=None)
        net.conv1 = nn.Conv2d(in_bands, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu)
        self.pool = net.maxpool
        self.layers = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        self.first_scale = 2

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = [x]
        x = self.pool(x)
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


class Fuse(nn.Module):
    """The two dates' features at one scale as one map: diff, conc or both, then maybe 1 x 1."""

    def __init__(self, fusion: str, channels: int, conv: bool) -> None:
        super().__init__()
        self.fusion = fusion
        width = channels * {"diff": 1, "conc": 2, "both": 3}[fusion]
        self.conv = nn.Sequential(*conv_bn_relu(width, channels, 1)) if conv else nn.Identity()
        self.out_channels = channels if conv else width

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        diff = (after - before).abs()
        parts = {"diff": [diff], "conc": [before, after], "both": [before, after, diff]}
        return self.conv(torch.cat(parts[self.fusion], dim=1))


class Up(nn.Module):
    """Double the resolution (transposed 2 x 2), join the fused skip, two 3 x 3 convolutions."""

    def __init__(self, cin: int, skip: int, cout: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cin, 2, stride=2)
        self.conv = nn.Sequential(*conv_bn_relu(cin + skip, cout), *conv_bn_relu(cout, cout))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = self.up(x)
        if skip is None:
            return self.conv(x)
        return self.conv(torch.cat([match_size(x, skip.shape[-2:]), skip], dim=1))


def match_size(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``x`` cropped or edge-padded at its bottom and right to ``size`` (odd inputs)."""
    dh, dw = int(size[0]) - x.shape[-2], int(size[1]) - x.shape[-1]
    if dh == 0 and dw == 0:
        return x
    x = x[..., : min(x.shape[-2], int(size[0])), : min(x.shape[-1], int(size[1]))]
    return F.pad(x, (0, max(dw, 0), 0, max(dh, 0)), mode="replicate")


# a leaf for torch.fx: inference folds batch norms by tracing, which cannot follow size checks
torch.fx.wrap("match_size")


class SiameseUNet(nn.Module):
    """Shared encoder over both dates, fusion at every scale, U-Net decoder, one logit a pixel."""

    def __init__(
        self,
        encoder: str = "small",
        fusion: str = "diff",
        fusion_conv: bool = False,
        in_bands: int = len(BANDS),
        width: int = 16,
    ) -> None:
        super().__init__()
        _check_settings(encoder, fusion, in_bands, width)
        self.settings = {
            "encoder": encoder,
            "fusion": fusion,
            "fusion_conv": bool(fusion_conv),
            "in_bands": int(in_bands),
            "width": int(width),
        }
        if encoder == "small":
            self.encoder: SmallEncoder | ResNetEncoder = SmallEncoder(in_bands, width)
            dec: tuple[int, ...] = self.encoder.channels
        else:
            self.encoder = ResNetEncoder(encoder, in_bands)
            dec = RESNETS[encoder][2]
        enc = self.encoder.channels
        fuses = [Fuse(fusion, c, fusion_conv) for c in enc]
        self.fuse = nn.ModuleList(fuses)
        fused = [f.out_channels for f in fuses]
        self.bottom = nn.Sequential(
            *conv_bn_relu(fused[-1], dec[-1]), *conv_bn_relu(dec[-1], dec[-1])
        )
        self.ups = nn.ModuleList(
            Up(dec[i + 1], fused[i], dec[i]) for i in reversed(range(len(enc) - 1))
        )
        self.final_up = Up(dec[0], 0, dec[0]) if self.encoder.first_scale == 2 else None
        self.logit = nn.Conv2d(dec[0], 1, 1)
        self.decoder_channels = dec

    @property
    def size_multiple(self) -> int:
        """Input sizes that are a multiple of this are never padded inside the network."""
        return self.encoder.first_scale * 2 ** (len(self.encoder.channels) - 1)

    def architecture(self) -> dict[str, Any]:
        """Everything needed to rebuild the network, plus what the model card shows."""
        return {
            "name": NAME,
            **self.settings,
            "encoder_channels": list(self.encoder.channels),
            "decoder_channels": list(self.decoder_channels),
            "output": "one change logit per pixel, (N, 1, H, W)",
        }

    @classmethod
    def from_architecture(cls, arch: Mapping[str, Any]) -> SiameseUNet:
        """The network an :meth:`architecture` dict describes (weights random)."""
        return cls(
            encoder=str(arch["encoder"]),
            fusion=str(arch["fusion"]),
            fusion_conv=bool(arch["fusion_conv"]),
            in_bands=int(arch["in_bands"]),
            width=int(arch["width"]),
        )

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        """Change logits (N, 1, H, W) for two (N, bands, H, W) dates (module docstring)."""
        n, size = before.shape[0], before.shape[-2:]
        feats = self.encoder(torch.cat([before, after], dim=0))
        fused = [f(x[:n], x[n:]) for f, x in zip(self.fuse, feats, strict=True)]
        x = self.bottom(fused[-1])
        for up, skip in zip(self.ups, reversed(fused[:-1]), strict=True):
            x = up(x, skip)
        if self.final_up is not None:
            x = self.final_up(x, None)
        return self.logit(match_size(x, size))

    def backbone_parameters(self) -> list[nn.Parameter]:
        """The shared encoder's (the part ImageNet weights can initialise)."""
        return list(self.encoder.parameters())

    def head_parameters(self) -> list[nn.Parameter]:
        """Fusion, decoder and the logit layer."""
        encoder = {id(p) for p in self.encoder.parameters()}
        return [p for p in self.parameters() if id(p) not in encoder]


def _check_settings(encoder: str, fusion: str, in_bands: int, width: int) -> None:
    if encoder not in ENCODERS:
        raise DamagenetUsageError(
            f"unknown encoder {encoder!r}; choose one of {', '.join(ENCODERS)}"
        )
    if fusion not in FUSIONS:
        raise DamagenetUsageError(f"unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)}")
    if in_bands < 1 or width < 1:
        raise DamagenetUsageError(f"in_bands and width must be positive, got {in_bands}, {width}")


def load_imagenet_file(model: SiameseUNet, path: str | Path) -> None:
    """Initialise a ResNet encoder from a local torchvision ImageNet state dict (``.pth``).

    Nothing is downloaded: users who have the weights (torchvision's ``resnet50-11ad3fa6.pth``
    and the like) name the file. The RGB kernel of the first convolution is mapped onto B02,
    B03, B04, B08 (:func:`~damagenet.models.siamese_resnet.rgb_to_bands`).
    """
    encoder = model.encoder
    if not isinstance(encoder, ResNetEncoder):
        raise DamagenetUsageError("ImageNet weights fit only the resnet encoders, not 'small'")
    if model.settings["in_bands"] != len(BANDS):
        raise DamagenetUsageError(f"ImageNet weights map only onto the 4 bands {', '.join(BANDS)}")
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise DamagenetError(f"{path}: cannot read ImageNet weights ({exc})") from exc
    if not isinstance(state, Mapping) or "conv1.weight" not in state:
        raise DamagenetError(f"{path}: not a torchvision ResNet state dict (no conv1.weight)")
    mapped = {_encoder_key(k): v for k, v in state.items() if not k.startswith("fc.")}
    mapped["stem.0.weight"] = rgb_to_bands(state["conv1.weight"])
    try:
        encoder.load_state_dict(mapped)
    except RuntimeError as exc:
        raise DamagenetError(
            f"{path}: weights do not fit {model.settings['encoder']} ({first_line(exc)})"
        ) from exc
    log.info("initialised the %s encoder from %s", model.settings["encoder"], path)


def _encoder_key(key: str) -> str:
    """torchvision ResNet state-dict key -> :class:`ResNetEncoder` key."""
    head, _, rest = key.partition(".")
    if head == "conv1":
        return f"stem.0.{rest}"
    if head == "bn1":
        return f"stem.1.{rest}"
    if head.startswith("layer"):
        return f"layers.{int(head[5:]) - 1}.{rest}"
    return key


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
