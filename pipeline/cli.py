"""``pipeline`` command line: one subcommand per workflow step.

Each subcommand is a thin wrapper: it parses options, calls the step's plain function and turns
a :class:`~pipeline.errors.PipelineError` into a clear message and its exit status
(:mod:`contract.cli`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from contract.cli import run_command, setup_logging

#: Modules providing ``add_parser(subparsers)``; each sets ``func`` on its parser.
COMMAND_MODULES = (
    "pipeline.aoi.cli",
    "pipeline.synthetic.cli",
    "pipeline.scenes.cli",
    "pipeline.radar.cli",
    "pipeline.labels.cli",
    "pipeline.patches",
    "pipeline.tiles.cli",
    "pipeline.oscd.cli",
    "pipeline.dataset",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pipeline",
        description="Data preparation for Sentinel-2 war-damage mapping: AOIs, scenes, "
        "UNOSAT labels, patches and the leakage-free dataset.",
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
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
