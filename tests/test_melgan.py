"""MelGAN generator / discriminator: sizes, official layout, weight-norm semantics, folding, configs."""

from __future__ import annotations

import json

import pytest
import torch

from vgs_cli.config.vocoder import PRESETS, DiscriminatorConfig, MelGANConfig, VocoderConfig
from vgs_cli.errors import ConfigError
from vgs_cli.models.melgan import (
    Generator,
    MultiScaleDiscriminator,
    fold_weight_norm,
    official_to_parametrized,
    parametrized_to_official,
)

TINY = PRESETS["tiny"]


def _n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_full_size_parameter_counts_match_the_official_files():
    assert _n_params(Generator(MelGANConfig())) == 4_266_050
    assert _n_params(MultiScaleDiscriminator(DiscriminatorConfig())) == 16_924_086


@pytest.mark.parametrize("frames", [4, 7, 32])  # reflection padding of 3 needs >= 4 frames
def test_output_length_is_frames_times_hop(frames):
    torch.manual_seed(0)
    g = Generator(TINY.model)
    out = g(torch.rand(2, 80, frames))
    assert out.shape == (2, 1, frames * 256)
    assert out.abs().max() < 1.0  # tanh


def test_full_size_generator_is_finite_on_silent_and_saturated_mels():
    torch.manual_seed(0)
    g = fold_weight_norm(Generator(MelGANConfig())).eval()
    with torch.no_grad():
        for mel in (torch.zeros(1, 80, 20), torch.ones(1, 80, 20)):
            out = g(mel)
            assert out.shape == (1, 1, 20 * 256)
            assert torch.isfinite(out).all()
            assert out.abs().max() <= 1.0


def test_fold_weight_norm_keeps_the_output_and_gives_plain_weights():
    torch.manual_seed(0)
    g = Generator(TINY.model).eval()
    mel = torch.rand(1, 80, 12)
    with torch.no_grad():
        before = g(mel)
        fold_weight_norm(g)
        after = g(mel)
    torch.testing.assert_close(after, before, atol=1e-6, rtol=1e-5)
    keys = list(g.state_dict())
    assert not any("parametrizations" in k for k in keys)
    assert "model.1.weight" in keys and "model.3.weight" in keys


def test_official_weight_g_v_semantics_including_transposed_convs():
    """Effective weight = g * v / ||v|| with the norm over all axes but 0 (the *input* axis for ConvTranspose)."""
    torch.manual_seed(0)
    g = Generator(TINY.model)
    official = parametrized_to_official(g.state_dict())
    assert "model.3.weight_g" in official and "model.3.weight_v" in official
    c_in = TINY.model.first_channels
    assert official["model.3.weight_g"].shape == (c_in, 1, 1)  # ConvTranspose1d: [in, 1, 1]
    # Put arbitrary official-style values in, then compare the folded weights with the formula.
    gen = torch.Generator().manual_seed(1)
    new = {k: torch.rand(v.shape, generator=gen) + 0.5 if k.endswith("weight_g") else torch.randn(v.shape, generator=gen)
           for k, v in official.items()}
    g.load_state_dict(official_to_parametrized(new), strict=True)
    folded = fold_weight_norm(g).state_dict()
    for conv in ("model.1", "model.3", "model.4.block.2"):
        v, gain = new[f"{conv}.weight_v"], new[f"{conv}.weight_g"]
        expect = gain * v / v.norm(dim=(1, 2), keepdim=True)
        torch.testing.assert_close(folded[f"{conv}.weight"], expect, atol=1e-6, rtol=1e-5)


def test_key_renaming_round_trips():
    d = MultiScaleDiscriminator(TINY.disc)
    sd = d.state_dict()
    official = parametrized_to_official(sd)
    assert not any("parametrizations" in k for k in official)
    assert official_to_parametrized(official).keys() == sd.keys()


@pytest.mark.reference
@pytest.mark.parametrize("name,model", [("melgan_generator", lambda: Generator(MelGANConfig())),
                                        ("melgan_discriminator", lambda: MultiScaleDiscriminator(DiscriminatorConfig()))])
def test_layout_matches_the_official_manifest(reference_dir, name, model):
    manifest = json.loads((reference_dir / "checkpoint_keys" / f"{name}.json").read_text())
    m = model()
    ours = {k: list(v.shape) for k, v in parametrized_to_official(m.state_dict()).items()}
    assert list(ours) == list(manifest["keys"])  # same names in the same order
    assert ours == manifest["keys"]
    assert _n_params(m) == manifest["params"]
    # An official-format state_dict (from the manifest) loads strictly after renaming.
    fake = {k: torch.zeros(shape) for k, shape in manifest["keys"].items()}
    m.load_state_dict(official_to_parametrized(fake), strict=True)


def test_discriminator_scales_and_layer_outputs():
    torch.manual_seed(0)
    cfg = TINY.disc
    d = MultiScaleDiscriminator(cfg)
    outs = d(torch.randn(2, 1, 4096))
    assert len(outs) == cfg.num_d
    for k, scale in enumerate(outs):
        assert len(scale) == cfg.n_layers + 3  # layer_0, strided layers, layer_{n+1}, logits
        assert [f.shape[1] for f in scale[:-1]] == list(cfg.channels)
        samples = 4096 // 2**k  # average pooling halves the input per scale
        assert scale[0].shape[-1] == samples
        assert scale[-1].shape == (2, 1, samples // cfg.downsampling_factor**cfg.n_layers)


def test_config_rejects_bad_values_and_round_trips():
    with pytest.raises(ConfigError, match="hop"):
        MelGANConfig(ratios=(8, 8, 2))
    with pytest.raises(ConfigError, match="segment_samples"):
        VocoderConfig(segment_samples=8000)
    with pytest.raises(ConfigError, match="unknown key"):
        VocoderConfig.from_dict({"model": {"ngf": 8, "nfg": 3}})
    for cfg in PRESETS.values():
        assert VocoderConfig.from_dict(cfg.to_dict()) == cfg
    assert PRESETS["vggsound"].model == MelGANConfig()
    assert PRESETS["vggsound"].mel_l1_weight == 0.0 and PRESETS["vas"].mel_l1_weight == 0.0
    assert PRESETS["vggsound"].segment_frames == 32
    assert MelGANConfig().dilations == (1, 3, 9)
