"""Leave-AOI-out folds, the crossval command on tiny data, and the fold ensemble."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch
from support.cli import leftovers, refuse_move_into
from support.model_data import planted

from contract.npz import FIXED_TIME
from damagenet.cli import main
from damagenet.data.pairs import Normalisation
from damagenet.errors import DamagenetError
from damagenet.evaluation.crossval import assign_folds, pooled, write_outputs
from damagenet.evaluation.crossval_kinds import FoldLevel
from damagenet.evaluation.crossval_report import level_report
from damagenet.evaluation.scores import Scored
from damagenet.inference.ensemble import ensemble_predict, load_ensemble, mean_and_spread
from damagenet.models.checkpoint import save_checkpoint
from damagenet.models.siamese_resnet import SiameseResNet

AOIS = ["a", "b", "c", "d", "e", "f", "g"]


@pytest.mark.parametrize("k", [2, 3, 7])
def test_every_aoi_is_test_once_and_roles_are_disjoint(k):
    folds = assign_folds(AOIS * 3, k, seed=1)
    assert len(folds) == k
    tested = [a for f in folds for a in f.test]
    assert sorted(tested) == AOIS
    for f in folds:
        roles = [set(f.test), set(f.val), set(f.train)]
        assert set().union(*roles) == set(AOIS)
        assert sum(len(r) for r in roles) == len(AOIS)
        assert len(f.val) == 1 and f.train
    assert assign_folds(AOIS, k, seed=1) == folds


@pytest.mark.parametrize("aois,k", [(["a", "b"], 2), (AOIS, 1), (AOIS, 8)])
def test_impossible_folds_are_refused(aois, k):
    with pytest.raises(DamagenetError):
        assign_folds(aois, k)


def test_dataset_without_aoi_names_is_refused(tmp_path):
    xb, xa, y = planted(8, np.random.default_rng(0), size=8)
    np.savez(tmp_path / "d.npz", Xb_train=xb, Xa_train=xa, y_train=y)
    with pytest.raises(DamagenetError, match="aoi"):
        pooled(tmp_path / "d.npz")


def _tiny_dataset(path):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, names in (("train", ["a", "b"]), ("val", ["c"]), ("test", ["d"])):
        xb, xa, y = planted(24 * len(names), rng, size=8)
        arrays.update(
            {
                f"Xb_{split}": xb,
                f"Xa_{split}": xa,
                f"y_{split}": y,
                f"aoi_{split}": np.repeat(names, 24),
            }
        )
    np.savez(path, **arrays)
    return path


def test_crossval_command_writes_every_output(tmp_path):
    npz = _tiny_dataset(tmp_path / "d.npz")
    out = tmp_path / "cv"
    assert (
        main(
            [
                "-q",
                "crossval",
                "--npz",
                str(npz),
                "--k",
                "4",
                "--out",
                str(out),
                "--backbone",
                "resnet18",
                "--epochs",
                "1",
                "--batch-size",
                "16",
                "--device",
                "cpu",
                "--n-boot",
                "50",
            ]
        )
        == 0
    )
    rep = json.loads((out / "crossval.json").read_text())
    assert sorted(rep["per_aoi"]) == ["a", "b", "c", "d"]
    assert set(rep["pooled"]) == {"siamese", "change", "gbt"}
    assert rep["pooled"]["change"]["roc_auc"]["value"] > 0.9  # planted change is obvious
    assert "| **pooled** |" in (out / "crossval.md").read_text()
    preds = np.load(out / "predictions.npz")
    assert len(preds["y"]) == 96 and (out / "roc_models.png").exists()
    ckpts = [f["checkpoint"] for f in rep["folds"]]
    assert rep["folds"][0]["training"]["epochs_run"] == 1
    assert rep["folds"][0]["training"]["batch_size"] == 16
    assert all(
        torch.load(c, weights_only=True)["calibration"]["method"] == "temperature" for c in ckpts
    )
    xb, xa, _ = planted(3, np.random.default_rng(5), size=8)
    mean, std = ensemble_predict(load_ensemble(ckpts), xb, xa)
    assert mean.shape == std.shape == (3,) and (std >= 0).all()


def _scored_level() -> tuple[dict, dict]:
    """A pooled level of two AOIs and two models, and its report, as crossval builds them."""
    rng = np.random.default_rng(1)
    y = np.tile([0, 1], 20)
    at = np.full(40, 0.5), np.full(40, 0.6)  # pooled folds: a threshold per unit
    models = {m: Scored(rng.random(40) * 0.5 + 0.5 * y, *at) for m in ("net", "change")}
    level = FoldLevel(y, np.repeat(["a", "b"], 20), None, None, models)
    report = {"levels": {"pairs": level_report(level, "pairs", "a pair", [], 20, 0)}}
    return report, {"pairs": (level, np.repeat([0, 1], 20))}


def test_crossval_outputs_published_as_one_set(tmp_path, monkeypatch):
    """The report, its table, the predictions and the plot: a failure at the last file leaves
    none of them; the set as a whole otherwise."""
    report, units = _scored_level()
    refuse_move_into(monkeypatch, tmp_path / "cv" / "roc_models.png")
    with pytest.raises(OSError, match="Input/output"):
        write_outputs(tmp_path / "cv", report, units)
    assert leftovers(tmp_path / "cv") == []
    write_outputs(tmp_path / "cv", report, units)
    assert leftovers(tmp_path / "cv") == [
        "crossval.json",
        "crossval.md",
        "predictions.npz",
        "roc_models.png",
    ]
    with zipfile.ZipFile(tmp_path / "cv" / "predictions.npz") as zf:  # no clock time inside
        assert {info.date_time for info in zf.infolist()} == {FIXED_TIME}
    assert np.load(tmp_path / "cv" / "predictions.npz")["aoi"].tolist() == ["a"] * 20 + ["b"] * 20


def test_crossval_bad_k_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["crossval", "--npz", "x.npz", "--k", "zero", "--out", str(tmp_path)])
    assert exc.value.code == 2


def test_patch_model_options_without_the_patch_model_exit_2(tmp_path, capsys):
    """They would change nothing: refused with one line before any data is read."""
    npz = _tiny_dataset(tmp_path / "d.npz")
    args = ["crossval", "--npz", str(npz), "--k", "2", "--out", str(tmp_path / "cv")]
    assert main([*args, "--patch-epochs", "3", "--patch-batch-size", "32"]) == 2
    err = capsys.readouterr().err
    assert "--patch-epochs, --patch-batch-size: only with --with-patch-model" in err
    assert "Traceback" not in err and not (tmp_path / "cv").exists()


def test_ensemble_mean_and_spread_on_known_inputs():
    mean, std = mean_and_spread(np.array([[0.2, 0.9], [0.4, 0.9], [0.6, 0.9]]))
    assert mean == pytest.approx([0.4, 0.9])
    assert std == pytest.approx([np.std([0.2, 0.4, 0.6]), 0.0])
    with pytest.raises(DamagenetError):
        mean_and_spread(np.zeros(3))


def _ckpt(path, seed, calibration=None):
    torch.manual_seed(seed)
    model = SiameseResNet("resnet18").eval()
    save_checkpoint(
        path,
        model,
        patch_size=8,
        norm=Normalisation([0.1] * 4, [0.05] * 4),
        threshold={"value": 0.5, "rule": "f1"},
        history=[],
        dataset={},
        extra={"calibration": calibration} if calibration else None,
    )
    return path


def test_ensemble_of_checkpoints(tmp_path):
    a, b = _ckpt(tmp_path / "a.pt", 0), _ckpt(tmp_path / "b.pt", 1)
    xb, xa, _ = planted(5, np.random.default_rng(0), size=8)
    mean, std = ensemble_predict(load_ensemble([a, a]), xb, xa)
    assert mean.shape == (5,) and np.allclose(std, 0)
    mean2, std2 = ensemble_predict(load_ensemble([a, b]), xb, xa)
    assert (std2 > 0).any() and ((mean2 > 0) & (mean2 < 1)).all()
    hot = _ckpt(tmp_path / "t.pt", 0, {"method": "temperature", "T": 1e6})
    flat, _ = ensemble_predict(load_ensemble([hot]), xb, xa)
    assert flat == pytest.approx(0.5, abs=1e-4)  # a huge temperature flattens to 0.5
    with pytest.raises(DamagenetError):
        load_ensemble([])


def test_the_pixel_models_recipe_reaches_every_fold(tmp_path, monkeypatch):
    """``--encoder``, ``--fusion``, ``--width`` and the rest mean what they mean in train."""
    import damagenet.evaluation.crossval as module

    seen = {}
    monkeypatch.setattr(module, "crossval", lambda npz, out, k, cfg, *a: seen.update(cfg=cfg))
    argv = ["crossval", "--npz", "d.npz", "--k", "2", "--out", str(tmp_path), "--width", "8"]
    assert main([*argv, "--encoder", "resnet18", "--fusion", "both", "--pos-weight", "3"]) == 0
    cfg = seen["cfg"]
    assert (cfg.encoder, cfg.fusion, cfg.width, cfg.pos_weight) == ("resnet18", "both", 8, 3.0)
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--fusion", "sum"])
    assert exc.value.code == 2
