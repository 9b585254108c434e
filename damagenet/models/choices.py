"""Names of the architectures and their settings, in a module that imports nothing heavy.

The command line offers them in ``--help`` without importing torch (issue 31); the networks
(:mod:`damagenet.models.unet`) and the registry (:mod:`damagenet.models.registry`) take them
from here, so each name has one home.
"""

from __future__ import annotations

#: Registered architectures, as checkpoints and ``damagenet train --arch`` name them.
ARCHITECTURES: tuple[str, ...] = ("siamese-resnet", "siamese-unet")
#: The study's patch network: what a library caller gets unless it names another, and what a
#: checkpoint from before the registry holds.
DEFAULT_ARCHITECTURE = "siamese-resnet"
#: ``damagenet train --arch auto`` (its default): the architecture of the dataset's kind, so a
#: tile dataset trains the pixel model (the winner on real imagery, docs/accuracy.md) and a
#: patch dataset the patch network.
AUTO = "auto"
ARCHITECTURE_OF_KIND: dict[str, str] = {"patches": "siamese-resnet", "tiles": "siamese-unet"}
#: Encoders of the Siamese U-Net: a small one from scratch and torchvision ResNets.
UNET_ENCODERS: tuple[str, ...] = ("small", "resnet18", "resnet34", "resnet50")
#: How the two dates' features meet at every skip scale.
FUSIONS: tuple[str, ...] = ("diff", "conc", "both")
