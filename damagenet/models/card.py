"""The model card every checkpoint carries: what the model is, what it expects, how good it is.

A checkpoint travels without its dataset and its training run, and a map made with it is only
as trustworthy as what the reader knows about the model. The card gathers, in plain types, the
architecture, the bands and their order, the patch size, the normalisation, the decision
threshold and how it was chosen, where and when the model was trained, its test metrics with
the protocol that produced them, the dataset hash and the software versions. It holds no
timestamp, so importing the same weights twice gives byte-identical checkpoints.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import torch

import damagenet
from damagenet.models import registry

#: How the fusions of the Siamese U-Net read on a card.
FUSION_TEXT = {
    "diff": "|after - before|",
    "conc": "[before, after]",
    "both": "[before, after, |after - before|]",
}

#: What a threshold rule means, for readers of the card.
THRESHOLD_HOW = {
    "recall90": "highest threshold whose damage recall on the validation split is at least 0.9",
    "f1": "threshold of maximum damage F1 on the validation split",
    "study": "0.5 on the sigmoid, as the original study's inference prints one 0/1 per patch",
    "provisional": "0.5 placeholder: training had not finished when this checkpoint was saved",
    "fixed": "fixed by whoever saved the checkpoint",
}


def software() -> dict[str, str]:
    return {"damagenet": damagenet.__version__, "torch": str(torch.__version__).split("+")[0]}


def build_card(
    payload: Mapping[str, Any],
    training: Mapping[str, Any] | None = None,
    test: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The card of a checkpoint payload; ``training`` and ``test`` add what only the caller knows.

    ``payload`` needs ``architecture``, ``input``, ``patch_size``, ``threshold``, ``dataset``
    and ``complete``, as :func:`damagenet.models.checkpoint.save_checkpoint` assembles them.
    """
    arch = payload["architecture"]
    threshold = dict(payload["threshold"])
    rule = str(threshold.get("rule", "fixed"))
    dataset = payload.get("dataset") or {}
    return {
        "architecture": architecture_section(arch),
        "input": input_section(payload),
        "threshold": {
            "value": float(threshold["value"]),
            "rule": rule,
            "how": THRESHOLD_HOW.get(rule, rule),
            "chosen_on": threshold.get("chosen_on"),
        },
        "training": dict(training or {}),
        "test": dict(test)
        if test
        else {"metrics": None, "protocol": "not evaluated on a held-out test split"},
        "dataset": {"path": dataset.get("path"), "sha256": dataset.get("sha256")},
        "complete": bool(payload["complete"]),
        "software": software(),
    }


def architecture_section(arch: Mapping[str, Any]) -> dict[str, Any]:
    """What the network is: its registry name, layout, parameter count and output."""
    name = registry.arch_name(arch)
    common = {"name": name, "parameters": registry.parameter_count(arch)}
    if registry.output_of(arch) == registry.PAIR:
        return {
            **common,
            "network": f"Siamese {arch['backbone']} (shared weights for both epochs), "
            f"{arch['in_bands']}-band first convolution",
            "backbone": arch["backbone"],
            "features_per_epoch": arch["features"],
            "fusion": arch["fusion"],
            "head": head_text(arch),
            "head_name": arch.get("head_name"),
            "output": "one change logit per before/after pair",
        }
    return {
        **common,
        "network": f"Siamese U-Net, {arch['encoder']} encoder shared by both dates, "
        f"{arch['in_bands']}-band first convolution",
        "encoder": arch["encoder"],
        "fusion": f"{FUSION_TEXT[arch['fusion']]} at every skip scale"
        + (", then a 1 x 1 convolution" if arch["fusion_conv"] else ""),
        "encoder_channels": list(arch["encoder_channels"]),
        "decoder_channels": list(arch["decoder_channels"]),
        "output": "one change logit per pixel",
    }


def input_section(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The input convention: two dates, their bands and order, size, scaling, processing level."""
    inp = payload["input"]
    size = int(payload["patch_size"])
    pixel = registry.output_of(payload["architecture"]) == registry.PIXEL
    level = payload.get("processing_level")
    return {
        "convention": f"model(before, after): two (N, {len(inp['bands'])}, H, W) float tensors, "
        + (
            f"any H and W (trained on {size} px tiles) -> (N, 1, H, W) logits"
            if pixel
            else f"H = W = {size} -> (N,) logits"
        ),
        "bands": list(inp["bands"]),
        "band_order": "network input channels in this order; scenes in B02, B03, B04, "
        "B08 are reordered to it",
        "patch_size": size,
        "normalisation": f"x * {inp['scale']:g}, then (x - mean) / std per band",
        "mean": [float(v) for v in inp["mean"]],
        "std": [float(v) for v in inp["std"]],
        "processing_level": level or "not recorded by the dataset",
    }


def head_text(arch: Mapping[str, Any]) -> str:
    """``8192-256-1 (BatchNorm1d, GELU, Dropout 0.5)``: the widths, then the layer kinds."""
    widths = [4 * int(arch["features"])] + [int(layer["linear"]) for layer in arch["head"]]
    drops = ", ".join(f"{layer['dropout']:g}" for layer in arch["head"][:-1])
    return f"{'-'.join(map(str, widths))} (BatchNorm1d, GELU, Dropout {drops})"


def format_card(card: Mapping[str, Any], title: str = "") -> str:
    """The card as indented plain text for a terminal."""
    lines = [title] if title else []
    for section, body in card.items():
        _emit(lines, section, body, 0)
    return "\n".join(lines) + "\n"


def _emit(lines: list[str], key: str, value: Any, depth: int) -> None:
    pad = "  " * depth
    label = key.replace("_", " ")
    if isinstance(value, Mapping) and value:
        lines.append(f"{pad}{label}:")
        for k, v in value.items():
            _emit(lines, str(k), v, depth + 1)
    elif isinstance(value, list | tuple) and value and all(isinstance(v, float) for v in value):
        lines.append(f"{pad}{label}: {', '.join(f'{v:.4g}' for v in value)}")
    elif isinstance(value, float):
        lines.append(f"{pad}{label}: {value:.4g}")
    elif isinstance(value, list | tuple):
        lines.append(f"{pad}{label}: {', '.join(map(str, value)) if value else '-'}")
    else:
        lines.append(f"{pad}{label}: {'-' if value is None or value == {} else value}")


def card_json(card: Mapping[str, Any]) -> str:
    return json.dumps(card, indent=2, sort_keys=False) + "\n"
