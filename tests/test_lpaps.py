"""LPAPS and VGGish-ish: official layouts, the distance's formula and properties, strict loading."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vgs_cli.checkpoint import save_checkpoint
from vgs_cli.config.vggishish import PRESETS, VGGishishConfig, VGGishishModelConfig
from vgs_cli.errors import CheckpointError, VgsError
from vgs_cli.models.lpaps import LPAPS, normalize_channels
from vgs_cli.models.vggishish import VGGishish
from vgs_cli.train.codebook import load_lpaps

TINY = PRESETS["tiny"].model


def _tiny_vggishish(seed=0) -> VGGishish:
    torch.manual_seed(seed)
    model = VGGishish(TINY)
    model.scaling_layer.set_stats(torch.linspace(0.3, 0.6, 80), torch.linspace(0.05, 0.2, 80))
    return model


def _mels(n=2, frames=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 80, frames, generator=g) * 2 - 1


def test_paper_size_layouts_match_official_manifests(reference_dir):
    keys = reference_dir / "checkpoint_keys"
    vgg = VGGishish(VGGishishModelConfig())
    ours = {k: list(v.shape) for k, v in vgg.state_dict().items()}
    official = json.loads((keys / "vggishish.json").read_text())
    # the only addition: the per-bin standardisation the official model left to its data loader
    assert set(ours) - set(official["keys"]) == {"scaling_layer.shift", "scaling_layer.scale"}
    assert {k: v for k, v in ours.items() if not k.startswith("scaling_layer")} == official["keys"]
    assert sum(p.numel() for p in vgg.parameters()) == official["params"] == 137_622_517
    lp = LPAPS.from_vggishish(vgg)
    lp_official = json.loads((keys / "lpaps.json").read_text())
    assert {k: list(v.shape) for k, v in lp.state_dict().items()} == lp_official["keys"]
    assert sum(p.numel() for p in lp.parameters()) == lp_official["params"] == 14_715_008


def test_scaling_layer_matches_reference_statistics(reference_dir):
    stats = np.loadtxt(reference_dir / "train_means_stds_melspec_10s_22050hz.txt", dtype=np.float32)
    vgg = VGGishish(TINY)
    vgg.scaling_layer.set_stats(torch.from_numpy(stats[:, 0]), torch.from_numpy(stats[:, 1]))
    x01 = torch.rand(1, 1, 80, 16)
    out = vgg.scaling_layer(x01 * 2 - 1)
    expected = (x01 - torch.from_numpy(stats[:, 0])[:, None]) / torch.from_numpy(stats[:, 1])[:, None]
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)


def test_distance_properties():
    lp = LPAPS.from_vggishish(_tiny_vggishish())
    x, y = _mels(seed=1), _mels(seed=2)
    assert lp(x, x).shape == (2,)
    assert torch.all(lp(x, x) == 0)
    torch.testing.assert_close(lp(x, y), lp(y, x))
    assert torch.all(lp(x, y) > 0)
    near = lp(x, x + 0.05 * torch.randn_like(x))
    assert torch.all(near < lp(x, y))  # a small perturbation is closer than an unrelated mel


def test_distance_follows_the_formula():
    vgg = _tiny_vggishish()
    lp = LPAPS.from_vggishish(vgg)
    with torch.no_grad():
        for k, c in enumerate(TINY.stage_channels):  # non-uniform weights, as learned ones would be
            getattr(lp, f"lin{k}").model[1].weight.copy_(torch.rand(1, c, 1, 1))
    x, y = _mels(seed=3), _mels(seed=4)
    # stage taps straight from the classifier's feature stack: after the ReLU that closes each stage
    taps = {3, 8, 15, 22, 29}
    want = torch.zeros(2)
    hx, hy = vgg.scaling_layer(x), vgg.scaling_layer(y)
    k = 0
    for i, layer in enumerate(vgg.features):
        hx, hy = layer(hx), layer(hy)
        if i in taps:
            w = getattr(lp, f"lin{k}").model[1].weight.view(1, -1, 1, 1)
            want += (w * (normalize_channels(hx) - normalize_channels(hy)) ** 2).sum(1).mean(dim=(1, 2))
            k += 1
    assert k == 5
    torch.testing.assert_close(lp(x, y), want, atol=1e-5, rtol=1e-4)


def test_frozen_eval_only_but_differentiable_in_its_input():
    lp = LPAPS.from_vggishish(_tiny_vggishish())
    lp.train()
    assert not lp.training and not any(m.training for m in lp.modules())  # dropout never on
    assert not any(p.requires_grad for p in lp.parameters())
    x = _mels(seed=5).requires_grad_(True)
    lp(x, _mels(seed=6)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def _save_vggishish(path, model: VGGishish, cfg: VGGishishConfig = PRESETS["tiny"], stage="vggishish", state=None):
    save_checkpoint(path, stage=stage, config=cfg.to_dict(), state_dict=state if state is not None else model.state_dict())
    return path


def test_load_lpaps_from_a_vggishish_checkpoint(tmp_path):
    vgg = _tiny_vggishish(seed=7)
    lp = load_lpaps(_save_vggishish(tmp_path / "vgg.ckpt", vgg))
    expected = LPAPS.from_vggishish(vgg)
    x, y = _mels(seed=8), _mels(seed=9)
    torch.testing.assert_close(lp(x, y), expected(x, y))
    torch.testing.assert_close(lp.scaling_layer.scale, vgg.scaling_layer.scale)


def test_load_lpaps_refuses_what_does_not_load(tmp_path):
    vgg = _tiny_vggishish()
    with pytest.raises(CheckpointError, match="not found"):
        load_lpaps(tmp_path / "missing.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.ckpt"):
        load_lpaps(tmp_path / "junk.ckpt")
    with pytest.raises(CheckpointError, match="expected vggishish"):
        load_lpaps(_save_vggishish(tmp_path / "other.ckpt", vgg, stage="melception"))
    state = {k: v for k, v in vgg.state_dict().items() if k != "features.0.bias"}
    with pytest.raises(CheckpointError, match="missing"):
        load_lpaps(_save_vggishish(tmp_path / "partial.ckpt", vgg, state=state))
    # weights of the tiny net under a config that says paper size: shapes disagree
    paper = VGGishishConfig(model=VGGishishModelConfig(num_classes=TINY.num_classes, hidden=TINY.hidden))
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_lpaps(_save_vggishish(tmp_path / "shapes.ckpt", vgg, cfg=paper))


def test_make_task_uses_the_requested_lpaps(tmp_path, tiny_shards):
    from vgs_cli.config.codebook import PRESETS as CB
    from vgs_cli.train.codebook import make_task

    ckpt = _save_vggishish(tmp_path / "vgg.ckpt", _tiny_vggishish())
    task = make_task(CB["tiny"], tiny_shards, lpaps=str(ckpt))
    assert isinstance(task.build_models()["lpaps"], LPAPS) and task.perceptual_weight == 1.0
    assert task.checkpoint_extra()["lpaps"].startswith("vgg.ckpt sha256:")
    assert task.config.lpaps == str(ckpt.resolve())  # recorded in the run's config.json
    resumed = make_task(task.config, tiny_shards)  # resuming without --lpaps keeps the perceptual loss
    assert "lpaps" in resumed.build_models() and resumed.perceptual_weight == 1.0
    off = make_task(CB["tiny"], tiny_shards, lpaps="none")
    assert "lpaps" not in off.build_models() and off.perceptual_weight == 0.0
    with pytest.raises(VgsError, match="not found"):
        make_task(CB["tiny"], tiny_shards, lpaps=str(tmp_path / "nope.ckpt"))
