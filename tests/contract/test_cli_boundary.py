"""The shared CLI error boundary: one line, the right exit status, nothing left behind."""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from rasterio.errors import RasterioIOError
from support.paths import ROOT

from contract.atomic import atomic_path
from contract.cli import run_command
from pipeline.errors import InputFileError, PipelineUsageError


def _run(func, verbose=False):
    return run_command(func, argparse.Namespace(verbose=verbose))


@pytest.mark.parametrize(
    "exc, code, words",
    [
        (PipelineUsageError("--bbox must be W S E N"), 2, "--bbox must be W S E N"),
        (InputFileError("x.tif: cannot open raster"), 1, "x.tif: cannot open raster"),
        (
            OSError(errno.ENOSPC, "No space left on device", "out/before.tif"),
            1,
            "out/before.tif: no space left on the device",
        ),
        (
            PermissionError(errno.EACCES, "Permission denied", "/ro/x.tif"),
            1,
            "/ro/x.tif: permission denied",
        ),
        (OSError(errno.EROFS, "Read-only file system", "/ro/x.tif"), 1, "read-only"),
        (
            RuntimeError(
                "[enforce fail at inline_container.cc:603] . unexpected pos; file write failed"
            ),
            1,
            "no space left",
        ),
        (KeyboardInterrupt(), 130, "interrupted"),
        (MemoryError(), 1, "out of memory"),
        (
            RasterioIOError("TIFFWriteDirectoryTagData:IO error writing tag data"),
            1,
            "writing a raster output failed",
        ),
        (RasterioIOError("x.tif: TIFFFillTile: Read error at row 4"), 1, "truncated or corrupt"),
    ],
)
def test_failures_become_one_line(capsys, exc, code, words):
    def fail(args):
        raise exc

    assert _run(fail) == code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and err.count("\n") == 1
    assert "Traceback" not in err


def test_verbose_adds_the_traceback(capsys):
    def fail(args):
        raise InputFileError("bad.tif: truncated")

    assert _run(fail, verbose=True) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().endswith("error: bad.tif: truncated")


def test_programming_errors_are_not_hidden():
    def bug(args):
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        _run(bug)


def test_sigterm_cleans_temporary_output(tmp_path):
    """SIGTERM mid-write: exit 143, no final file, no temporary file."""
    script = textwrap.dedent(f"""
        import argparse, time
        from contract.atomic import atomic_path
        from contract.cli import run_command
        def work(args):
            with atomic_path({str(tmp_path / "out.tif")!r}) as tmp:
                tmp.write_bytes(b"partial")
                print("writing", flush=True)
                time.sleep(30)
        raise SystemExit(run_command(work, argparse.Namespace(verbose=False)))
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143 and "terminated (SIGTERM)" in err
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(ValueError), atomic_path(tmp_path / "a.json") as tmp:
        tmp.write_text("half")
        raise ValueError("boom")
    assert list(tmp_path.iterdir()) == []


def test_no_secret_reaches_the_log_at_any_verbosity(monkeypatch, capfd):
    """A real sentinelhub-py token request with -v: the secret is never printed."""
    import responses
    from sentinelhub import SHConfig
    from sentinelhub.download.session import SentinelHubSession

    from contract.cli import setup_logging

    secret = "s3cr3t-VALUE-123456"
    monkeypatch.setenv("SH_CLIENT_ID", "client-abc")
    monkeypatch.setenv("SH_CLIENT_SECRET", secret)
    setup_logging(verbose=True)
    config = SHConfig()
    config.sh_client_id, config.sh_client_secret = "client-abc", secret
    config.sh_token_url = "https://identity.example.org/token"
    with responses.RequestsMock() as rsps:
        rsps.add(
            responses.POST,
            config.sh_token_url,
            json={"access_token": "tok-XYZ-987654", "expires_in": 3600, "token_type": "Bearer"},
        )
        SentinelHubSession(config=config).token  # noqa: B018 (fetches the token)
    import logging

    logging.getLogger("sentinelhub").warning("client_secret=%s token=%s", secret, "tok-XYZ-987654")
    logging.getLogger("pipeline").debug("Authorization: Bearer tok-XYZ-987654")
    out, err = capfd.readouterr()
    assert secret not in out + err and "tok-XYZ-987654" not in out + err
    assert "client_secret=***" in err and "Bearer ***" in err


def test_an_interrupt_inside_another_error_is_an_interrupt(capsys):
    """Ctrl-C while a library defines a class (its ``__set_name__``) reaches Python 3.11 as a
    RuntimeError caused by KeyboardInterrupt: still exit 130 and one line, at start-up too."""
    from contract.cli import Terminated, run_main

    def wrapped(args):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise RuntimeError("Error calling __set_name__") from exc

    assert _run(wrapped) == 130
    assert capsys.readouterr().err.strip() == "error: interrupted (SIGINT); no output was written"

    def starting():
        try:
            raise Terminated("SIGTERM")
        except Terminated as exc:
            raise RuntimeError("Error calling __set_name__") from exc

    assert run_main(starting, []) == 143
    assert "terminated (SIGTERM)" in capsys.readouterr().err


def test_start_up_is_inside_the_boundary(capsys):
    """Issue 31.3: Ctrl-C or SIGTERM while the command modules import (building the parser)
    ended in a traceback and exit 1, or a silent kill; run_main answers as during the work."""
    from contract.cli import run_main

    def interrupted_parser():
        raise KeyboardInterrupt

    assert run_main(interrupted_parser, []) == 130
    assert capsys.readouterr().err.strip() == "error: interrupted (SIGINT); no output was written"

    def terminated_parser():
        os.kill(os.getpid(), signal.SIGTERM)  # the handler is in place before the imports
        raise AssertionError("SIGTERM did not stop the start-up")

    previous = signal.getsignal(signal.SIGTERM)
    assert run_main(terminated_parser, []) == 143
    assert "terminated (SIGTERM); no output was written" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is previous


def test_whatever_breaks_after_a_signal_is_reported_as_the_signal(capsys):
    """SIGTERM while torch imported numpy left numpy half-built; the next access failed with a
    RecursionError and the command printed a traceback and exited 1 (the slow signal grid)."""

    def cut_short(args):
        with contextlib.suppress(BaseException):  # the import machinery swallows it...
            os.kill(os.getpid(), signal.SIGTERM)
        raise RecursionError("maximum recursion depth exceeded")  # ...and fails later

    assert _run(cut_short) == 143
    err = capsys.readouterr().err
    assert err.startswith("error: terminated (SIGTERM)") and "Traceback" not in err

    def bug(args):
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):  # the next command starts afresh
        _run(bug)
