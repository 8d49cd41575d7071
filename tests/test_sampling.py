"""Sampling: logit filters on hand-made distributions, determinism, the cache-free path, overfitting
round trips (each class -> its memorised sequence) and sliding-window sampling past the model's window."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from vgs_cli.config.transformer import GPTConfig
from vgs_cli.models.gpt import GPT
from vgs_cli.models.sampling import (
    filter_logits,
    sample,
    sample_long,
    sample_next,
    top_k_filter,
    top_p_filter,
)

PROBS = torch.tensor([[0.05, 0.5, 0.15, 0.3]])  # sorted: 0.5 (1), 0.3 (3), 0.15 (2), 0.05 (0)
LOGITS = PROBS.log()


def kept(logits: torch.Tensor) -> list[int]:
    return torch.isfinite(logits[0]).nonzero().flatten().tolist()


def test_top_k_keeps_k_largest():
    assert kept(top_k_filter(LOGITS, 1)) == [1]
    assert kept(top_k_filter(LOGITS, 2)) == [1, 3]
    assert kept(top_k_filter(LOGITS, 3)) == [1, 2, 3]
    assert kept(top_k_filter(LOGITS, None)) == [0, 1, 2, 3]
    torch.testing.assert_close(top_k_filter(LOGITS, 2)[0, [1, 3]], LOGITS[0, [1, 3]])


def test_top_p_keeps_smallest_set_reaching_p():
    assert kept(top_p_filter(LOGITS, 0.4)) == [1]  # 0.5 alone reaches 0.4
    assert kept(top_p_filter(LOGITS, 0.7)) == [1, 3]  # 0.5 + 0.3
    assert kept(top_p_filter(LOGITS, 0.85)) == [1, 2, 3]  # 0.95 needed to pass 0.85
    assert kept(top_p_filter(LOGITS, 0.99)) == [0, 1, 2, 3]
    assert kept(top_p_filter(LOGITS, 0.0)) == [1]  # the top token always survives
    batch = torch.cat([LOGITS, LOGITS.flip(-1)])  # rows filtered independently
    out = top_p_filter(batch, 0.7)
    assert torch.isfinite(out[1]).nonzero().flatten().tolist() == [0, 2]


def test_temperature_and_greedy():
    torch.testing.assert_close(filter_logits(LOGITS, temperature=2.0), LOGITS / 2)
    sharp = torch.softmax(filter_logits(LOGITS, temperature=0.1), -1)
    assert sharp[0, 1] > 0.99
    assert sample_next(LOGITS, greedy=True).tolist() == [1]
    with pytest.raises(ValueError, match="temperature"):
        filter_logits(LOGITS, temperature=0.0)


def test_sample_next_follows_the_filtered_distribution():
    g = torch.Generator().manual_seed(0)
    draws = sample_next(LOGITS.expand(20000, 4), top_k=2, generator=g)
    freq = torch.bincount(draws, minlength=4).float() / draws.numel()
    assert freq[0] == 0 and freq[2] == 0
    assert abs(freq[1].item() - 0.5 / 0.8) < 0.02  # renormalised over the 2 kept tokens


def _model(condition: str = "feats", **kw) -> GPT:
    base = dict(vocab_size=11, n_layer=2, n_head=2, n_embd=32, feat_frames=2, feat_dim=4, num_classes=3,
                grid=(2, 4), condition=condition)
    base.update(kw)
    torch.manual_seed(0)
    return GPT(GPTConfig(**base))


def test_sampling_deterministic_for_seed_and_diverse_across_samples():
    model = _model()
    feats = torch.randn(2, 2, 4)
    run = lambda seed: sample(model, feats, num_samples=5, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    a, b, c = run(0), run(0), run(1)
    assert a.shape == (10, 8) and a.dtype == torch.long
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert len({tuple(r) for r in a[:5].tolist()}) > 1  # the 5 samples of one condition differ
    assert model.training  # mode restored


def test_cache_and_full_recomputation_give_the_same_samples():
    model = _model("feats+class")
    feats, cls = torch.randn(2, 2, 4), torch.tensor([0, 2])
    kw = dict(num_samples=3, top_k=5, temperature=0.9)
    fast = sample(model, feats, cls, generator=torch.Generator().manual_seed(3), **kw)
    slow = sample(model, feats, cls, generator=torch.Generator().manual_seed(3), use_cache=False, **kw)
    assert torch.equal(fast, slow)


def test_cached_sampling_under_bf16_autocast():
    model = _model("feats").eval()
    feats, seq = torch.randn(2, 2, 4), torch.randint(11, (2, 8))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert sample(model, feats, num_samples=2, greedy=True).shape == (4, 8)
        cache = model.new_cache(2, dtype=torch.bfloat16)
        model(seq[:, :1], feats, kv_cache=cache)
        steps = torch.stack([model(seq[:, t:t + 1], kv_cache=cache)[:, -1] for t in range(1, 7)], 1)
        full = model(seq[:, :7], feats)[:, 2:]
    assert cache.k[0].dtype == torch.bfloat16
    scale = full.float().abs().max()
    torch.testing.assert_close(steps.float(), full.float(), rtol=0, atol=0.05 * float(scale))


@pytest.mark.parametrize("sync", [False, True])
def test_a_shared_condition_cache_gives_the_uncached_logits(sync):
    """`KVCache.share(n)`: n samples read ONE copy of their condition's keys/values. Logits after a
    per-sample prefix (several positions in one pass, causal among them) and after single steps equal the
    uncached forward of each row with its condition repeated."""
    model, n = _model("feats", sync=sync).eval(), 3
    feats, seq = torch.randn(2, 2, 4), torch.randint(11, (6, 8))
    with torch.no_grad():
        cache = model.new_cache(2)
        model(seq.new_empty(2, 0), feats, kv_cache=cache)
        cache = cache.share(n)
        assert cache.shared_k[0].shape[0] == 2 and cache.k[0].shape[0] == 6 and cache.shared == 2
        prefix = model(seq[:, :3], kv_cache=cache)  # predicts tokens 1..3
        steps = torch.stack([model(seq[:, t:t + 1], kv_cache=cache)[:, -1] for t in range(3, 7)], 1)
        full = model(seq[:, :7], feats.repeat_interleave(n, dim=0))  # [6, 8, V]: row i predicts token i
    torch.testing.assert_close(prefix, full[:, 1:4], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(steps, full[:, 4:8], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="already shared"):
        cache.share(2)


def test_prefix_is_kept_and_continued():
    model = _model("none")
    prefix = torch.tensor([[1, 2, 3]])
    out = sample(model, prefix=prefix, num_samples=2, greedy=True)
    assert out.shape == (2, 8) and torch.equal(out[:, :3], prefix.expand(2, 3))
    assert torch.equal(out[0], out[1])  # greedy: identical rows


def _fit(model: GPT, seqs: torch.Tensor, cond: dict, steps: int, lr: float = 3e-3) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    for _ in range(steps):
        logits = model(seqs[:, :-1], **cond)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), seqs.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.item()


@pytest.mark.slow  # ~20 s on 2 cores (an overfitting run)
def test_overfit_each_class_to_its_sequence():
    """A tiny GPT memorises 4 full-length (265-token) sequences, one per class; greedy sampling
    from each class gives back exactly its sequence."""
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=16, n_layer=2, n_head=2, n_embd=64, condition="class", num_classes=4)
    model = GPT(cfg)
    seqs = torch.randint(cfg.vocab_size, (4, cfg.num_tokens), generator=torch.Generator().manual_seed(1))
    classes = torch.arange(4)
    loss = _fit(model, seqs, {"cond_class": classes}, steps=150, lr=1e-2)
    assert loss < 0.05, loss  # from ln(16) = 2.77
    out = sample(model, cond_class=classes, greedy=True)
    assert torch.equal(out, seqs)


@pytest.mark.slow  # > 10 s on 2 cores (trains a model to follow)
def test_sliding_window_continues_a_pattern_past_the_window():
    """Train on 'each column = previous column + 1 (mod V)' sequences, then sample 3x the window: the
    pattern must continue across window slides, so every slide gets the right prefix and positions."""
    torch.manual_seed(0)
    v, (h, w) = 13, (2, 6)
    cfg = GPTConfig(vocab_size=v, n_layer=2, n_head=2, n_embd=48, condition="none", grid=(h, w), feat_dim=4)
    model = GPT(cfg)
    offsets = torch.randint(v, (64, h), generator=torch.Generator().manual_seed(2))
    cols = torch.arange(w)[None, :, None]
    seqs = ((offsets[:, None, :] + cols) % v).reshape(64, w * h)  # time-major: column by column
    loss = _fit(model, seqs, {}, steps=250, lr=1e-2)
    assert loss < 0.25 * math.log(v), loss  # only the first column is unpredictable
    starts = []

    def cond(start):
        starts.append(start)
        return None, None

    steps = 3 * w
    out = sample_long(model, cond, steps, num_samples=2, greedy=False, top_k=1,
                      generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, steps * h)
    grid = out.reshape(2, steps, h)
    diffs = (grid[:, 1:] - grid[:, :-1]) % v
    assert (diffs == 1).all(), grid
    assert starts == [0] + list(range(1, steps - w + 1))
    strided = sample_long(model, lambda s: (None, None), steps + 1, step_stride=4, greedy=True)
    assert strided.shape == (1, (steps + 1) * h)
    assert ((strided.reshape(1, -1, h).diff(dim=1) % v) == 1).all()


def _window(feats, start_step, feat_frames, grid=(5, 53)):
    """The condition generation cuts for the code window starting at column `start_step`."""
    from vgs_cli.data.condition import condition_frames
    from vgs_cli.generate.engine import condition_start

    cfg = GPTConfig(grid=grid, feat_frames=feat_frames)
    return condition_frames(feats, feat_frames, cfg.feat_window, condition_start(cfg, start_step))


def test_condition_window_cuts_and_resamples_like_the_reference():
    feats = torch.arange(300, dtype=torch.float32)[None, :, None].expand(1, 300, 2)
    win = _window(feats, start_step=3, feat_frames=212)
    assert win.shape == (1, 212, 2) and win[0, 0, 0] == 1 + 4 * 3 and win[0, -1, 0] == 1 + 12 + 211
    five = _window(feats, 0, 5)  # ResampleFrames(5) on 212 frames: [0, 42, 84, 127, 169] + 35
    assert five[0, :, 0].tolist() == [1 + i for i in (35, 77, 119, 162, 204)]
    one = _window(feats, 0, 1)
    assert one[0, :, 0].tolist() == [1 + 106]
    tail = _window(feats, start_step=40, feat_frames=212)  # frames 161.. run out at 300: zeros
    assert tail[0, 300 - 161:].abs().sum() == 0 and tail[0, 300 - 162, 0] == 299
    # a codebook downsampling time 8x: 106 columns of 2 video frames, the same 212-frame window
    eight = _window(feats, start_step=3, feat_frames=212, grid=(10, 106))
    assert eight[0, 0, 0] == 1 + 2 * 3 and eight[0, -1, 0] == 1 + 6 + 211


def test_condition_window_at_start_matches_the_training_dataset():
    from vgs_cli.data.dataset import sample_feats

    clip = torch.randn(215, 3)
    for frames in (1, 5, 212):
        expected = torch.from_numpy(sample_feats(clip.numpy(), frames))
        torch.testing.assert_close(_window(clip[None], 0, frames)[0], expected)
        np.testing.assert_array_equal(_window(clip.numpy(), 0, frames), expected.numpy())  # numpy path too
