"""The Siamese U-Net family: shapes, fusions, sizes, the registry and local ImageNet weights."""

from __future__ import annotations

import pytest
import torch
import torchvision

from damagenet.errors import CheckpointError, DamagenetError, DamagenetUsageError
from damagenet.models import registry
from damagenet.models.siamese_resnet import SiameseResNet
from damagenet.models.unet import PRESETS, SiameseUNet, load_imagenet_file, parameter_count


@pytest.mark.parametrize("fusion", ["diff", "conc", "both"])
@pytest.mark.parametrize("fusion_conv", [False, True])
def test_small_unet_gives_one_logit_per_pixel_and_learns_from_a_step(fusion, fusion_conv):
    torch.manual_seed(0)
    model = SiameseUNet("small", fusion, fusion_conv, width=4)
    before, after = torch.randn(2, 4, 16, 16), torch.randn(2, 4, 16, 16)
    logits = model(before, after)
    assert logits.shape == (2, 1, 16, 16)
    logits.mean().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("size", [1, 15, 17, 24])
@pytest.mark.parametrize("encoder", ["small", "resnet18"])
def test_any_input_size_maps_to_the_same_size(encoder, size):
    model = SiameseUNet(encoder, "diff", width=4).eval()
    x = torch.randn(1, 4, size, size)
    with torch.no_grad():
        assert model(x, x.clone()).shape == (1, 1, size, size)


def test_diff_fusion_sees_no_change_in_identical_dates():
    """|after - before| is zero at every scale, so the logit map cannot depend on the image."""
    model = SiameseUNet("small", "diff", width=4).eval()
    a, b = torch.randn(1, 4, 16, 16), torch.randn(1, 4, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(a, a), model(b, b))


def test_default_is_small_and_the_seed_setting_is_resnet50_concatenation():
    small = SiameseUNet()
    assert small.settings == {
        "encoder": "small",
        **PRESETS["fc-siam-diff"],
        "in_bands": 4,
        "width": 16,
    }
    assert 1_000_000 <= parameter_count(small) <= 3_000_000
    assert PRESETS["seed"] == {"encoder": "resnet50", "fusion": "conc", "fusion_conv": True}
    seed = registry.rebuild({"name": "siamese-unet", **PRESETS["seed"], "in_bands": 4, "width": 16})
    assert isinstance(seed, SiameseUNet) and len(seed.fuse) == 5  # fused at all five scales
    assert registry.parameter_count(seed.architecture()) == parameter_count(seed)


def test_registry_rebuilds_both_architectures_and_legacy_records():
    unet = SiameseUNet("small", "both", True, width=4)
    again = registry.rebuild(unet.architecture())
    assert again.architecture() == unet.architecture()
    again.load_state_dict(unet.state_dict())
    assert registry.output_of(unet.architecture()) == registry.PIXEL
    legacy = SiameseResNet("resnet18").architecture()
    legacy.pop("name", None)  # written before architectures were named
    assert isinstance(registry.rebuild(legacy), SiameseResNet)
    assert registry.output_of(legacy) == registry.PAIR
    with pytest.raises(CheckpointError, match="unknown architecture 'transformer'"):
        registry.rebuild({"name": "transformer"})


def test_bad_settings_are_refused_by_name():
    with pytest.raises(DamagenetUsageError, match="unknown encoder 'vgg'"):
        SiameseUNet("vgg")
    with pytest.raises(DamagenetUsageError, match="unknown fusion 'sum'"):
        SiameseUNet(fusion="sum")


def test_imagenet_weights_load_from_a_local_file_with_bands_mapped(tmp_path):
    torch.manual_seed(1)
    reference = torchvision.models.resnet18()  # torchvision's own layout and key names
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(reference.state_dict(), path)
    model = SiameseUNet("resnet18")
    load_imagenet_file(model, path)
    rgb = reference.conv1.weight
    stem = model.encoder.stem[0].weight
    assert torch.equal(stem[:, 0], rgb[:, 2]) and torch.equal(stem[:, 2], rgb[:, 0])  # B02<-B
    assert torch.allclose(stem[:, 3], rgb.mean(dim=1))
    assert torch.equal(model.encoder.layers[3][1].conv2.weight, reference.layer4[1].conv2.weight)


def test_imagenet_weights_refused_for_the_small_encoder_and_a_wrong_file(tmp_path):
    with pytest.raises(DamagenetUsageError, match="only the resnet encoders"):
        load_imagenet_file(SiameseUNet("small"), tmp_path / "x.pth")
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    with pytest.raises(DamagenetError, match="do not fit resnet34"):
        load_imagenet_file(SiameseUNet("resnet34"), tmp_path / "r18.pth")


def test_a_checkpoint_from_before_the_registry_loads_as_the_siamese_resnet(tmp_path, capsys):
    """Old checkpoints name no architecture and record no level: still loaded, still shown."""
    from damagenet.cli import main
    from damagenet.data.pairs import Normalisation
    from damagenet.models.checkpoint import load_checkpoint, processing_level, save_checkpoint

    path = tmp_path / "old.pt"
    net = SiameseResNet("resnet18")
    norm = Normalisation(mean=[0.1] * 4, std=[0.2] * 4)
    payload = save_checkpoint(
        path, net, patch_size=16, norm=norm, threshold={"value": 0.5}, history=[], dataset=None
    )
    del payload["architecture"]["name"], payload["processing_level"]
    for section in ("architecture", "input"):  # the card as it was before
        for key in ("name", "parameters", "output", "convention", "processing_level"):
            payload["card"][section].pop(key, None)
    torch.save(payload, path)
    model, loaded = load_checkpoint(path)
    assert isinstance(model, SiameseResNet) and processing_level(loaded) is None
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "name: siamese-resnet" in out and f"parameters: {parameter_count(net)}" in out
    assert "processing level: not recorded" in out


def test_inference_folding_traces_the_unet_and_keeps_its_outputs():
    """Maps fold batch norms by tracing with torch.fx: the decoder's size matching is a leaf."""
    from damagenet.inference.scoring import optimise_for_inference

    torch.manual_seed(2)
    model = SiameseUNet("small", "both", True, width=4).eval()
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    fast = optimise_for_inference(model, torch.device("cpu"))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    for n, size in ((1, 17), (3, 24)):
        x, y = torch.randn(n, 4, size, size), torch.randn(n, 4, size, size)
        with torch.no_grad():
            assert torch.allclose(fast(x, y), model(x, y), atol=1e-5)
