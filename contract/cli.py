"""The error boundary every command line of the project shares.

A :class:`~contract.errors.UserError` becomes one line on standard error and the error's exit
status, so a user sees which file or option is wrong and what to do instead of a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from contract.errors import UserError

NOISY_LOGGERS = ("pyogrio", "rasterio", "sentinelhub", "urllib3", "fiona", "matplotlib", "PIL")


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    """INFO by default, DEBUG with ``-v``, WARNING with ``-q``; third-party chatter stays down."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", force=True)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def run_command(func: Callable[[argparse.Namespace], int | None],
                args: argparse.Namespace) -> int:
    """Run a subcommand; a user error becomes ``error: <message>`` and its exit status."""
    try:
        return int(func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
