"""The GPT: official parameter names/counts, token order, causality and the KV cache."""

from __future__ import annotations

import json

import pytest
import torch

from vgs_cli.config.transformer import PRESETS, GPTConfig
from vgs_cli.errors import ConfigError
from vgs_cli.models.gpt import GPT, column_weights, from_sequence, to_sequence

CONDITIONS = ["feats", "class", "feats+class", "none"]


def tiny_cfg(condition: str = "feats", **kw) -> GPTConfig:
    base = dict(vocab_size=17, n_layer=2, n_head=2, n_embd=32, feat_frames=3, feat_dim=6, num_classes=4,
                grid=(2, 5), condition=condition)
    base.update(kw)
    return GPTConfig(**base)


def make_cond(cfg: GPTConfig, b: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(b, cfg.feat_frames, cfg.feat_dim, generator=g) if cfg.uses_feats else None
    cls = torch.randint(cfg.num_classes, (b,), generator=g) if cfg.uses_class else None
    return feats, cls


def paper_gpt(**kw) -> GPT:
    with torch.device("meta"):  # shapes only: building 300M parameters for real is slow and pointless here
        return GPT(GPTConfig(**kw))


def n_params(model: GPT) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("kw, expected", [
    (dict(vocab_size=128), 305_160_192),
    (dict(vocab_size=1024), 306_995_200),
    (dict(vocab_size=128, feat_frames=1), 304_944_128),
    (dict(vocab_size=128, feat_frames=5), 304_948_224),
    (dict(vocab_size=128, condition="class", num_classes=8), 302_854_144),
    (dict(vocab_size=128, condition="feats+class", num_classes=8), 305_169_408),
    (dict(vocab_size=1024, condition="class", num_classes=309), 304_997_376),
    (dict(vocab_size=1024, condition="feats+class", num_classes=309), 307_312_640),
    (dict(vocab_size=1024, condition="none"), 306_779_136),  # the "No Feats" runs share the 1-frame layout
])
def test_paper_size_parameter_counts(kw, expected):
    assert n_params(paper_gpt(**kw)) == expected


def test_block_sizes_match_official_files():
    assert GPTConfig(feat_frames=212).block_size == 477
    assert GPTConfig(feat_frames=5).block_size == 270
    assert GPTConfig(feat_frames=1).block_size == 266
    assert GPTConfig(condition="class").block_size == 266
    assert GPTConfig(condition="feats+class", feat_frames=212).block_size == 478
    assert GPTConfig().num_tokens == 265


def _manifest_config(name: str, manifest: dict) -> GPTConfig:
    keys = {k[len("transformer."):]: v for k, v in manifest["keys"].items() if k.startswith("transformer.")}
    vocab = keys["tok_emb.weight"][0]
    block = keys["pos_emb"][1]
    if "cls_embedder.weight" in keys:
        return GPTConfig(vocab_size=vocab, condition="feats+class", num_classes=keys["cls_embedder.weight"][0],
                         feat_frames=block - 266, feat_dim=keys["feat_embedder.weight"][1])
    if len(keys["embedder.weight"]) == 2:
        return GPTConfig(vocab_size=vocab, condition="class", num_classes=keys["embedder.weight"][0])
    return GPTConfig(vocab_size=vocab, feat_frames=block - 265, feat_dim=keys["embedder.weight"][1])


@pytest.mark.reference
def test_state_dict_matches_every_official_manifest(reference_dir):
    files = sorted((reference_dir / "checkpoint_keys").glob("transformer_*.json"))
    assert len(files) == 10
    for path in files:
        manifest = json.loads(path.read_text())
        official = {k[len("transformer."):]: tuple(v) for k, v in manifest["keys"].items()
                    if k.startswith("transformer.") and not k.endswith(".attn.mask")}
        model = paper_gpt(**_manifest_config(path.name, manifest).to_dict())
        ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        assert ours == official, path.name
        assert n_params(model) == manifest["params"], path.name


def test_no_persistent_mask_buffer():
    assert not any("mask" in k for k in GPT(tiny_cfg()).state_dict())


def test_sequence_order_is_time_major():
    grid = torch.arange(5 * 53).reshape(1, 5, 53)  # raster index r = h*53 + w
    seq = to_sequence(grid)[0]
    # official forward_shuffle_idx: position p = w*5 + h holds raster token h*53 + w
    assert seq[:7].tolist() == [0, 53, 106, 159, 212, 1, 54]
    for p in (0, 4, 5, 133, 264):
        w, h = divmod(p, 5)
        assert seq[p].item() == h * 53 + w
    assert torch.equal(from_sequence(seq[None], (5, 53)), grid)


def test_init_statistics():
    torch.manual_seed(0)
    model = GPT(tiny_cfg(n_embd=64))
    assert torch.count_nonzero(model.pos_emb) == 0
    std = model.blocks[0].mlp[0].weight.std().item()
    assert 0.017 < std < 0.023
    assert torch.count_nonzero(model.blocks[0].attn.key.bias) == 0
    assert model.head.bias is None


@pytest.mark.parametrize("condition", CONDITIONS)
def test_forward_shape_and_condition_matters(condition):
    torch.manual_seed(0)
    cfg = tiny_cfg(condition)
    model = GPT(cfg).eval()
    idx = torch.randint(cfg.vocab_size, (3, cfg.num_tokens - 1))
    feats, cls = make_cond(cfg, 3)
    logits = model(idx, feats, cls)
    assert logits.shape == (3, cfg.num_tokens, cfg.vocab_size)
    if condition != "none":
        feats2, cls2 = make_cond(cfg, 3, seed=1)
        cls2 = None if cls2 is None else (cls + 1) % cfg.num_classes
        assert not torch.allclose(model(idx, feats2, cls2)[:, 0], logits[:, 0])


@pytest.mark.parametrize("condition", CONDITIONS)
def test_causality(condition):
    torch.manual_seed(1)
    cfg = tiny_cfg(condition)
    model = GPT(cfg).eval()
    feats, cls = make_cond(cfg, 2)
    idx = torch.randint(cfg.vocab_size, (2, cfg.num_tokens - 1))
    base = model(idx, feats, cls)
    for j in (0, 4, cfg.num_tokens - 2):
        changed = idx.clone()
        changed[:, j] = (changed[:, j] + 1) % cfg.vocab_size
        out = model(changed, feats, cls)
        # row i predicts token i from tokens < i: rows 0..j cannot see token j, row j+1 does
        torch.testing.assert_close(out[:, : j + 1], base[:, : j + 1], rtol=0, atol=1e-6)
        assert not torch.allclose(out[:, j + 1], base[:, j + 1])


@pytest.mark.parametrize("condition", CONDITIONS)
def test_kv_cache_matches_full_recomputation_at_every_step(condition):
    torch.manual_seed(2)
    cfg = tiny_cfg(condition, grid=(3, 5))
    model = GPT(cfg).eval()
    feats, cls = make_cond(cfg, 2)
    seq = torch.randint(cfg.vocab_size, (2, cfg.num_tokens))
    with torch.no_grad():
        cache = model.new_cache(2)
        prefix = 4
        logits = model(seq[:, :prefix], feats, cls, kv_cache=cache)  # prefill condition + 4 tokens
        torch.testing.assert_close(logits, model(seq[:, :prefix], feats, cls), rtol=0, atol=1e-5)
        for t in range(prefix, cfg.num_tokens - 1):
            step = model(seq[:, t:t + 1], kv_cache=cache)[:, -1]
            full = model(seq[:, :t + 1], feats, cls)[:, -1]
            torch.testing.assert_close(step, full, rtol=0, atol=1e-5)
        assert cache.length == cfg.cond_len + cfg.num_tokens - 1


def test_kv_cache_multi_token_append():
    torch.manual_seed(3)
    cfg = tiny_cfg("feats")
    model = GPT(cfg).eval()
    feats, _ = make_cond(cfg, 2)
    seq = torch.randint(cfg.vocab_size, (2, 8))
    with torch.no_grad():
        cache = model.new_cache(2)
        model(seq[:, :2], feats, kv_cache=cache)
        chunk = model(seq[:, 2:6], kv_cache=cache)  # 4 new positions after a filled cache
        full = model(seq[:, :6], feats)
    torch.testing.assert_close(chunk, full[:, 3:], rtol=0, atol=1e-5)


def test_bad_inputs_are_reported():
    cfg = tiny_cfg("feats")
    model = GPT(cfg)
    with pytest.raises(ValueError, match="cond_feats"):
        model(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, cfg.feat_frames + 1, cfg.feat_dim))
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, cfg.num_tokens + 1, dtype=torch.long), torch.zeros(1, cfg.feat_frames, cfg.feat_dim))
    with pytest.raises(ConfigError):
        GPTConfig(n_embd=30, n_head=4)


def test_presets_round_trip():
    for name, cfg in PRESETS.items():
        assert type(cfg).from_dict(cfg.to_dict()) == cfg, name
    assert PRESETS["vas"].model.vocab_size == 128 and PRESETS["vggsound"].model.vocab_size == 1024


# ------------------------------------------------------------------ sync: time-aligned features (not in the paper)
def sync_gpt(condition: str = "feats", seed: int = 0, **kw) -> GPT:
    """A sync model whose gate is open (it starts closed at zero, which would make every test below pass
    trivially)."""
    torch.manual_seed(seed)
    model = GPT(tiny_cfg(condition, sync=True, **kw)).eval()
    with torch.no_grad():
        model.sync_gate.normal_()
    return model


def test_column_weights_share_each_column_among_its_frames():
    w = column_weights(212, 53)
    assert w.shape == (53, 212)
    torch.testing.assert_close(w.sum(1), torch.ones(53))
    assert torch.equal(w[1].nonzero().flatten(), torch.tensor([4, 5, 6, 7])) and w[1, 4] == 0.25
    w5 = column_weights(5, 53)
    assert torch.equal(w5[:10], torch.tensor([[1.0, 0, 0, 0, 0]]).expand(10, 5))
    torch.testing.assert_close(w5[10], torch.tensor([0.6, 0.4, 0, 0, 0]))  # column 10 spans frames 0 and 1
    assert torch.equal(column_weights(1, 53), torch.ones(53, 1))


def test_sync_needs_features_and_is_off_in_the_paper_presets():
    for condition in ("class", "none"):
        with pytest.raises(ConfigError, match="sync"):
            tiny_cfg(condition, sync=True)
    assert not any(cfg.model.sync for cfg in PRESETS.values())


def test_sync_starts_as_the_plain_model():
    """The gate starts at zero: same weights -> same logits as the paper's layout at step 0."""
    torch.manual_seed(4)
    sync = GPT(tiny_cfg(sync=True)).eval()
    plain = GPT(tiny_cfg()).eval()
    plain.load_state_dict({k: v for k, v in sync.state_dict().items() if not k.startswith("sync_")})
    feats, _ = make_cond(plain.cfg, 2)
    idx = torch.randint(17, (2, 6))
    torch.testing.assert_close(sync(idx, feats), plain(idx, feats), rtol=0, atol=0)


def test_sync_puts_a_columns_frames_on_the_tokens_that_predict_it():
    """Through the sync path, the frames of time column 4 (frames 8-9 of 10; tokens 8 and 9 of a 2 x 5
    grid) reach exactly the inputs that predict that column's tokens: input 7 (-> token 8), input 8
    (-> token 9), and input 9, which predicts nothing and is clamped to the last column."""
    model = sync_gpt(grid=(2, 5), feat_frames=10)
    feats, _ = make_cond(model.cfg, 2)
    idx = torch.randint(17, (2, model.cfg.num_tokens - 1))
    base = model.embed_sync(feats)
    changed = feats.clone()
    changed[:, 8:] += 1.0  # frames 8-9 = time column 4 = tokens 8, 9, predicted by input tokens 7, 8
    moved = (model.embed_sync(changed) - base).abs().amax(-1) > 0  # [B, num_tokens]: which inputs changed
    assert moved[0].nonzero().flatten().tolist() == [7, 8, 9]  # 9 = the last token, clamped to the last column
    assert not torch.allclose(model(idx, changed), model(idx, feats))


def test_sync_kv_cache_and_causality():
    model = sync_gpt("feats+class", seed=5, grid=(3, 5))
    cfg = model.cfg
    feats, cls = make_cond(cfg, 2)
    seq = torch.randint(cfg.vocab_size, (2, cfg.num_tokens))
    with torch.no_grad():
        cache = model.new_cache(2)
        model(seq[:, :3], feats, cls, kv_cache=cache)
        for t in range(3, cfg.num_tokens - 1):
            step = model(seq[:, t:t + 1], kv_cache=cache)[:, -1]
            torch.testing.assert_close(step, model(seq[:, :t + 1], feats, cls)[:, -1], rtol=0, atol=1e-5)
        base = model(seq[:, :-1], feats, cls)
        changed = seq[:, :-1].clone()
        changed[:, 6] = (changed[:, 6] + 1) % cfg.vocab_size
        out = model(changed, feats, cls)
    torch.testing.assert_close(out[:, :7], base[:, :7], rtol=0, atol=1e-6)
    assert not torch.allclose(out[:, 7], base[:, 7])


def test_a_meta_build_skips_initialisation_and_a_cpu_build_keeps_it():
    """Loading builds the GPT on the meta device: no init there (nn.Embedding's normal_ on meta imported
    torch._dynamo, ~1.1 s of every `vgs generate`; checked in a fresh interpreter, where nothing else has
    imported it). On the CPU the init is the usual one: the same seed gives the same N(0, 0.02) weights."""
    import subprocess
    import sys

    code = ("import sys, torch\nfrom vgs_cli.config.transformer import GPTConfig\nfrom vgs_cli.models.gpt import GPT\n"
            "with torch.device('meta'):\n    m = GPT(GPTConfig(vocab_size=17, n_layer=1, n_head=2, n_embd=32, "
            "feat_frames=3, feat_dim=6, num_classes=4, grid=(2, 5), condition='feats+class'))\n"
            "assert m.tok_emb.weight.is_meta and m.cls_embedder.weight.is_meta\n"
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
    cfg = tiny_cfg("feats+class", n_embd=64)
    torch.manual_seed(0)
    a = GPT(cfg)
    torch.manual_seed(0)
    b = GPT(cfg)
    for name, t in a.state_dict().items():
        assert torch.equal(t, b.state_dict()[name]), name
    w = a.tok_emb.weight
    assert abs(w.std().item() - 0.02) < 0.003 and abs(w.mean().item()) < 0.003
