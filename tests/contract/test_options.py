"""Shared option types: good values pass, bad ones become argparse errors (exit 2)."""

from __future__ import annotations

import argparse
import datetime as dt

import pytest

from contract.errors import UsageError
from contract.options import (
    distinct_outputs,
    int_at_least,
    iso_date,
    multiple_of,
    positive_float,
    positive_int,
    probability,
    threshold_or_auto,
)


def _parser(kind):
    p = argparse.ArgumentParser(prog="x")
    p.add_argument("--v", type=kind)
    return p


@pytest.mark.parametrize(
    "kind, text, value",
    [
        (positive_int, "3", 3),
        (int_at_least(2), "2", 2),
        (probability, "0.25", 0.25),
        (iso_date, "2022-05-05", dt.date(2022, 5, 5)),
        (threshold_or_auto, "auto", "auto"),
        (threshold_or_auto, "0.4", 0.4),
    ],
)
def test_good_values(kind, text, value):
    assert _parser(kind).parse_args(["--v", text]).v == value


@pytest.mark.parametrize(
    "kind, text, words",
    [
        (positive_int, "0", "must be at least 1"),
        (positive_int, "x", "expected an integer"),
        (int_at_least(2), "1", "must be at least 2"),
        (probability, "abc", "expected a number"),
        (probability, "1.5", "must be in [0, 1]"),
        (iso_date, "05/05/2022", "YYYY-MM-DD"),
        (iso_date, "2021-13-45", "invalid date"),
        (threshold_or_auto, "abc", "expected a number"),
        (positive_float, "nan", "expected a finite number"),
        (positive_float, "inf", "expected a finite number"),
        (probability, "nan", "expected a finite number"),
        (multiple_of(16), "40", "must be a multiple of 16"),
        (multiple_of(16), "0", "must be at least 1"),
    ],
)
def test_bad_values_exit_2_with_one_line(capsys, kind, text, words):
    with pytest.raises(SystemExit) as exit_info:
        _parser(kind).parse_args(["--v", text])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert words in err and "argument --v" in err and "Traceback" not in err


def test_an_output_that_is_an_input_is_a_usage_error(tmp_path):
    data = tmp_path / "d.npz"
    data.write_bytes(b"x")
    distinct_outputs([tmp_path / "m.pt", None], [data, None, [tmp_path / "a.npz"]])
    with pytest.raises(UsageError, match="d.npz: is also an input") as refused:
        distinct_outputs([tmp_path / "sub" / ".." / "d.npz"], [[tmp_path / "a.npz", data]])
    assert refused.value.exit_code == 2
