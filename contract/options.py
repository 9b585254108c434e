"""Argparse value types shared by both command lines: a bad value exits 2 with one line.

argparse turns an ``ArgumentTypeError`` raised here into ``<prog>: error: argument --x: ...``
and exit status 2, so malformed or out-of-range options never reach the code as a traceback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import re
from collections.abc import Callable, Iterable
from typing import Any

from contract.errors import UsageError


def int_at_least(low: int) -> Callable[[str], int]:
    """An integer ``>= low`` (e.g. a batch size of at least 2 for BatchNorm in training)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse


positive_int = int_at_least(1)


def float_in(low: float, high: float, *, low_open: bool = False) -> Callable[[str], float]:
    """A finite float in ``[low, high]`` (``(low, high]`` with ``low_open``): ``nan`` and
    ``inf`` parse as floats but no size, rate or threshold means them."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if not (low < value <= high if low_open else low <= value <= high):
            bracket = "(" if low_open else "["
            raise argparse.ArgumentTypeError(
                f"must be in {bracket}{low:g}, {high:g}], got {value:g}"
            )
        return value

    return parse


def multiple_of(step: int) -> Callable[[str], int]:
    """A positive integer multiple of ``step`` (a tile side on the 16 px cell grid)."""

    def parse(text: str) -> int:
        value = positive_int(text)
        if value % step:
            raise argparse.ArgumentTypeError(f"must be a multiple of {step}, got {value}")
        return value

    return parse


probability = float_in(0.0, 1.0)
positive_float = float_in(0.0, math.inf, low_open=True)
non_negative_float = float_in(0.0, math.inf)


def iso_date(text: str) -> dt.date:
    """``YYYY-MM-DD`` only: ``05/05/2022`` is ambiguous (May 5 or 5 May?) and is refused."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}")
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid date {text!r} ({exc})") from None


def distinct_outputs(outputs: Iterable[Any], inputs: Iterable[Any]) -> None:
    """Refuse (exit 2) an output path that names one of the command's inputs (or lists of
    them): writing it would destroy what the command reads, before or while it reads it."""

    def paths(items: Iterable[Any]) -> list[str]:
        flat = [p for item in items for p in (item if isinstance(item, list) else [item])]
        return [os.fspath(p) for p in flat if p]

    read = {os.path.realpath(p) for p in paths(inputs)}
    for out in paths(outputs):
        if os.path.realpath(out) in read:
            raise UsageError(f"{out}: is also an input of this command; name another output")


def threshold_or_auto(text: str) -> float | str:
    """``auto`` (the checkpoint's own threshold) or a probability."""
    return "auto" if text == "auto" else probability(text)


def existing_path(text: str) -> str:
    """A file or folder the command reads: one that does not exist is a usage error (exit 2),
    caught before any work, as for every other malformed option."""
    if not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"{text}: no such file or folder")
    return text
