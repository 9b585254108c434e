"""Provisional checkpoints: the best model so far, written off the training thread.

The best weights are kept in memory and the provisional checkpoint is written by a background
thread, so saving a 170 MB ResNet-101 does not stall the epochs; an interrupted run still leaves
one (the writer is joined before the exception leaves ``train``). It lives beside the final
checkpoint under another name (:func:`provisional_path`), so an interrupted run never leaves
something a user or Snakemake could take for a finished model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from damagenet.models.checkpoint import save_checkpoint
from damagenet.training.config import TrainConfig


class Snapshot:
    """A frozen copy of the model's weights that :func:`save_checkpoint` can write.

    Training goes on mutating the live model while a background thread saves; the snapshot
    is what was best when it was taken.
    """

    def __init__(self, model: nn.Module) -> None:
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.arch: dict[str, Any] = model.architecture()  # type: ignore[operator]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.state

    def architecture(self) -> dict[str, Any]:
        return self.arch


class BackgroundWriter:
    """Runs one write at a time off the training thread; only the newest pending one counts.

    If a save is still running when a newer best arrives, the newer one replaces any waiting
    job (an older provisional checkpoint is never worth writing). ``close`` waits for the last
    write and re-raises its error, so a provisional checkpoint is on disk when ``train``
    returns or is interrupted.
    """

    def __init__(self, write: Callable[[Any], None]) -> None:
        self._write, self._lock = write, threading.Lock()
        self._pending: Any = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, job: Any) -> None:
        self._raise()
        with self._lock:
            self._pending = job
            if self._thread is None:
                self._thread = threading.Thread(target=self._drain, name="provisional-ckpt")
                self._thread.start()

    def _drain(self) -> None:
        while True:
            with self._lock:
                job, self._pending = self._pending, None
                if job is None:
                    self._thread = None
                    return
            try:
                self._write(job)
            except BaseException as exc:  # handed to the training thread by close()
                self._error = exc

    def close(self) -> None:
        while (thread := self._thread) is not None:
            thread.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def provisional_path(ckpt: Path) -> Path:
    """Where the best model so far lives while training runs (``x.pt`` -> ``x.provisional.pt``).

    Never the final path, so an interrupted run leaves no final checkpoint behind.
    """
    return ckpt.with_name(f"{ckpt.stem}.provisional{ckpt.suffix}")


class ProvisionalSaver:
    """Hands every new best epoch to a :class:`BackgroundWriter` as a provisional checkpoint.

    ``saving`` holds the keyword arguments every checkpoint of the run shares (patch size,
    normalisation, dataset, training ground). Use as a context manager: leaving it, normally
    or by an exception, waits for the newest write.
    """

    def __init__(self, ckpt: Path, cfg: TrainConfig, saving: dict[str, Any]) -> None:
        self.path, self.cfg, self.saving = provisional_path(ckpt), cfg, saving
        self.writer = BackgroundWriter(self._write)

    def __call__(self, snapshot: Snapshot, epoch: int, history: list[dict[str, Any]]) -> None:
        self.writer.submit((snapshot, epoch, list(history)))

    def _write(self, job: tuple[Snapshot, int, list[dict[str, Any]]]) -> None:
        snapshot, epoch, history = job
        save_checkpoint(
            self.path,
            snapshot,
            threshold={"value": 0.5, "rule": "provisional"},
            history=history,
            complete=False,
            extra={"config": asdict(self.cfg), "best_epoch": epoch},
            **self.saving,
        )

    def __enter__(self) -> ProvisionalSaver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.writer.close()
