"""``damagenet`` command line: train, evaluate, crossval, predict, pwtt, fuse, aggregate,
import-seed and info.

Thin wrappers around plain functions; a :class:`~damagenet.errors.DamagenetError` becomes a
one-line message and its exit status (:mod:`contract.cli`).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from contract.cli import exit_with, run_main

COMMAND_MODULES = (
    "damagenet.commands.train",
    "damagenet.commands.evaluate",
    "damagenet.commands.predict",
    "damagenet.commands.crossval",
    "damagenet.commands.pwtt",
    "damagenet.commands.fuse",
    "damagenet.commands.aggregate",
    "damagenet.commands.import_seed",
    "damagenet.commands.info",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="damagenet",
        description="War damage from Sentinel-2 change models (Siamese ResNet, Siamese U-Net), "
        "Sentinel-1 radar (the pixel-wise t-test) and both together.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debugging detail")
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="log warnings and errors only, no progress bars"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The whole command line, parser build included, inside the one error boundary."""
    return run_main(build_parser, argv)


def entry() -> None:
    """The console command: :func:`main`, then the process ends with its status."""
    exit_with(main())


if __name__ == "__main__":
    entry()
