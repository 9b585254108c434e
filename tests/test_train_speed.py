"""The fast training path (issue 19) learns what the plain path learns, and still checkpoints."""

from __future__ import annotations

import csv
import threading

import pytest
import torch
from model_data import write_study_npz

from damagenet.checkpoint import load_checkpoint
from damagenet.model import build_model
from damagenet.train import BackgroundWriter, TrainConfig, _Snapshot, train


def _losses(folder) -> list[tuple[float, float]]:
    with open(folder / "train_log.csv") as fh:
        return [(float(r["train_loss"]), float(r["val_loss"])) for r in csv.DictReader(fh)]


def test_fast_path_gives_the_plain_path_losses(tmp_path):
    """Channels-last layout and fused Adam change float rounding only: same curve, same seed."""
    npz = write_study_npz(tmp_path / "d.npz", sizes=(64, 32, 4))
    curves = {}
    for fast in (True, False):
        cfg = TrainConfig(epochs=2, patience=2, backbone="resnet18", batch_size=32, seed=3,
                          progress=False, channels_last=fast, threads=1)
        train(npz, tmp_path / f"r{fast}", tmp_path / f"m{fast}.pt", cfg, run_evaluation=False)
        curves[fast] = _losses(tmp_path / f"r{fast}")
        assert (tmp_path / f"m{fast}.pt").exists()
        assert not (tmp_path / f"m{fast}.provisional.pt").exists()
    assert len(curves[True]) == len(curves[False]) == 2
    (fast_train, fast_val), (plain_train, plain_val) = curves[True][0], curves[False][0]
    assert fast_train == pytest.approx(plain_train, rel=1e-4)  # first epoch: rounding only
    assert fast_val == pytest.approx(plain_val, rel=1e-3)
    for (ft, fv), (pt, pv) in zip(curves[True], curves[False], strict=True):
        assert ft == pytest.approx(pt, abs=0.03) and fv == pytest.approx(pv, abs=0.03)
    _, payload = load_checkpoint(tmp_path / "mTrue.pt")
    assert payload["complete"] is True
    assert "channels_last" not in payload["card"]["training"]["recipe"]  # speed, not recipe


def test_snapshot_is_frozen_while_training_goes_on():
    model = build_model("resnet18", "none")
    snap = _Snapshot(model)
    before = snap.state_dict()["head.0.weight"].clone()
    with torch.no_grad():
        model.head[0].weight.add_(1.0)
    assert torch.equal(snap.state_dict()["head.0.weight"], before)
    assert snap.architecture() == model.architecture()


def test_background_writer_writes_the_newest_and_waits_on_close():
    written, gate = [], threading.Event()

    def write(job):
        gate.wait(5)
        written.append(job)

    writer = BackgroundWriter(write)
    writer.submit(1)      # starts writing 1, blocked on the gate
    writer.submit(2)      # waits
    writer.submit(3)      # replaces 2: an older best is never worth writing
    gate.set()
    writer.close()
    assert written[-1] == 3 and 2 not in written


def test_background_writer_reraises_a_failed_write():
    def write(job):
        raise OSError("disk full")

    writer = BackgroundWriter(write)
    writer.submit(1)
    with pytest.raises(OSError, match="disk full"):
        writer.close()
