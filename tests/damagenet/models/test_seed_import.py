"""Importing the original study's published model (issue 15 point 2).

The study's network is written here from its description (a ResNet's children but the last as
``features``, a 4-band first convolution, fusion ``[b, a, |b - a|, b * a]``, ``head`` a Sequential
of Linear/BatchNorm1d/GELU/Dropout blocks and a final Linear to one logit), with random weights
and non-trivial BatchNorm statistics, and its own inference (x / 10000, standardise, network,
sigmoid) is the reference the imported checkpoint must reproduce.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from torch import nn
from torchvision import models

from damagenet.cli import main
from damagenet.data.pairs import Split
from damagenet.errors import CheckpointError, DamagenetUsageError, InputFileError
from damagenet.evaluation.evaluate import probabilities
from damagenet.models.checkpoint import checkpoint_hash, input_of, load_checkpoint
from damagenet.models.seed_import import import_seed
from damagenet.models.siamese_resnet import SiameseResNet

#: Index of each of the project's bands (B02, B03, B04, B08) in the study's R, G, B, NIR arrays.
STUDY_TO_PROJECT = [2, 1, 0, 3]


class StudySiameseCNN(nn.Module):
    """The study's ``SiameseCNN(in_channels=4)`` as described, with either of its heads."""

    def __init__(self, resnet, deep_head: bool) -> None:
        super().__init__()
        net = resnet(weights=None)
        net.conv1 = nn.Conv2d(4, 64, kernel_size=7, stride=2, padding=3, bias=False)
        fused = 4 * net.fc.in_features
        self.features = nn.Sequential(*list(net.children())[:-1])
        if deep_head:  # the published code (Model_3)
            self.head = nn.Sequential(
                nn.Linear(fused, 4096),
                nn.BatchNorm1d(4096),
                nn.GELU(),
                nn.Dropout(0.5),
                nn.Linear(4096, 1024),
                nn.BatchNorm1d(1024),
                nn.GELU(),
                nn.Dropout(0.2),
                nn.Linear(1024, 256),
                nn.BatchNorm1d(256),
                nn.GELU(),
                nn.Dropout(0.2),
                nn.Linear(256, 1),
            )
        else:  # the README
            self.head = nn.Sequential(
                nn.Linear(fused, 256),
                nn.BatchNorm1d(256),
                nn.GELU(),
                nn.Dropout(0.5),
                nn.Linear(256, 1),
            )

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        fb = torch.flatten(self.features(before), 1)
        fa = torch.flatten(self.features(after), 1)
        return self.head(torch.cat([fb, fa, torch.abs(fb - fa), fb * fa], dim=1))


def randomise_batchnorm(net: nn.Module, seed: int) -> None:
    """Running statistics and affine parameters far from their defaults (0, 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(0.2 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=g))
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.1 * torch.randn(n, generator=g))
                m.num_batches_tracked.fill_(1234)


def study_inference(
    net: nn.Module, before: np.ndarray, after: np.ndarray, mean: np.ndarray, std: np.ndarray
) -> np.ndarray:
    """The study's recipe for a new region: / 10000, standardise, network, sigmoid."""
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def prep(x):
        return (torch.from_numpy(x.astype(np.float32)) / 10000.0 - m) / s

    net.eval()
    with torch.no_grad():
        return torch.sigmoid(net(prep(before), prep(after))).squeeze(1).numpy()


def make_study_files(tmp_path, resnet, deep_head: bool, size: int, seed: int = 0):
    """The study's weights and statistics files, and patch pairs in its band order."""
    torch.manual_seed(seed)
    net = StudySiameseCNN(resnet, deep_head)
    randomise_batchnorm(net, seed)
    rng = np.random.default_rng(seed)
    before = rng.integers(200, 4000, size=(4, 4, size, size)).astype(np.uint16)
    after = before.copy()
    after[:2, :, : size // 2] = rng.integers(2000, 6000, size=(2, 4, size // 2, size))
    mean = np.array([0.08, 0.07, 0.06, 0.25])
    std = np.array([0.03, 0.025, 0.02, 0.06])
    with torch.no_grad():  # keep logits in sigmoid's sensitive range: a non-trivial comparison
        logits = net.eval()(
            *(
                (
                    torch.from_numpy(x.astype(np.float32)) / 10000.0
                    - torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
                )
                / torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
                for x in (before, after)
            )
        )
        last = net.head[-1]
        last.weight /= logits.std() / 2
        last.bias.copy_(-(logits.mean() - last.bias) / (logits.std() / 2))
    torch.save(net.state_dict(), tmp_path / "Model_3_weights.pt")
    np.savez(tmp_path / "normalization_stats.npz", mean=mean, std=std)
    return net, before, after, mean, std


def ours(ckpt, before, after, order) -> np.ndarray:
    """Probabilities from the imported checkpoint on arrays in the project's band order."""
    model, payload = load_checkpoint(ckpt)
    split = Split(before[:, order], after[:, order], np.zeros(len(before), dtype=np.int64))
    return probabilities(model, split, input_of(payload), 2, torch.device("cpu"))


def test_published_resnet101_model_matches_the_study_inference(tmp_path, capsys):
    net, before, after, mean, std = make_study_files(tmp_path, models.resnet101, True, 64)
    expected = study_inference(net, before, after, mean, std)
    assert expected.std() > 0.05 and ((expected > 0.02) & (expected < 0.98)).all()
    out = tmp_path / "models" / "study_resnet101.pt"
    assert (
        main(
            [
                "import-seed",
                "--weights",
                str(tmp_path / "Model_3_weights.pt"),
                "--stats",
                str(tmp_path / "normalization_stats.npz"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    got = ours(out, before, after, STUDY_TO_PROJECT)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    _, payload = load_checkpoint(out)
    assert payload["bands"] == ["B04", "B03", "B02", "B08"] and payload["patch_size"] == 64
    assert payload["input"] == {
        "bands": ["B04", "B03", "B02", "B08"],
        "scale": 1e-4,
        "mean": mean.tolist(),
        "std": std.tolist(),
    }
    assert payload["architecture"]["head_name"] == "study-code"
    assert [layer.get("dropout") for layer in payload["architecture"]["head"]] == [
        0.5,
        0.2,
        0.2,
        None,
    ]
    assert payload["complete"] is True and "training_ground" not in payload
    card = payload["card"]
    assert (
        card["architecture"]["head"]
        == "8192-4096-1024-256-1 (BatchNorm1d, GELU, Dropout 0.5, 0.2, 0.2)"
    )
    assert card["threshold"]["rule"] == "study" and card["threshold"]["value"] == 0.5
    assert card["test"]["metrics"]["accuracy"] == 0.851
    assert "inflated" in card["test"]["protocol"]
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "bands: B04, B03, B02, B08" in text and "imported from the original study" in text


def test_readme_head_on_a_small_backbone_with_declared_bands(tmp_path):
    """``--bands`` names the order of the study's arrays and statistics; any permutation works."""
    net, before, after, mean, std = make_study_files(tmp_path, models.resnet18, False, 16, 3)
    expected = study_inference(net, before, after, mean, std)
    out = tmp_path / "readme.pt"
    payload = import_seed(
        tmp_path / "Model_3_weights.pt",
        tmp_path / "normalization_stats.npz",
        out,
        bands=("B08", "B02", "B04", "B03"),
        patch_size=16,
    )
    assert payload["architecture"]["backbone"] == "resnet18"
    assert payload["architecture"]["head_name"] == "study-readme"
    # the study's channel i holds band bands[i]; the project's arrays are B02, B03, B04, B08
    order = [["B02", "B03", "B04", "B08"].index(b) for b in ("B08", "B02", "B04", "B03")]
    inverse = [order.index(i) for i in range(4)]
    got = ours(out, before, after, inverse)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    unordered = ours(out, before, after, [0, 1, 2, 3])  # the study's arrays taken as ours
    assert np.abs(unordered - expected).max() > 1e-3
    assert payload["card"]["test"]["metrics"]["test_pairs"] == 592  # the 16 px version


@pytest.fixture(scope="module")
def small_study(tmp_path_factory):
    d = tmp_path_factory.mktemp("small_study")
    make_study_files(d, models.resnet18, False, 16)
    return d / "Model_3_weights.pt", d / "normalization_stats.npz"


def _edited(tmp_path, weights, edit):
    state = torch.load(weights, weights_only=True)
    state = edit(state)
    path = tmp_path / "edited.pt"
    torch.save(state, path)
    return path


def _wide_head(state):
    state["head.0.weight"] = torch.zeros(512, 2048)
    for k in ("bias", "running_mean", "running_var", "weight"):
        state[f"head.1.{k}"] = torch.zeros(512)
    state["head.0.bias"] = torch.zeros(512)
    state["head.4.weight"] = torch.zeros(1, 512)
    return state


@pytest.mark.parametrize(
    "case, kind, words",
    [
        ("ours", CheckpointError, "not the study's SiameseCNN"),
        ("head", CheckpointError, "not one of the study's heads"),
        ("bands", CheckpointError, "takes 3 bands"),
        ("depth", CheckpointError, "none of resnet18"),
        ("text", CheckpointError, "not a readable PyTorch state dict"),
        ("stats_len", InputFileError, "3 values"),
        ("stats_key", InputFileError, "lack ['std']"),
        ("perm", DamagenetUsageError, "not a permutation"),
    ],
)
def test_import_refuses_bad_input_and_writes_nothing(tmp_path, small_study, case, kind, words):
    weights, stats = small_study
    bands = ("B04", "B03", "B02", "B08")
    if case == "ours":
        weights = tmp_path / "ours.pt"
        torch.save(SiameseResNet("resnet18").state_dict(), weights)
    elif case == "head":
        weights = _edited(tmp_path, weights, _wide_head)
    elif case == "bands":
        weights = _edited(
            tmp_path, weights, lambda s: {**s, "features.0.weight": s["features.0.weight"][:, :3]}
        )
    elif case == "depth":
        weights = _edited(
            tmp_path,
            weights,
            lambda s: {k: v for k, v in s.items() if not k.startswith("features.7.1.")},
        )
    elif case == "text":
        weights = tmp_path / "w.pt"
        weights.write_text("<html>not found</html>")
    elif case == "stats_len":
        stats = tmp_path / "s.npz"
        np.savez(stats, mean=np.zeros(3), std=np.ones(3))
    elif case == "stats_key":
        stats = tmp_path / "s.npz"
        np.savez(stats, mean=np.zeros(4))
    else:
        bands = ("B02", "B02", "B03", "B04")
    out = tmp_path / "out" / "m.pt"
    with pytest.raises(kind) as err:
        import_seed(weights, stats, out, bands=bands)
    assert words in str(err.value)
    assert not out.exists() and not (tmp_path / "out").exists()


def test_command_line_refusals(tmp_path, small_study, capsys):
    """Bad options exit 2; files that are not what they claim to be exit 1."""
    weights, stats = small_study
    out = tmp_path / "m.pt"
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "import-seed",
                "--weights",
                str(weights),
                "--stats",
                str(stats),
                "--out",
                str(out),
                "--bands",
                "B02,B03,B04,B05",
            ]
        )
    assert exc.value.code == 2 and "not a permutation" in capsys.readouterr().err
    assert (
        main(["import-seed", "--weights", str(stats), "--stats", str(stats), "--out", str(out)])
        == 1
    )
    assert "not a readable PyTorch state dict" in capsys.readouterr().err
    assert (
        main(
            [
                "import-seed",
                "--weights",
                str(weights),
                "--stats",
                str(stats),
                "--out",
                str(out),
                "--patch-size",
                "16",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "import-seed",
                "--weights",
                str(weights),
                "--stats",
                str(stats),
                "--out",
                str(tmp_path / "twin.pt"),
                "--patch-size",
                "16",
            ]
        )
        == 0
    )
    assert (tmp_path / "twin.pt").read_bytes() == out.read_bytes()  # deterministic bytes
    assert (
        checkpoint_hash(tmp_path / "twin.pt") == hashlib.sha256(out.read_bytes()).hexdigest()[:16]
    )
    assert (
        main(
            [
                "import-seed",
                "--weights",
                str(out),
                "--stats",
                str(stats),
                "--out",
                str(tmp_path / "again.pt"),
            ]
        )
        == 1
    )
    assert "already a damagenet checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "again.pt").exists()
