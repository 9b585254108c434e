"""The fast training path (issue 19) learns what the plain path learns, and still checkpoints."""

from __future__ import annotations

import csv
import math
import threading

import pytest
import torch
from support.model_data import write_study_npz

from damagenet.data.pairs import TensorSplit, load_splits, to_tensors
from damagenet.errors import DamagenetError, DamagenetUsageError
from damagenet.evaluation.metrics import choose_threshold
from damagenet.inference.scoring import predict_logits
from damagenet.logits import sigmoid
from damagenet.models.checkpoint import load_checkpoint, norm_of
from damagenet.models.siamese_resnet import build_model
from damagenet.training.saving import BackgroundWriter, Snapshot
from damagenet.training.steps import (
    Stepper,
    autocast_dtype,
    make_optimizer,
    memory_format,
    train_epoch,
)
from damagenet.training.train import TrainConfig, train


def _losses(folder) -> list[tuple[float, float]]:
    with open(folder / "train_log.csv") as fh:
        return [(float(r["train_loss"]), float(r["val_loss"])) for r in csv.DictReader(fh)]


def test_fast_path_gives_the_plain_path_losses(tmp_path):
    """Channels-last layout and fused Adam change float rounding only: same curve, same seed."""
    npz = write_study_npz(tmp_path / "d.npz", sizes=(64, 32, 4))
    curves = {}
    for fast in (True, False):
        cfg = TrainConfig(
            epochs=2,
            patience=2,
            backbone="resnet18",
            batch_size=32,
            seed=3,
            progress=False,
            threads=1,
            fused_optimizer=fast,
            memory_format="channels-last" if fast else "contiguous",
        )
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
    recipe = payload["card"]["training"]["recipe"]
    assert "memory_format" not in recipe and "fused_optimizer" not in recipe  # speed, not recipe
    assert recipe["precision"] == "auto"  # arithmetic is part of the recipe


def test_snapshot_is_frozen_while_training_goes_on():
    model = build_model("resnet18", "none")
    snap = Snapshot(model)
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
    writer.submit(1)  # starts writing 1, blocked on the gate
    writer.submit(2)  # waits
    writer.submit(3)  # replaces 2: an older best is never worth writing
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


def test_layout_follows_the_device_and_the_patch_size():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert memory_format("auto", cpu, 16) == torch.contiguous_format
    assert memory_format("auto", cpu, 64) == torch.channels_last
    assert memory_format("auto", cuda, 16) == torch.channels_last
    assert memory_format("contiguous", cuda, 64) == torch.contiguous_format


def test_precision_choices():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("float32", cuda) is None
    assert autocast_dtype("auto", cuda) == torch.float16
    assert autocast_dtype("bfloat16", cpu) == torch.bfloat16
    with pytest.raises(DamagenetUsageError, match="float16 needs a CUDA device"):
        autocast_dtype("float16", cpu)


def test_bfloat16_training_learns_and_records_its_precision(tmp_path):
    npz = write_study_npz(tmp_path / "d.npz", sizes=(64, 32, 32))
    cfg = TrainConfig(
        epochs=3,
        patience=3,
        backbone="resnet18",
        batch_size=32,
        seed=3,
        progress=False,
        threads=1,
        precision="bfloat16",
    )
    result = train(npz, tmp_path / "r", tmp_path / "m.pt", cfg)
    losses = _losses(tmp_path / "r")
    assert all(math.isfinite(t) and math.isfinite(v) for t, v in losses)
    assert losses[-1][0] < losses[0][0]  # it learns
    assert result["test"]["roc_auc"] > 0.6
    _, payload = load_checkpoint(tmp_path / "m.pt")
    assert payload["card"]["training"]["recipe"]["precision"] == "bfloat16"


def test_bfloat16_steps_with_non_finite_gradients_are_skipped():
    torch.manual_seed(0)
    model = build_model("resnet18", "none")
    stepper = Stepper(
        model, make_optimizer(model, TrainConfig()), torch.device("cpu"), 1.5, torch.bfloat16
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    xb = torch.full((4, 4, 16, 16), float("nan"))
    assert stepper(xb, torch.zeros(4, 4, 16, 16), torch.tensor([0.0, 1.0, 0.0, 1.0])) is None
    assert stepper.skipped == 1
    after = model.state_dict()  # weights and batch-norm running statistics as they were
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    data = TensorSplit(xb, torch.zeros(4, 4, 16, 16), torch.tensor([0.0, 1.0, 0.0, 1.0]))
    with pytest.raises(DamagenetError, match="every step had non-finite gradients"):
        train_epoch(stepper, data, 4, torch.Generator().manual_seed(0), progress=False)


def test_no_provisional_save_after_the_last_epoch_and_the_threshold_from_its_logits(
    tmp_path, monkeypatch
):
    """The final checkpoint follows the last epoch at once; its threshold is the best epoch's."""
    npz = write_study_npz(tmp_path / "d.npz", sizes=(64, 32, 4))
    submitted = []
    monkeypatch.setattr(BackgroundWriter, "submit", lambda self, job: submitted.append(job[1]))
    cfg = TrainConfig(
        epochs=2, patience=2, backbone="resnet18", batch_size=32, seed=3, progress=False, threads=1
    )
    train(npz, tmp_path / "r", tmp_path / "m.pt", cfg, run_evaluation=False)
    assert 2 not in submitted
    model, payload = load_checkpoint(tmp_path / "m.pt")
    splits = load_splits(npz)
    val = to_tensors(splits["val"], norm_of(payload))
    prob = sigmoid(predict_logits(model, val, 512, torch.device("cpu")))
    assert payload["threshold"]["value"] == pytest.approx(
        choose_threshold(splits["val"].y, prob, cfg.threshold_rule), abs=1e-6
    )
