"""Sampling codes from the GPT: logit filters (temperature, top-k, top-p, greedy) and the decoding loops.

`sample` draws one 10 s clip of codes (265 tokens) per condition row, N rows per condition, using the KV
cache (or, with `use_cache=False`, recomputing the whole sequence for every token as the reference did).
`sample_long` draws clips longer than the model's window by sliding it one time column at a time.

All randomness goes through the `torch.Generator` passed in, so a seed fixes the result.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from vgs_cli.models.gpt import GPT

CondWindow = tuple["Tensor | None", "Tensor | None"]


def top_k_filter(logits: Tensor, k: int | None) -> Tensor:
    """Keep the k largest logits per row (ties with the k-th are kept, as the reference); others -> -inf.

    `logits`: `Tensor[..., V]`."""
    if k is None or k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: Tensor, p: float | None) -> Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens whose probability reaches `p`.

    A token is dropped when the probability mass of the tokens ranked above it already reaches `p`; the most
    likely token is always kept. `logits`: `Tensor[..., V]`."""
    if p is None or p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs
    drop_sorted = mass_before >= p
    drop_sorted[..., 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def filter_logits(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> Tensor:
    """Temperature, then top-k, then top-p. `Tensor[B, V]` -> `Tensor[B, V]` (float32)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature} (use greedy=True for argmax)")
    logits = logits.float() / temperature
    return top_p_filter(top_k_filter(logits, top_k), top_p)


def sample_next(logits: Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                greedy: bool = False, generator: torch.Generator | None = None) -> Tensor:
    """One token per row: `Tensor[B, V]` logits -> `Tensor[B]` int64."""
    if greedy:
        return logits.argmax(dim=-1)
    probs = torch.softmax(filter_logits(logits, temperature, top_k, top_p), dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _repeat(x: Tensor | None, n: int) -> Tensor | None:
    return None if x is None else x.repeat_interleave(n, dim=0)


def _first(x: Tensor | None, rows: int, device: torch.device) -> Tensor | None:
    return None if x is None else x[:rows].to(device)


def _autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype attention runs in under an active autocast (so the KV cache is stored in it), else None."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return None


def _batch_size(cond_feats: Tensor | None, cond_class: Tensor | None, prefix: Tensor | None) -> int:
    for x in (cond_feats, cond_class, prefix):
        if x is not None:
            return x.shape[0]
    return 1


@torch.no_grad()
def sample(model: GPT, cond_feats: Tensor | None = None, cond_class: Tensor | None = None, *,
           num_samples: int = 1, num_tokens: int | None = None, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, greedy: bool = False,
           generator: torch.Generator | None = None, use_cache: bool = True,
           prefix: Tensor | None = None) -> Tensor:
    """Sample code sequences (GPT order; `models.gpt.from_sequence` turns them into grids).

    `cond_feats`: `Tensor[B, F, D]`, `cond_class`: `Tensor[B]` (as the model's condition needs; neither
    for "none"); `prefix`: optional `Tensor[B, P]` of given first tokens, or `Tensor[B*N, P]` (one per
    sample, with a condition). Each condition row is repeated `num_samples` times (rows `b*N .. b*N+N-1`).
    Returns `Tensor[B*N, num_tokens]` int64 including the prefix; `num_tokens` defaults to the model's 265.
    The model is put in eval mode and restored after.

    With the cache, the condition is run through the network once per distinct condition row and its keys
    and values are shared by the N samples (`KVCache.share`: at paper size the 212-frame condition costs as
    much as 10-15 single-token steps per row, and copies of its keys would be read N times per token); the
    prefix follows in one pass per sample.
    """
    total = model.cfg.num_tokens if num_tokens is None else num_tokens
    p = 0 if prefix is None else prefix.shape[1]
    if not p <= total <= model.cfg.num_tokens:
        raise ValueError(f"need prefix length {p} <= num_tokens {total} <= {model.cfg.num_tokens}")
    conditioned = cond_feats is not None or cond_class is not None
    batch = _batch_size(cond_feats, cond_class, prefix) * num_samples
    device = model.pos_emb.device
    feats = cls = None
    if not use_cache:  # the uncached loop runs every row in full
        feats = None if cond_feats is None else _repeat(cond_feats, num_samples).to(device)
        cls = None if cond_class is None else _repeat(cond_class, num_samples).to(device)
    seq = torch.empty(batch, total, dtype=torch.long, device=device)
    if prefix is not None:
        seq[:, :p] = (prefix if prefix.shape[0] == batch else _repeat(prefix, num_samples)).to(device)
    if p == total:
        return seq
    was_training = model.training
    model.eval()
    try:
        cache = None
        if use_cache:  # prefill: the condition once per distinct row, then the prefix (if any) per sample
            distinct = batch // num_samples if conditioned else 1  # "none": one condition for all rows
            cache = model.new_cache(distinct, dtype=_autocast_dtype(device))
            empty = seq.new_empty(distinct, 0)
            logits = model(empty, _first(cond_feats, distinct, device), _first(cond_class, distinct, device),
                           kv_cache=cache)[:, -1]
            cache = cache.share(batch // distinct)
            logits = logits.repeat_interleave(batch // distinct, dim=0)
        for i in range(p, total):
            if cache is None:  # the reference's way: the whole sequence again for every token
                logits = model(seq[:, :i], feats, cls)[:, -1]
            elif i == p:
                if p:
                    logits = model(seq[:, :p], kv_cache=cache)[:, -1]
            else:
                logits = model(seq[:, i - 1:i], kv_cache=cache)[:, -1]
            seq[:, i] = sample_next(logits, temperature, top_k, top_p, greedy, generator)
    finally:
        model.train(was_training)
    return seq


@torch.no_grad()
def sample_long(model: GPT, cond_for_window: Callable[[int], CondWindow], num_steps: int, *,
                num_samples: int = 1, step_stride: int = 1, **sample_kwargs) -> Tensor:
    """Sample `num_steps` time columns, more than the model's window of W = grid[1] columns.

    The first window is sampled whole (condition `cond_for_window(0)`). After that the window slides
    `step_stride` columns at a time (the paper: 1, so the last 53*5-5 tokens condition the next 5): window
    start s = end - W, prefix = the codes of columns s .. end - stride - 1, condition = `cond_for_window(s)`
    (`(feats [B, F, D] | None, class [B] | None)` describing the video seen by columns s .. s+W-1; see
    `data.condition.condition_frames`). Condition tensors are for the B distinct inputs; `num_samples` is applied here.
    `sample_kwargs` go to `sample` (temperature, top_k, top_p, greedy, generator, use_cache).
    Returns `Tensor[B*N, num_steps * H]` int64 in GPT (time-major) order.
    """
    h, w = model.cfg.grid
    if num_steps <= w:
        feats, cls = cond_for_window(0)
        return sample(model, feats, cls, num_samples=num_samples, num_tokens=num_steps * h, **sample_kwargs)
    if not 1 <= step_stride < w:
        raise ValueError(f"step_stride must be in [1, {w - 1}], got {step_stride}")
    feats, cls = cond_for_window(0)
    seq = sample(model, feats, cls, num_samples=num_samples, **sample_kwargs)
    end = w
    while end < num_steps:
        stride = min(step_stride, num_steps - end)
        start = end + stride - w
        feats, cls = cond_for_window(start)
        prefix = seq[:, start * h:end * h]
        # the prefix already has B*N rows (one per sample); the condition is prefilled once per row of B
        n = num_samples if (feats is not None or cls is not None) else 1  # "none": the prefix has every row
        window = sample(model, feats, cls, num_samples=n, prefix=prefix, **sample_kwargs)
        seq = torch.cat([seq, window[:, prefix.shape[1]:]], dim=1)
        end += stride
    return seq
