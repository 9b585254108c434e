"""``damagenet info CKPT``: a checkpoint's model card, readable or as JSON."""

from __future__ import annotations

import argparse


def info(path: str, as_json: bool = False) -> str:
    """The card of ``path`` (any checkpoint of this project, provisional ones included)."""
    from damagenet.models.card import architecture_section, card_json, format_card, input_section
    from damagenet.models.checkpoint import checkpoint_hash, read_payload

    payload = read_payload(path)
    stored = payload["card"]
    card = {
        "checkpoint": {
            "path": str(path),
            "sha256_16": checkpoint_hash(path),
            "format": payload["format"],
        },
        **stored,
        # cards written before the registry lack name, parameters and the input convention
        "architecture": {**architecture_section(payload["architecture"]), **stored["architecture"]},
        "input": {**input_section(payload), **stored["input"]},
    }
    if as_json:
        return card_json(card)
    status = (
        "" if payload.get("complete") else "  (PROVISIONAL: saved while training was still running)"
    )
    return format_card(card, title=f"Model card of {path}{status}")


def _run(args: argparse.Namespace) -> int:
    print(info(args.ckpt, args.json), end="")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="print a checkpoint's model card",
        description="Print the model card a checkpoint carries: architecture (name, layout, "
        "parameter count), input convention (bands and their order, patch or tile size, "
        "normalisation, processing level of the training scenes), threshold and how it was "
        "chosen, "
        "training AOIs and dates, test metrics with their protocol, dataset hash, "
        "software versions, and the checkpoint's own hash.",
    )
    p.add_argument("ckpt", help="checkpoint (.pt) from 'damagenet train' or 'import-seed'")
    p.add_argument("--json", action="store_true", help="print the card as JSON")
    p.set_defaults(func=_run)
