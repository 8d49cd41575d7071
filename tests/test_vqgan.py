"""The codebook model: official names/sizes, shapes at several widths, quantiser maths, codebook health."""

from __future__ import annotations

import json
import math

import pytest
import torch

from vgs_cli.config.base import apply_overrides
from vgs_cli.config.codebook import PRESETS, CodebookConfig, VQGANConfig
from vgs_cli.errors import ConfigError
from vgs_cli.models.quantize import VectorQuantizer, code_counts, perplexity, usage_stats
from vgs_cli.models.vqgan import VQGAN

TINY = VQGANConfig(ch=16, z_channels=32, embed_dim=32, n_embed=64, norm_groups=8)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("preset,total", [("vas", 71_907_713), ("vggsound", 72_137_089)])
def test_paper_size_parameter_counts(preset, total):
    model = VQGAN(PRESETS[preset].model)
    assert _count(model.encoder) == 29_295_872  # the paper's 29.30M
    assert _count(model.decoder) == 42_447_489  # 42.45M
    assert _count(model) == total
    assert PRESETS[preset].model.grid == (5, 53)
    assert PRESETS[preset].model.num_tokens == 265
    assert PRESETS[preset].model.downsample == 16


@pytest.mark.parametrize("preset", ["vas", "vggsound"])
def test_state_dict_matches_official_manifest(reference_dir, preset):
    manifest = json.loads((reference_dir / "checkpoint_keys" / f"codebook_{preset}.json").read_text())
    official = {k: v for k, v in manifest["keys"].items() if not k.startswith("loss.")}
    ours = {k: list(v.shape) for k, v in VQGAN(PRESETS[preset].model).state_dict().items()}
    assert ours == official
    assert list(ours) == list(official)  # same order too
    assert sum(math.prod(s) for s in ours.values()) == manifest["params"]


@pytest.mark.parametrize("width", [848, 128, 1024])
def test_shapes_at_several_widths(width):
    torch.manual_seed(0)
    model = VQGAN(TINY).eval()
    x = torch.rand(2, 1, 80, width) * 2 - 1
    with torch.no_grad():
        zq, idx, terms = model.encode(x)
        xrec, qloss, info = model(x)
        dec = model.decode_indices(idx)
    assert zq.shape == (2, 32, 5, width // 16)
    assert idx.shape == (2, 5, width // 16) and idx.dtype == torch.int64
    assert 0 <= int(idx.min()) and int(idx.max()) < 64
    assert xrec.shape == dec.shape == x.shape
    assert torch.equal(xrec, dec)  # decoding the indices is the forward pass
    assert torch.equal(info["indices"], idx)
    assert qloss.dim() == 0 and set(terms) == {"loss", "codebook", "commitment"}


def test_bad_width_is_rejected():
    with pytest.raises(ValueError, match="multiple of 16"):
        VQGAN(TINY)(torch.zeros(1, 1, 80, 100))


def test_quantizer_output_is_lookup_of_its_indices_and_nearest():
    torch.manual_seed(0)
    vq = VectorQuantizer(16, 8)
    z = torch.randn(3, 8, 5, 7)
    zq, terms, idx = vq(z)
    assert torch.equal(zq, vq.lookup(idx))
    # brute force nearest neighbour
    flat = z.permute(0, 2, 3, 1).reshape(-1, 8)
    brute = torch.cdist(flat, vq.embedding.weight).argmin(1).view(3, 5, 7)
    assert torch.equal(idx, brute)
    mse = torch.mean((vq.lookup(idx) - z) ** 2)
    assert torch.allclose(terms["codebook"], mse) and torch.allclose(terms["commitment"], mse)
    assert torch.allclose(terms["loss"], mse * (1 + 0.25))


def test_beta_placement_moves_the_right_gradients():
    torch.manual_seed(0)
    for beta_on, enc_scale, code_scale in [("codebook", 1.0, 0.25), ("commitment", 0.25, 1.0)]:
        vq = VectorQuantizer(4, 3, beta=0.25, beta_on=beta_on)
        z = torch.randn(1, 3, 2, 2, requires_grad=True)
        zq, terms, idx = vq(z)
        terms["loss"].backward()
        diff = (z.detach() - vq.lookup(idx)) / z.numel()
        assert torch.allclose(z.grad, 2 * enc_scale * diff, atol=1e-6)  # encoder side (commitment)
        used = vq.embedding.weight.grad.abs().sum(1) > 0
        assert used.sum() == idx.unique().numel()
        # codebook side: d/de of scale*mean((e - z)^2), summed over the positions using e
        e_grad = torch.zeros_like(vq.embedding.weight)
        e_grad.index_add_(0, idx.flatten(), -2 * code_scale * diff.permute(0, 2, 3, 1).reshape(-1, 3))
        assert torch.allclose(vq.embedding.weight.grad, e_grad, atol=1e-6)


def test_straight_through_gradient_reaches_the_encoder():
    torch.manual_seed(0)
    model = VQGAN(TINY)
    x = torch.rand(1, 1, 80, 64) * 2 - 1
    xrec, qloss, _ = model(x)
    (xrec - x).abs().mean().backward()  # reconstruction only: no quantiser loss in the graph
    enc_grad = model.encoder.conv_in.weight.grad
    assert enc_grad is not None and enc_grad.abs().sum() > 0
    assert model.quantize.embedding.weight.grad is None or model.quantize.embedding.weight.grad.abs().sum() == 0


def test_usage_statistics_and_restart():
    counts = code_counts(torch.tensor([[0, 0, 1, 3]]), 4)
    assert counts.tolist() == [2, 1, 0, 1]
    p = torch.tensor([0.5, 0.25, 0.25])
    assert perplexity(counts) == pytest.approx(math.exp(-(p * p.log()).sum().item()))
    assert perplexity(torch.ones(8, dtype=torch.long)) == pytest.approx(8.0)
    stats = usage_stats(counts)
    assert stats["dead_codes"] == 1 and stats["usage"] == 0.75
    vq = VectorQuantizer(4, 2)
    samples = torch.tensor([[5.0, 6.0]])
    assert vq.restart(counts == 0, samples) == 1
    assert torch.equal(vq.embedding.weight[2], samples[0])
    assert int(vq.nearest(samples)[0]) == 2


def test_config_derived_sizes_and_strictness():
    cfg = PRESETS["tiny"]
    assert cfg.model.grid == (5, 53) and cfg.model.attn_levels == (4,)
    assert CodebookConfig.from_dict(cfg.to_dict()) == cfg
    assert VQGANConfig(n_embed=1024).bits_per_token == 10.0
    with pytest.raises(ConfigError, match="divisible"):
        VQGANConfig(ch_mult=(1, 1, 2, 2, 4, 4))  # 80 mel bins cannot be halved 5 times
    with pytest.raises(ConfigError, match="norm_groups"):
        VQGANConfig(ch=16)
    with pytest.raises(ConfigError):
        apply_overrides(cfg, ["model.nope=1"])
