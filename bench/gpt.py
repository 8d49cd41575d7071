"""GPT sampling speed at paper size (24 layers x 1024, 16 heads, vocab 1024, 212-frame 2048-d condition).

With the KV cache each new token runs the network on one position; without it (the reference's loop) every
token re-runs the whole sequence, 212 condition frames included. The no-cache run is bounded to its first
NO_CACHE_TOKENS tokens; the full-clip figure is extrapolated assuming cost proportional to the positions fed
(the matmuls dominate; attention's quadratic part is small at these lengths).

Then the same with `--quantize int8` (loading/quantize.py), `--samples 10` vs 1 (whole `sample` calls), and
the cost of one sliding-window step of a long video (condition + 260 codes prefilled, 5 new codes drawn),
which is what every code column beyond the first 53 (9.85 s) costs.
"""

from __future__ import annotations

import time

import torch

from vgs_cli.config.transformer import GPTConfig
from vgs_cli.models.gpt import GPT
from vgs_cli.models.sampling import sample, sample_next

CACHED_TOKENS = 64
NO_CACHE_TOKENS = 20


def _cached(model: GPT, feats: torch.Tensor, gen: torch.Generator) -> tuple[float, float]:
    """(prefill seconds, steady-state seconds per token) for one sequence."""
    cache = model.new_cache(1)
    t0 = time.perf_counter()
    logits = model(torch.zeros(1, 0, dtype=torch.long), feats, kv_cache=cache)[:, -1]
    tok = sample_next(logits, generator=gen)
    t1 = time.perf_counter()
    for _ in range(CACHED_TOKENS):
        logits = model(tok[:, None], kv_cache=cache)[:, -1]
        tok = sample_next(logits, generator=gen)
    t2 = time.perf_counter()
    return t1 - t0, (t2 - t1) / CACHED_TOKENS


def _single_thread_step(model: GPT, feats: torch.Tensor, gen: torch.Generator) -> float:
    """Steady-state seconds per cached token with one thread. One-token steps are many tiny ops; on a
    machine whose other cores are busy every multi-threaded op waits for a descheduled worker (measured on
    the shared 2-core box: GELU of 4096 values 8 ms with 2 threads, 8 us with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _cached(model, feats, gen)[1]
    finally:
        torch.set_num_threads(threads)


def _weight_gb(model: GPT) -> float:
    """GB of Linear weights one cached token step reads (the condition embedder is not used by it)."""
    return sum(m.weight.numel() * m.weight.element_size() for m in model.modules()
               if isinstance(m, torch.nn.Linear)) / 1e9


def _clip_seconds(model: GPT, feats: torch.Tensor, gen: torch.Generator, samples: int) -> float:
    """Wall seconds of one whole `sample` call: 265 tokens for each of `samples` rows of one condition."""
    t0 = time.perf_counter()
    sample(model, feats, num_samples=samples, top_k=64, generator=gen)
    return time.perf_counter() - t0


def _slide_seconds(model: GPT, feats: torch.Tensor, gen: torch.Generator, stride: int = 1) -> float:
    """One step of the sliding window of a long video: the condition + 265 - 5 x stride known codes
    prefilled, 5 x stride drawn (`--window-stride`; the paper: 1, i.e. 260 known, 5 drawn)."""
    known = model.cfg.num_tokens - model.cfg.grid[0] * stride
    prefix = torch.randint(0, model.cfg.vocab_size, (1, known), generator=gen)
    t0 = time.perf_counter()
    sample(model, feats, prefix=prefix, generator=gen)
    return time.perf_counter() - t0


def _mid_clip_step(model: GPT, feats: torch.Tensor, rows: int, steps: int = 8) -> tuple[float, float]:
    """(seconds per cached step, seconds of it in the Linear layers) for `rows` samples of one condition,
    half-way through a clip (condition + 132 codes in the cache), from torch's profiler (CPU self time)."""
    from torch.profiler import profile

    cache = model.new_cache(1)
    model(torch.zeros(1, 0, dtype=torch.long), feats, kv_cache=cache)
    cache = cache.share(rows)
    model(torch.zeros(rows, 132, dtype=torch.long), kv_cache=cache)
    tok = torch.zeros(rows, 1, dtype=torch.long)
    saved = cache.length
    t0 = time.perf_counter()
    for _ in range(steps):
        model(tok, kv_cache=cache)
        cache.length = saved  # the same position every time: every step costs the same
    wall = (time.perf_counter() - t0) / steps
    with profile() as prof:
        for _ in range(steps):
            model(tok, kv_cache=cache)
            cache.length = saved
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    linear = sum(e.self_cpu_time_total for e in events if "linear" in e.key or e.key == "aten::addmm")
    return wall, wall * linear / max(total, 1)


def _int8_rows(model: GPT, feats: torch.Tensor, gen: torch.Generator, fp32_clip: float, ref_clip: float,
               fp32_step: float) -> list[tuple[str, float, str]]:
    from vgs_cli.loading.quantize import quantize_gpt

    column_s = model.cfg.mel_frames_per_column * 256 / 22050  # audio seconds per code column (0.186 s)
    q = quantize_gpt(model, "int8")
    prefill_s, step_s = _cached(q, feats, gen)
    clip = prefill_s + (model.cfg.num_tokens - 1) * step_s
    one, ten = _clip_seconds(q, feats, gen, 1), _clip_seconds(q, feats, gen, 10)
    (step1, lin1), (step10, lin10) = _mid_clip_step(q, feats, 1), _mid_clip_step(q, feats, 10)
    slide_fp32, slide_int8 = _slide_seconds(model, feats, gen), _slide_seconds(q, feats, gen)
    slide_int8_8 = _slide_seconds(q, feats, gen, stride=8)
    return [
        ("int8 cached: tokens/s (steady state)", 1.0 / step_s, "tok/s"),
        ("int8 cached: one 265-token clip (prefill + measured rate)", clip, "s"),
        ("int8 vs fp32 cached, per token", fp32_step / step_s, "x"),
        ("int8 vs fp32 cached, per clip", fp32_clip / clip, "x"),
        ("int8 cached vs the reference way (no cache, fp32), per clip", ref_clip / clip, "x"),
        ("int8: `--samples 1`, one whole clip (sample(), top-k 64)", one, "s"),
        ("int8: `--samples 10`, one whole clip", ten, "s"),
        ("`--samples 10` / `--samples 1` time (target < 2)", ten / one, "x"),
        ("int8 mid-clip step, 1 row: total / in the Linear layers (ms)", 1e3 * step1, f"/ {1e3 * lin1:.1f} ms"),
        ("int8 mid-clip step, 10 rows of one condition: total / in the Linear layers (ms)", 1e3 * step10,
         f"/ {1e3 * lin10:.1f} ms"),
        ("long video, fp32: one window slide (condition + 260 codes prefilled, 5 drawn)", slide_fp32, "s"),
        ("long video, int8: one window slide", slide_int8, "s"),
        ("long video, fp32: seconds per extra second of audio (1 column = 0.186 s)", slide_fp32 / column_s, "s/s"),
        ("long video, int8: seconds per extra second of audio", slide_int8 / column_s, "s/s"),
        ("long video, int8: a 30-s video's 108 extra columns beyond the 53 of the first window", 108 * slide_int8,
         "s"),
        ("long video, int8, --window-stride 8: seconds per extra second of audio", slide_int8_8 / (8 * column_s),
         "s/s"),
    ]


def rows() -> list[tuple[str, float, str]]:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=1024, feat_frames=212, feat_dim=2048, condition="feats")
    model = GPT(cfg).eval()
    feats = torch.randn(1, cfg.feat_frames, cfg.feat_dim)
    gen = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    with torch.inference_mode():
        prefill_s, step_s = _cached(model, feats, gen)
        t0 = time.perf_counter()
        sample(model, feats, num_tokens=NO_CACHE_TOKENS, use_cache=False, generator=gen)
        nocache_total = time.perf_counter() - t0
        one_thread_step_s = _single_thread_step(model, feats, gen)
    n, c = cfg.num_tokens, cfg.cond_len
    nocache_tok_s = NO_CACHE_TOKENS / nocache_total
    # positions fed by the no-cache loop: token i runs on the condition + i tokens
    per_position = nocache_total / sum(c + i for i in range(NO_CACHE_TOKENS))
    nocache_clip = per_position * sum(c + i for i in range(n))
    cached_clip = prefill_s + (n - 1) * step_s
    with torch.inference_mode():
        int8 = _int8_rows(model, feats, gen, cached_clip, nocache_clip, step_s)
    return [
        ("paper GPT parameters", float(sum(p.numel() for p in model.parameters())), "params"),
        ("cached: prefill of the 212-frame condition", prefill_s, "s"),
        (f"cached: tokens/s (steady state, {CACHED_TOKENS} tokens, {threads} threads)", 1.0 / step_s, "tok/s"),
        (f"cached: tokens/s (steady state, {CACHED_TOKENS} tokens, 1 thread)", 1.0 / one_thread_step_s, "tok/s"),
        (f"no cache: tokens/s (first {NO_CACHE_TOKENS} tokens, {threads} threads)", nocache_tok_s, "tok/s"),
        (f"cache speed-up per token (first {NO_CACHE_TOKENS} positions)", (1.0 / step_s) / nocache_tok_s, "x"),
        ("cached: one 265-token clip (prefill + measured rate)", cached_clip, "s"),
        (f"no cache: one 265-token clip (extrapolated from {NO_CACHE_TOKENS} tokens)", nocache_clip, "s"),
        ("cache speed-up for a whole clip (extrapolated)", nocache_clip / cached_clip, "x"),
        ("fp32 weights read per token / measured rate: GB/s of weight bandwidth", _weight_gb(model) / step_s,
         "GB/s"),
    ] + int8


if __name__ == "__main__":
    for row in rows():
        print(*row, sep="\t")
