"""Melception: official layout, outputs, input standardisation, self-contained checkpoints, and the
batch-size independence of everything the metrics compute from it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vgs_cli.checkpoint import save_checkpoint
from vgs_cli.config.melception import PRESETS, MelceptionConfig, MelceptionModelConfig
from vgs_cli.config.vggishish import TINY_LAYERS, VGGishishModelConfig
from vgs_cli.errors import ConfigError
from vgs_cli.loading.models import load_model
from vgs_cli.metrics.features import batched, classifier_outputs, extract
from vgs_cli.metrics.fid import fid
from vgs_cli.metrics.isc import inception_score
from vgs_cli.metrics.kid import kid
from vgs_cli.metrics.mkl import mean_kl
from vgs_cli.models.melception import Melception
from vgs_cli.models.vggishish import VGGishish

OFFICIAL_PARAMS = 25_213_450


@pytest.fixture(scope="module")
def full_model() -> Melception:
    torch.manual_seed(0)
    return Melception(MelceptionModelConfig(num_classes=309))


def test_full_size_has_the_official_parameter_count_and_names(full_model):
    n_params = sum(p.numel() for p in full_model.parameters())
    assert n_params == OFFICIAL_PARAMS
    sd = full_model.state_dict()
    assert tuple(sd["Conv2d_1a_3x3.conv.weight"].shape) == (32, 1, 3, 3)
    assert tuple(sd["fc.weight"].shape) == (309, 2048)
    assert tuple(sd["AuxLogits.fc.weight"].shape) == (309, 768)
    assert full_model.Conv2d_1a_3x3.bn.eps == pytest.approx(1e-3)
    assert len(sd) == 580 and not any(k.startswith("norm_") for k in sd)


def test_full_size_matches_the_official_checkpoint_manifest(full_model, reference_dir):
    manifest = json.loads((reference_dir / "checkpoint_keys" / "melception.json").read_text())
    sd = full_model.state_dict()
    assert list(sd) == list(manifest["keys"])  # same names in the same order
    assert {k: list(v.shape) for k, v in sd.items()} == manifest["keys"]
    assert sum(p.numel() for p in full_model.parameters()) == manifest["params"]
    assert {k for k, v in sd.items() if v.dtype == torch.int64} == set(manifest["non_float32"])
    buffers = {name for name, _ in full_model.named_buffers() if name in sd}
    assert buffers == set(manifest["buffers"])


def test_full_size_spatial_path_on_a_real_mel_shape(full_model):
    # the reference's comments: stem [B, 192, 35, 419] -> ... -> Mixed_7c [B, 2048, 8, 104]
    full_model.eval()
    seen = {}

    def record(module, inputs, output) -> None:  # returns None: the output stays unchanged
        seen["stem"] = output.shape

    hook = full_model.Conv2d_4a_3x3.register_forward_hook(record)
    with torch.no_grad():
        maps, aux = full_model.trunk(full_model.standardize(torch.rand(1, 80, 848)))
    hook.remove()
    assert tuple(seen["stem"]) == (1, 192, 35, 419)
    assert tuple(maps.shape) == (1, 2048, 8, 104) and aux is None


def _tiny(num_classes: int = 5, **kw) -> Melception:
    torch.manual_seed(0)
    return Melception(PRESETS["tiny"].model.replace(num_classes=num_classes, **kw))


def test_outputs_and_unbiased_logits():
    model = _tiny().eval()
    mel = torch.rand(3, 80, 848)
    with torch.no_grad():
        out = model(mel)
    d = model.cfg.feature_dim
    assert set(out) == {"features", "logits_unbiased", "logits"}
    assert out["features"].shape == (3, d) and out["logits"].shape == (3, 5)
    torch.testing.assert_close(out["logits_unbiased"], out["features"] @ model.fc.weight.T)
    torch.testing.assert_close(out["logits"], out["logits_unbiased"] + model.fc.bias)
    torch.testing.assert_close(out["logits"], model.fc(out["features"]))
    model.train()
    train_out = model(mel)
    assert train_out["aux_logits"].shape == (3, 5)


def test_standardisation_uses_the_config_statistics_and_survives_a_checkpoint(tmp_path):
    mean = tuple(float(v) for v in np.linspace(0.2, 0.6, 80))
    std = tuple(float(v) for v in np.linspace(0.05, 0.2, 80))
    model = _tiny(norm_mean=mean, norm_std=std).eval()
    mel = torch.rand(2, 80, 848)
    expected = (mel - torch.tensor(mean)[None, :, None]) / torch.tensor(std)[None, :, None]
    torch.testing.assert_close(model.standardize(mel)[:, 0], expected)
    cfg = MelceptionConfig(model=model.cfg)
    path = save_checkpoint(tmp_path / "m.ckpt", stage="melception", config=cfg.to_dict(), state_dict=model.state_dict())
    loaded, loaded_cfg, _ = load_model(path, "melception")
    assert loaded_cfg.model.norm_mean == mean
    with torch.no_grad():
        torch.testing.assert_close(loaded(mel)["logits"], model(mel)["logits"])


def test_official_vggsound_statistics_fit_the_config(reference_dir):
    stats = np.loadtxt(reference_dir / "train_means_stds_melspec_10s_22050hz.txt")
    assert stats.shape == (80, 2)
    cfg = MelceptionModelConfig(num_classes=309, norm_mean=tuple(stats[:, 0]), norm_std=tuple(stats[:, 1]))
    assert cfg.has_norm and all(0 <= m <= 1 for m in cfg.norm_mean)


def test_config_errors_are_user_errors():
    with pytest.raises(ConfigError):
        MelceptionModelConfig(norm_mean=(0.5,) * 3, norm_std=(0.1,) * 3)
    with pytest.raises(ConfigError):
        MelceptionModelConfig(norm_mean=(0.5,) * 80, norm_std=(0.0,) * 80)
    with pytest.raises(ConfigError, match="num_classes"):
        Melception(MelceptionModelConfig(num_classes=0))
    assert MelceptionModelConfig().feature_dim == 2048


def _metrics(outs: dict[str, np.ndarray], ids: list[str]) -> list[float]:
    real = {k: v[:8] for k, v in outs.items()}
    fake = {k: v[6:] for k, v in outs.items()}
    return [fid(real["features"], fake["features"]),
            *kid(real["features"], fake["features"], subsets=5, subset_size=6),
            *inception_score(fake["logits_unbiased"], splits=2),
            mean_kl(real["logits"], ids[:8], fake["logits"], ids[6:])[0]]


@pytest.mark.parametrize("kind", [pytest.param("melception", marks=pytest.mark.slow), "vggishish"])  # melception: > 10 s
def test_outputs_and_metrics_do_not_depend_on_the_batch_size(kind):
    torch.manual_seed(1)
    if kind == "melception":
        model = _tiny(num_classes=6)
    else:
        model = VGGishish(VGGishishModelConfig(conv_layers=TINY_LAYERS, num_classes=6, hidden=64))
    model.train()  # extract() must switch to eval mode itself
    mels = [torch.rand(80, 848) for _ in range(14)]
    ids = [f"c{i % 8}" for i in range(14)]
    one = extract(model, batched(mels, 1))
    seven = extract(model, batched(mels, 7))
    assert model.training  # restored
    for key in one:
        np.testing.assert_allclose(one[key], seven[key], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_metrics(one, ids), _metrics(seven, ids), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        direct = classifier_outputs(model.eval(), torch.stack(mels[:2]))
    np.testing.assert_allclose(direct["logits"].double().numpy(), one["logits"][:2], rtol=1e-5, atol=1e-5)
