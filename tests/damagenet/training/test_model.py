"""damagenet: model, data, training, evaluation (issue 7)."""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error

import numpy as np
import pytest
import torch
from support.model_data import write_study_npz

import damagenet
from damagenet.cli import main
from damagenet.data.pairs import Normalisation, augment, load_splits, symmetry, to_tensors
from damagenet.errors import CheckpointError, DamagenetError
from damagenet.evaluation.evaluate import evaluate, probabilities
from damagenet.models.checkpoint import checkpoint_hash, input_of, load_checkpoint, norm_of
from damagenet.models.siamese_resnet import (
    BACKBONES,
    SiameseResNet,
    build_model,
    load_imagenet,
    rgb_to_bands,
)
from damagenet.training.train import TrainConfig, train


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    return write_study_npz(tmp_path_factory.mktemp("npz") / "planted.npz")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, npz):
    out = tmp_path_factory.mktemp("trained")
    cfg = TrainConfig(
        epochs=8, patience=8, backbone="resnet18", batch_size=32, progress=False, seed=1
    )
    result = train(npz, out / "results", out / "model.pt", cfg)
    return out, result


def test_small_backbone_learns_planted_change(trained, npz):
    out, result = trained
    metrics = json.loads((out / "results" / "metrics.json").read_text())
    assert metrics["roc_auc"] > 0.9
    assert result["test"]["roc_auc"] == metrics["roc_auc"]
    for name in (
        "confusion_matrix_counts.png",
        "confusion_matrix_normalized.png",
        "confusion_matrix_threshold.png",
        "roc_curve.png",
        "pr_curve.png",
        "train_log.csv",
    ):
        assert (out / "results" / name).stat().st_size > 0
    log = (out / "results" / "train_log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,train_loss,train_acc,val_loss,val_acc,val_roc_auc")
    assert len(log) == 1 + result["epochs_run"]


def test_metrics_lead_with_the_map_threshold_and_hold_real_values(trained, npz):
    """The figures in metrics.json are those of the checkpoint's model on the test split."""
    out, _ = trained
    metrics = json.loads((out / "results" / "metrics.json").read_text())
    model, payload = load_checkpoint(out / "model.pt")
    t = payload["threshold"]["value"]
    assert list(metrics)[0] == "threshold" and metrics["threshold"]["value"] == t
    assert metrics["threshold"]["rule"] == "recall90" and metrics["threshold"]["chosen_on"] == "val"
    assert "validation" in metrics["threshold"]["how"]
    assert "class map" in metrics["threshold"]["used_by_maps"]
    test = load_splits(npz)["test"]
    prob = probabilities(model, test, input_of(payload), 512, torch.device("cpu"))
    y = test.y

    def counts(threshold):
        pred = prob >= threshold
        return [
            [int((~pred & (y == 0)).sum()), int((pred & (y == 0)).sum())],
            [int((~pred & (y == 1)).sum()), int((pred & (y == 1)).sum())],
        ]

    (tn, fp), (fn, tp) = cm = counts(t)
    assert metrics["confusion_matrix"] == cm
    assert metrics["accuracy"] == pytest.approx((tn + tp) / len(y))
    assert metrics["Damage"]["recall"] == pytest.approx(tp / (fn + tp))
    assert metrics["Damage"]["precision"] == pytest.approx(tp / max(tp + fp, 1))
    assert metrics["No-Damage"]["support"] == 48 and metrics["Damage"]["support"] == 48
    half = metrics["study_report_at_0.5"]
    assert half["threshold"] == 0.5 and half["confusion_matrix"] == counts(0.5)
    assert "0.5" in half["note"] and "do not use" in half["note"]
    assert metrics["test_pairs"] == 96 and "not recorded" in metrics["protocol"]
    assert metrics["checkpoint"]["sha256_16"] == checkpoint_hash(out / "model.pt")
    assert {k: v["pairs"] for k, v in metrics["per_aoi"].items()} == {"bucha": 48, "irpin": 48}
    bucha = test.aoi == "bucha"
    assert metrics["per_aoi"]["bucha"]["damaged"] == int(y[bucha].sum()) == 24
    pred_b = prob[bucha] >= t
    assert metrics["per_aoi"]["bucha"]["damage_recall"] == pytest.approx(
        (pred_b & (y[bucha] == 1)).sum() / (y[bucha] == 1).sum()
    )


def test_training_records_ground_card_and_completion(trained, npz):
    out, result = trained
    _, payload = load_checkpoint(out / "model.pt")
    assert payload["complete"] is True
    assert not (out / "model.provisional.pt").exists()
    ground = payload["training_ground"]
    assert ground["patch_size"] == 16 and set(ground["aois"]) == {"bucha", "irpin"}
    d = np.load(npz)
    for split in ("train", "val", "test"):
        m = d[f"aoi_{split}"] == "irpin"
        rc = ground["aois"]["irpin"][split]
        assert rc.dtype == torch.int32 and rc.shape == (int(m.sum()), 2)
        assert np.array_equal(
            rc.numpy(), np.stack([d[f"row_{split}"][m], d[f"col_{split}"][m]], axis=1)
        )
    card = payload["card"]
    assert card["input"]["bands"] == ["B02", "B03", "B04", "B08"]
    assert card["input"]["patch_size"] == 16
    assert card["input"]["mean"] == payload["input"]["mean"]
    assert card["threshold"]["value"] == payload["threshold"]["value"]
    assert card["training"]["aois"] == {
        "train": ["bucha", "irpin"],
        "val": ["bucha", "irpin"],
        "test": ["bucha", "irpin"],
    }
    assert card["training"]["pairs"] == {"train": 192, "val": 64, "test": 96}
    assert card["test"]["metrics"]["roc_auc"] == result["test"]["roc_auc"]
    assert card["dataset"]["sha256"] == hashlib.sha256(npz.read_bytes()).hexdigest()
    assert card["architecture"]["head"] == "2048-256-1 (BatchNorm1d, GELU, Dropout 0.5)"
    assert card["software"]["damagenet"] == damagenet.__version__
    summary = json.loads((out / "results" / "train_summary.json").read_text())
    assert summary["best_epoch_is_last"] is (summary["best_epoch"] == summary["epochs_run"])
    if summary["best_epoch_is_last"]:
        assert "more epochs may help" in summary["warning"]


def test_checkpoint_is_self_contained_and_reproducible(trained, npz):
    out, _ = trained
    model, payload = load_checkpoint(out / "model.pt")
    assert payload["architecture"]["backbone"] == "resnet18"
    assert payload["bands"] == ["B02", "B03", "B04", "B08"] and payload["patch_size"] == 16
    assert len(payload["normalisation"]["mean"]) == 4
    assert 0 < payload["threshold"]["value"] < 1 and payload["threshold"]["rule"] == "recall90"
    assert len(payload["history"]) >= 1 and len(payload["dataset"]["sha256"]) == 64
    test = load_splits(npz)["test"]
    p1 = probabilities(model, test, norm_of(payload), 64, torch.device("cpu"))
    model2, payload2 = load_checkpoint(out / "model.pt")
    p2 = probabilities(model2, test, norm_of(payload2), 64, torch.device("cpu"))
    assert np.array_equal(p1, p2)


def test_resnet101_forward_backward_shapes():
    model = SiameseResNet("resnet101")
    assert model.features == 2048 and model.head[0].in_features == 8192
    b, a = torch.randn(4, 4, 16, 16), torch.randn(4, 4, 16, 16)
    logits = model(b, a)
    assert logits.shape == (4,)
    logits.sum().backward()
    assert model.encoder.conv1.weight.grad.shape == (64, 4, 7, 7)
    assert model.head[-1].weight.grad is not None
    assert SiameseResNet("resnet34").head[0].in_features == 4 * 512


def test_imagenet_band_mapping_with_fake_weights():
    rgb = torch.randn(64, 3, 7, 7)
    mapped = rgb_to_bands(rgb)
    assert torch.equal(mapped[:, 0], rgb[:, 2])  # B02 (blue) <- B
    assert torch.equal(mapped[:, 1], rgb[:, 1])  # B03 (green) <- G
    assert torch.equal(mapped[:, 2], rgb[:, 0])  # B04 (red) <- R
    assert torch.allclose(mapped[:, 3], rgb.mean(dim=1))  # B08 <- mean of RGB
    model = SiameseResNet("resnet18")
    fake = {
        k: torch.full_like(v, 0.5)
        for k, v in __import__("torchvision").models.resnet18().state_dict().items()
    }
    fake["conv1.weight"] = rgb
    load_imagenet(model, fake)
    assert torch.equal(model.encoder.conv1.weight.data, mapped)
    assert torch.all(model.encoder.layer1[0].conv1.weight == 0.5)


def test_imagenet_offline_fails_clearly(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(DamagenetError, match="could not fetch the ImageNet weights") as err:
        build_model("resnet18", "imagenet")
    assert "--weights none" in str(err.value) and "hub/checkpoints" in str(err.value)


def test_both_layouts_load_to_the_same_tensors(npz, tmp_path):
    d = np.load(npz)
    xb = np.concatenate([d["Xb_train"], d["Xb_val"], d["Xb_test"]])
    xa = np.concatenate([d["Xa_train"], d["Xa_val"], d["Xa_test"]])
    y = np.concatenate([d["y_train"], d["y_val"], d["y_test"]])
    split = np.array(
        ["train"] * len(d["y_train"]) + ["val"] * len(d["y_val"]) + ["test"] * len(d["y_test"])
    )
    flat = tmp_path / "flat.npz"
    np.savez(flat, x_before=xb, x_after=xa, y=y, split=split)
    a, b = load_splits(npz), load_splits(flat)
    norm = Normalisation.fit(a["train"])
    assert norm == Normalisation.fit(b["train"])
    for s in ("train", "val", "test"):
        ta, tb = to_tensors(a[s], norm), to_tensors(b[s], norm)
        assert torch.equal(ta.before, tb.before) and torch.equal(ta.after, tb.after)
        assert torch.equal(ta.y, tb.y)


def test_normalisation_uses_training_statistics_only(npz, tmp_path):
    d = dict(np.load(npz))
    ref = Normalisation.fit(load_splits(npz)["train"])
    d["Xb_test"] = (d["Xb_test"] * 3).astype(np.uint16)
    d["Xa_val"] = np.full_like(d["Xa_val"], 9000)
    np.savez(tmp_path / "changed.npz", **d)
    assert Normalisation.fit(load_splits(tmp_path / "changed.npz")["train"]) == ref
    train = load_splits(npz)["train"]
    both = np.concatenate([train.before, train.after]).astype(np.float64) / 10000
    assert np.allclose(ref.mean, both.mean(axis=(0, 2, 3)))
    t = to_tensors(train, ref)
    allt = torch.cat([t.before, t.after])
    assert torch.allclose(allt.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-4)


def test_augmentation_same_symmetry_for_both_epochs():
    x = torch.arange(2 * 4 * 16 * 16, dtype=torch.float32).view(2, 4, 16, 16).repeat(32, 1, 1, 1)
    b, a = augment(x, x.clone(), torch.Generator().manual_seed(0))
    assert torch.equal(b, a)
    images = {tuple(symmetry(x[0], k).flatten().tolist()) for k in range(8)}
    assert len(images) == 8
    assert not torch.equal(b, x)


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "misses"),
        ("shape", "shapes differ"),
        ("bands", "3 bands, expected 4"),
        ("nan", "NaN"),
        ("oneclass", "only class"),
        ("keys", "neither the study's layout"),
    ],
)
def test_bad_npz(tmp_path, npz, case, message):
    d = dict(np.load(npz))
    if case == "missing":
        del d["Xa_val"]
    elif case == "shape":
        d["Xa_train"] = d["Xa_train"][:-1]
    elif case == "bands":
        d["Xb_train"], d["Xa_train"] = d["Xb_train"][:, :3], d["Xa_train"][:, :3]
    elif case == "nan":
        d["Xb_train"] = d["Xb_train"].astype(np.float32)
        d["Xb_train"][0, 0, 0, 0] = np.nan
    elif case == "oneclass":
        d["y_val"] = np.zeros_like(d["y_val"])
    else:
        d = {"before": d["Xb_train"]}
    bad = tmp_path / "bad.npz"
    np.savez(bad, **d)
    cfg = TrainConfig(epochs=1, backbone="resnet18", progress=False)
    with pytest.raises(DamagenetError, match=message):
        train(bad, tmp_path / "r", tmp_path / "m.pt", cfg)
    assert not (tmp_path / "m.pt").exists()


def test_checkpoint_of_other_architecture_or_bands(trained, tmp_path, npz):
    out, _ = trained
    payload = torch.load(out / "model.pt", weights_only=True)
    payload["architecture"]["backbone"] = "resnet50"
    torch.save(payload, tmp_path / "arch.pt")
    with pytest.raises(DamagenetError, match="do not match the recorded architecture"):
        load_checkpoint(tmp_path / "arch.pt")
    payload = torch.load(out / "model.pt", weights_only=True)
    payload["bands"] = ["B02", "B03", "B04"]
    torch.save(payload, tmp_path / "bands.pt")
    with pytest.raises(CheckpointError, match="not a permutation"):
        load_checkpoint(tmp_path / "bands.pt")
    payload["bands"] = ["B08", "B02", "B03", "B04"]  # any order is accepted: predict reorders
    torch.save(payload, tmp_path / "perm.pt")
    assert load_checkpoint(tmp_path / "perm.pt")[1]["bands"] == ["B08", "B02", "B03", "B04"]
    payload["format"] = "damagenet-checkpoint/1"
    torch.save(payload, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="earlier damagenet"):
        load_checkpoint(tmp_path / "old.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "text.pt")
    torch.save({"something": 1}, tmp_path / "foreign.pt")
    with pytest.raises(DamagenetError, match="not a damagenet checkpoint"):
        evaluate(npz, tmp_path / "foreign.pt", tmp_path / "e")


def test_study_command_form(tmp_path, npz, monkeypatch, capsys):
    (tmp_path / "data" / "processed").mkdir(parents=True)
    os.link(npz, tmp_path / "data" / "processed" / "FinalBalanced_splits.npz")
    monkeypatch.chdir(tmp_path)
    code = main(
        [
            "-q",
            "train",
            "--npz",
            "data/processed/FinalBalanced_splits.npz",
            "--out",
            "results",
            "--ckpt",
            "models/best_resnet101.pt",
            "--epochs",
            "1",
        ]
    )
    assert code == 0
    assert (tmp_path / "models" / "best_resnet101.pt").exists()
    assert (tmp_path / "results" / "metrics.json").exists()
    _, payload = load_checkpoint(tmp_path / "models" / "best_resnet101.pt")
    assert payload["architecture"]["backbone"] == "resnet101"
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:  # a missing named input is a usage error
        main(["train", "--npz", "missing.npz", "--out", "r", "--ckpt", "m.pt"])
    assert exit_info.value.code == 2
    assert "missing.npz: no such file" in capsys.readouterr().err


def test_all_backbones_known():
    assert set(BACKBONES) == {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152"}


def test_interrupted_training_leaves_only_a_provisional_checkpoint(npz, tmp_path, monkeypatch):
    """Ctrl-C after the first epoch: no final checkpoint; the provisional one is refused."""
    import damagenet.training.train as train_module

    real, calls = train_module.train_epoch, []

    def interrupt_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_epoch", interrupt_second)
    cfg = TrainConfig(epochs=3, backbone="resnet18", batch_size=32, progress=False)
    with pytest.raises(KeyboardInterrupt):
        train(npz, tmp_path / "r", tmp_path / "m.pt", cfg)
    assert not (tmp_path / "m.pt").exists()
    assert list((tmp_path / "r").iterdir()) == []  # no train_log.csv, no temporary file
    provisional = tmp_path / "m.provisional.pt"
    with pytest.raises(CheckpointError, match="--allow-provisional"):
        load_checkpoint(provisional)
    _, payload = load_checkpoint(provisional, allow_provisional=True)
    assert payload["complete"] is False and payload["threshold"]["rule"] == "provisional"
    assert payload["card"]["complete"] is False
    args = ["evaluate", "--npz", str(npz), "--ckpt", str(provisional), "--out", str(tmp_path / "e")]
    assert main(args) == 1 and not (tmp_path / "e" / "metrics.json").exists()
    assert main(args + ["--allow-provisional"]) == 0
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["checkpoint"]["complete"] is False
    assert metrics["threshold"]["rule"] == "provisional"


def test_info_prints_the_card(trained, capsys):
    out, _ = trained
    ckpt = out / "model.pt"
    assert main(["info", str(ckpt)]) == 0
    text = capsys.readouterr().out
    _, payload = load_checkpoint(ckpt)
    assert f"sha256 16: {hashlib.sha256(ckpt.read_bytes()).hexdigest()[:16]}" in text
    assert "bands: B02, B03, B04, B08" in text and "patch size: 16" in text
    assert f"value: {payload['threshold']['value']:.4g}" in text
    assert "highest threshold whose damage recall on the validation split" in text
    assert "train: bucha, irpin" in text
    assert main(["info", "--json", str(ckpt)]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["checkpoint"]["sha256_16"] == checkpoint_hash(ckpt)
    assert {k: v for k, v in card.items() if k != "checkpoint"} == json.loads(
        json.dumps(payload["card"])
    )
    assert main(["info", str(out / "missing.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    "option, value", [("--batch-size", "1"), ("--epochs", "0"), ("--patience", "x")]
)
def test_train_options_refused_where_parsed(npz, tmp_path, capsys, option, value):
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "train",
                "--npz",
                str(npz),
                "--out",
                str(tmp_path / "r"),
                "--ckpt",
                str(tmp_path / "m.pt"),
                option,
                value,
            ]
        )
    assert exc.value.code == 2 and option in capsys.readouterr().err
    assert not (tmp_path / "r").exists() and not (tmp_path / "m.pt").exists()
