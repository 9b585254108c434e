"""``pipeline`` command line: one subcommand per workflow step.

Each subcommand is a thin wrapper: it parses options, calls the step's plain function and turns
a :class:`~pipeline.errors.PipelineError` into a clear message and its exit status
(:mod:`contract.cli`).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from contract.cli import exit_with, run_main

#: Modules providing ``add_parser(subparsers)``; each sets ``func`` on its parser.
COMMAND_MODULES = (
    "pipeline.aoi.cli",
    "pipeline.synthetic.cli",
    "pipeline.scenes.cli",
    "pipeline.radar.cli",
    "pipeline.labels.cli",
    "pipeline.patches_cli",
    "pipeline.tiles.cli",
    "pipeline.oscd.cli",
    "pipeline.dataset_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pipeline",
        description="Data preparation for war-damage mapping: AOIs, Sentinel-2 scenes, "
        "Sentinel-1 radar stores, UNOSAT labels, OSCD change pairs, patches, tiles and the "
        "leakage-free dataset.",
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
