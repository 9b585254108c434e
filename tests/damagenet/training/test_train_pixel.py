"""Training the pixel model on tile datasets: learning, the seam, staging, cards, refusals."""

from __future__ import annotations

import csv
import errno
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from support.model_data import write_study_npz

from contract.labels import UNKNOWN
from contract.npz_keys import DATASET_KIND, PROCESSING_LEVEL, TILES
from damagenet.cli import main
from damagenet.data.pairs import Normalisation
from damagenet.errors import DamagenetError
from damagenet.evaluation.metrics import choose_threshold
from damagenet.logits import sigmoid
from damagenet.models import registry
from damagenet.models.checkpoint import load_checkpoint, processing_level
from damagenet.models.unet import SiameseUNet
from damagenet.training.config import TrainConfig
from damagenet.training.tasks import PixelTask
from damagenet.training.train import train

SIZE = 16


def planted_tiles(n: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Tiles in the dataset's layout: every other tile holds a bright, low-NIR 4 x 4 block of
    rubble in 'after' (target 1) with an unknown ring around it; every eighth is all unknown."""
    base = rng.integers(500, 2500, size=(n, 4, 1, 1)).astype(np.float64)
    before = base * (1 + 0.1 * rng.standard_normal((n, 4, SIZE, SIZE)))
    after = before + 30 * rng.standard_normal((n, 4, SIZE, SIZE))
    y = np.zeros((n, SIZE, SIZE), dtype=np.uint8)
    for i in range(0, n, 2):
        r, c = rng.integers(2, SIZE - 6, size=2)
        after[i, :3, r : r + 4, c : c + 4] += 1500
        after[i, 3, r : r + 4, c : c + 4] *= 0.5
        y[i, r - 1 : r + 5, c - 1 : c + 5] = UNKNOWN
        y[i, r : r + 4, c : c + 4] = 1
    y[7::8] = UNKNOWN  # cloud: nobody knows
    clip = lambda a: np.clip(a, 1, 10000).astype(np.uint16)  # noqa: E731
    return clip(before), clip(after), y


def write_tiles_npz(path: Path, sizes=(48, 16, 16), seed: int = 0, **override) -> Path:
    """A tile dataset as ``pipeline dataset --tile-size`` writes it (kind, level, provenance)."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {
        DATASET_KIND: np.array(TILES),
        PROCESSING_LEVEL: np.array("L2A"),
    }
    for split, n in zip(("train", "val", "test"), sizes, strict=True):
        xb, xa, y = planted_tiles(n, rng)
        arrays |= {f"Xb_{split}": xb, f"Xa_{split}": xa, f"y_{split}": y}
        arrays[f"aoi_{split}"] = np.where(np.arange(n) < n // 2, "bucha", "irpin")
        offset = {"train": 0, "val": 1000, "test": 2000}[split]
        arrays[f"row_{split}"] = offset + SIZE * (np.arange(n) // 8)
        arrays[f"col_{split}"] = SIZE * (np.arange(n) % 8)
    arrays |= override
    np.savez(path, **arrays)
    return path


def _cfg(**kw) -> TrainConfig:
    settings = dict(
        arch="siamese-unet",
        width=4,
        epochs=4,
        patience=4,
        batch_size=8,
        lr_backbone=3e-3,
        lr_head=3e-3,
        threshold_rule="f1",
        progress=False,
        threads=1,
    )
    return TrainConfig(**(settings | kw))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pixel")
    npz = write_tiles_npz(folder / "tiles.npz")
    result = train(npz, folder / "out", folder / "unet.pt", _cfg(dice_weight=0.5))
    return folder, npz, result


def test_pixel_model_learns_planted_damage_and_reports_pixels(trained):
    folder, npz, result = trained
    with open(folder / "out" / "train_log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == result["epochs_run"] == 4
    assert float(rows[-1]["val_roc_auc"]) > 0.9
    metrics = json.loads((folder / "out" / "metrics.json").read_text())
    assert metrics["level"] == "pixel" and metrics["roc_auc"] > 0.9
    test_y = np.load(npz)["y_test"]
    assert metrics["test_pixels"] == int((test_y != UNKNOWN).sum())  # labelled pixels only
    assert metrics["damaged_pixels"] == int((test_y == 1).sum())
    summary = json.loads((folder / "out" / "train_summary.json").read_text())
    assert summary["test"]["roc_auc"] == metrics["roc_auc"]


def test_training_ends_with_the_evaluation_damagenet_evaluate_writes(trained, tmp_path):
    """The pixel model's run writes the pixel, patch and point levels beside the baselines,
    the same files and figures as ``damagenet evaluate`` on its checkpoint."""
    from damagenet.evaluation.evaluate import evaluate

    folder, npz, result = trained
    metrics = json.loads((folder / "out" / "metrics.json").read_text())
    assert set(metrics["levels"]) == {"pixel", "patch", "point"}
    assert {"change", "gbt"} <= set(metrics["levels"]["pixel"]["scores"])
    assert result["test"]["levels"] == metrics["levels"]
    evaluate(npz, folder / "unet.pt", tmp_path, device="cpu")
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    written = {p.name for p in (folder / "out").iterdir()} - {"train_log.csv", "train_summary.json"}
    assert written == {p.name for p in tmp_path.iterdir()}
    assert {"roc_curve.png", "pr_curve.png", "roc_models_pixel.png"} <= written


def test_checkpoint_rebuilds_the_unet_and_its_card_says_what_it_is(trained, capsys):
    folder, npz, _ = trained
    model, payload = load_checkpoint(folder / "unet.pt")
    assert isinstance(model, SiameseUNet)
    assert registry.output_of(payload["architecture"]) == registry.PIXEL
    x = torch.zeros(2, 4, 24, 24)
    assert model(x, x).shape == (2, 1, 24, 24)  # any tile size
    card = payload["card"]
    assert card["architecture"]["name"] == "siamese-unet"
    assert card["architecture"]["parameters"] == sum(p.numel() for p in model.parameters())
    assert "(N, 1, H, W)" in card["input"]["convention"]
    assert card["input"]["processing_level"] == "L2A" == processing_level(payload)
    assert card["training"]["recipe"]["dice_weight"] == 0.5
    assert "backbone" not in card["training"]["recipe"]  # the patch model's setting
    assert card["test"]["metrics"]["level"] == "pixel"
    assert main(["info", str(folder / "unet.pt")]) == 0
    out = capsys.readouterr().out
    assert "name: siamese-unet" in out and "processing level: L2A" in out
    assert f"parameters: {card['architecture']['parameters']}" in out


def test_threshold_is_chosen_on_validation_pixels(trained):
    folder, npz, _ = trained
    model, payload = load_checkpoint(folder / "unet.pt")
    d = np.load(npz)
    norm = Normalisation(**{k: payload["input"][k] for k in ("mean", "std", "scale")})
    with torch.no_grad():
        logits = model(norm.apply(d["Xb_val"]), norm.apply(d["Xa_val"])).numpy()
    y, scores = PixelTask().scored(logits, d["y_val"])
    assert payload["threshold"]["chosen_on"] == "val"
    expected = choose_threshold(y, sigmoid(scores), "f1")
    assert payload["threshold"]["value"] == pytest.approx(expected, rel=1e-3)


def test_same_seed_gives_the_same_weights(tmp_path):
    npz = write_tiles_npz(tmp_path / "t.npz", sizes=(16, 8, 8))
    states = []
    for run in ("a", "b"):
        train(npz, tmp_path / run, tmp_path / f"{run}.pt", _cfg(epochs=1), run_evaluation=False)
        states.append(torch.load(tmp_path / f"{run}.pt", weights_only=True)["state_dict"])
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_one_symmetry_moves_both_dates_and_the_target():
    g = torch.Generator().manual_seed(0)
    xb = torch.arange(6 * 4 * 8 * 8, dtype=torch.float32).reshape(6, 4, 8, 8)
    xa = xb + 1
    y = (xb[:, 0] % 3).to(torch.uint8)  # a target that is a function of the before pixels
    ab, aa, ay = PixelTask().augment(xb, xa, y, g)
    assert torch.equal(aa, ab + 1)
    assert torch.equal(ay, (ab[:, 0] % 3).to(torch.uint8))
    assert not torch.equal(ab, xb)


def test_tiles_holding_damage_are_oversampled_to_the_share():
    y = torch.zeros(100, 4, 4, dtype=torch.uint8)
    y[:10, 0, 0] = 1  # one tile in ten holds damage
    g = torch.Generator().manual_seed(1)
    draws = torch.cat([PixelTask(oversample=0.5).order(y, g) for _ in range(20)])
    assert (draws < 10).float().mean().item() == pytest.approx(0.5, abs=0.05)
    plain = PixelTask(oversample=0.0).order(y, g)
    assert sorted(plain.tolist()) == list(range(100))  # a shuffled pass, each tile once


def test_pixel_counts_and_loss_skip_unknown_ground():
    task = PixelTask()
    y = torch.tensor([[[1, 0], [UNKNOWN, UNKNOWN]]], dtype=torch.uint8)
    logits = torch.tensor([[[[5.0, 5.0], [9.0, -9.0]]]])
    right, counted = task.counts(logits, y)
    assert (int(right), counted) == (1, 2)


def test_each_architecture_refuses_the_other_dataset_kind(tmp_path):
    tiles = write_tiles_npz(tmp_path / "t.npz", sizes=(8, 8, 8))
    patches = write_study_npz(tmp_path / "p.npz", sizes=(8, 8, 8))
    with pytest.raises(
        DamagenetError, match="a tile dataset.*pixel model reads it .--arch siamese-unet."
    ):
        train(tiles, tmp_path / "o1", tmp_path / "m1.pt", TrainConfig(backbone="resnet18"))
    with pytest.raises(DamagenetError, match="pixel model .* tile datasets"):
        train(patches, tmp_path / "o2", tmp_path / "m2.pt", _cfg())
    assert not (tmp_path / "o1" / "train_log.csv").exists()


@pytest.mark.parametrize(
    "override, message",
    [
        ({"y_train": np.full((8, SIZE, SIZE), 2, dtype=np.uint8)}, "target values \\[2\\]"),
        ({"y_train": np.zeros((8, SIZE, SIZE), dtype=np.int64)}, "targets are int64"),
        ({"y_train": np.zeros((8, SIZE), dtype=np.uint8)}, "one target per pixel"),
        ({"y_val": np.full((8, SIZE, SIZE), UNKNOWN, dtype=np.uint8)}, "no labelled pixel"),
    ],
)
def test_bad_tile_datasets_are_refused_by_name(tmp_path, override, message):
    npz = write_tiles_npz(tmp_path / "t.npz", sizes=(8, 8, 8), **override)
    with pytest.raises(DamagenetError, match=message) as err:
        train(npz, tmp_path / "out", tmp_path / "m.pt", _cfg())
    assert str(npz) in str(err.value)


def test_arch_auto_trains_the_pixel_model_on_tiles_and_says_so(tmp_path, capsys):
    """``damagenet train`` without --arch: a tile dataset trains the pixel model (the default
    since it won on real imagery); a named architecture of the other kind is still refused."""
    npz = write_tiles_npz(tmp_path / "t.npz", sizes=(8, 8, 8))
    common = ["--npz", str(npz), "--epochs", "1", "--width", "4", "--no-evaluate"]
    code = main(["train", *common, "--out", str(tmp_path / "o"), "--ckpt", str(tmp_path / "m.pt")])
    assert code == 0 and "--arch auto: siamese-unet for a tiles dataset" in capsys.readouterr().err
    _, payload = load_checkpoint(tmp_path / "m.pt")
    assert registry.arch_name(payload["architecture"]) == "siamese-unet"
    code = main(
        ["train", *common, "--arch", "siamese-resnet", "--out", str(tmp_path / "o2"),
         "--ckpt", str(tmp_path / "m2.pt")]
    )  # fmt: skip
    assert code == 1 and not (tmp_path / "m2.pt").exists()
    assert "the pixel model reads it (--arch siamese-unet)" in capsys.readouterr().err


def test_unwritable_checkpoint_folder_fails_before_training_and_leaves_nothing(tmp_path, capsys):
    npz = write_tiles_npz(tmp_path / "t.npz", sizes=(8, 8, 8))
    (tmp_path / "blocker").write_text("a file where the models folder should be")
    code = main(
        ["-q", "train", "--npz", str(npz), "--out", str(tmp_path / "out"), "--arch", "siamese-unet",
         "--ckpt", str(tmp_path / "blocker" / "m.pt"), "--epochs", "1", "--width", "4"]
    )  # fmt: skip
    assert code == 1  # as for every writer that meets an unwritable folder
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write the checkpoint in" in err[0] and "blocker" in err[0]
    assert not (tmp_path / "out" / "train_log.csv").exists()


def test_a_full_disk_at_the_final_checkpoint_leaves_no_log(tmp_path, monkeypatch, capsys):
    """The checkpoint write fails after training: no train_log.csv, summary or metrics."""
    import damagenet.training.train as train_module

    def full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(train_module, "save_checkpoint", full)
    npz = write_tiles_npz(tmp_path / "t.npz", sizes=(8, 8, 8))
    out = tmp_path / "out"
    code = main(
        ["-q", "train", "--npz", str(npz), "--out", str(out), "--ckpt", str(tmp_path / "m.pt"),
         "--arch", "siamese-unet", "--epochs", "1", "--width", "4"]
    )  # fmt: skip
    assert code != 0
    assert "no space left" in capsys.readouterr().err.lower()
    assert not any(out.iterdir())  # no log, no summary, no metrics, no staging folder
    assert not (tmp_path / "m.pt").exists()


def test_unet_imagenet_weights_come_only_from_a_named_file(tmp_path):
    import torchvision

    from damagenet.errors import DamagenetUsageError
    from damagenet.training.tasks import build_network

    cfg = TrainConfig(arch="siamese-unet", encoder="resnet18", weights="imagenet")
    with pytest.raises(DamagenetUsageError, match="--weights-file"):
        build_network(cfg)
    reference = torchvision.models.resnet18()
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    cfg.weights_file = str(tmp_path / "r18.pth")
    model = build_network(cfg)
    assert torch.equal(model.encoder.layers[0][0].conv1.weight, reference.layer1[0].conv1.weight)
