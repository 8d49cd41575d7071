"""Audio features of the av-benchmark networks (PaSST, PANNs Cnn14 16 kHz, VGGish), per file, cached.

Preprocessing as av-benchmark's audio dataset: mean over channels, subtract the clip's mean (DC) at its native
rate, resample (torchaudio's sinc filter, `audio/resample.py`), truncate to `audio_length` seconds (shorter
audio is not padded here). Then per network:
- PaSST (32 kHz): padded or trimmed to exactly 10 s -> `float32[527 + 768]` (logits, then the embedding);
- PANNs (16 kHz): `float32[527 + 2048]` (logits, then the 2048-d embedding after its ReLU);
- VGGish (16 kHz): torchvggish's log-mel examples (0.96-s frames) -> `float32[n_frames, 128]` (no final ReLU).
Clips of equal length run in batches (eval mode: each row depends on its own clip only); results are cached in
`FeatureCache` per file content, network, settings and weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from vgs_cli.audio.resample import resample
from vgs_cli.errors import DataError
from vgs_cli.metrics.feature_cache import FeatureCache, settings_tag

FEATURE_VERSION = 1  # bump when the preprocessing changes: old cache entries are then never read
PASST_SAMPLES = 320000  # 10 s at 32 kHz: PaSST's fixed input
N_CLASSES = 527
EMBED_DIMS = {"passt": 768, "panns": 2048, "vggish": 128}


@dataclass(frozen=True)
class AudioSource:
    """One clip to score: a file, or a waveform already in memory (a shard's clip)."""
    name: str  # display / ordering name (file name, or the clip id)
    path: Path | None = None
    wave: np.ndarray | None = None  # float32 [T] or [T, C]
    sample_rate: int | None = None


def read_audio(src: AudioSource) -> tuple[torch.Tensor, int]:
    """(`float32[C, T]`, rate) as torchaudio.load gives it (float in [-1, 1])."""
    if src.wave is not None:
        w = np.asarray(src.wave, dtype=np.float32)
        return torch.from_numpy(np.atleast_2d(w if w.ndim == 1 else w.T).copy()), int(src.sample_rate)
    import soundfile as sf

    try:
        data, sr = sf.read(str(src.path), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile's error types
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise DataError(f"cannot read audio file {src.path}: {first}") from None
    return torch.from_numpy(data.T.copy()), int(sr)


def prepare(src: AudioSource, sample_rate: int, audio_length: float | None) -> torch.Tensor:
    """av-benchmark's preprocessing: `float32[T']` mono, DC removed at the native rate, resampled, truncated."""
    wave, sr = read_audio(src)
    x = wave.mean(dim=0)
    x = x - x.mean()
    x = resample(x, sr, sample_rate)
    if audio_length is not None:
        x = x[: int(sample_rate * audio_length)]
    if x.numel() == 0:
        raise DataError(f"{src.path or src.name}: no audio samples")
    return x


def pad_or_trim(x: torch.Tensor, n: int) -> torch.Tensor:
    return x[:n] if x.numel() >= n else torch.nn.functional.pad(x, (0, n - x.numel()))


def vggish_examples(x: torch.Tensor, name: str) -> torch.Tensor:
    """torchvggish's `waveform_to_examples` at 16 kHz: `float32[T]` -> `float32[n, 1, 96, 64]`."""
    from vgs_cli.loading.metric_nets import require_vggish

    _, vggish_input = require_vggish()
    if x.numel() < 15600:  # 0.975 s: one 96-frame example (25-ms window, 10-ms hop)
        raise DataError(f"{name}: {x.numel() / 16000:.2f} s of audio, VGGish needs at least 0.975 s")
    ex = vggish_input.waveform_to_examples(x.numpy(), 16000, return_tensor=False)
    return torch.from_numpy(np.asarray(ex, dtype=np.float32))[:, None]


@torch.no_grad()
def _forward(net, batch: list[torch.Tensor], device) -> list[np.ndarray]:
    """One batch of prepared inputs -> one feature array per clip (see the module docstring)."""
    name = net.name
    if name == "vggish":
        sizes = [b.shape[0] for b in batch]
        out = net.module(torch.cat(batch).to(device)).float().cpu().numpy()
        return list(np.split(out, np.cumsum(sizes)[:-1]))
    logits, emb = net.module(torch.stack(batch).to(device))
    return list(torch.cat([logits, emb], dim=1).float().cpu().numpy())


def features(net, sources: Sequence[AudioSource], *, audio_length: float | None, batch_size: int, device,
             use_cache: bool = True, progress: Callable[[int], None] | None = None) -> list[np.ndarray]:
    """The cached-or-computed feature array of each source, in order (see the module docstring)."""
    tag = f"{net.name}-v{FEATURE_VERSION}-" + settings_tag(len=audio_length)
    cache = FeatureCache(tag, net.sha256, enabled=use_cache)
    results: list[np.ndarray | None] = [None] * len(sources)
    pending: list[tuple[int, torch.Tensor]] = []

    def flush():
        # equal-length inputs share a batch; anything else runs alone (so no padding changes a result)
        groups: dict[tuple, list[tuple[int, torch.Tensor]]] = {}
        for i, t in pending:
            groups.setdefault(tuple(t.shape), []).append((i, t))
        for members in groups.values():
            outs = _forward(net, [t for _, t in members], device)
            for (i, _), out in zip(members, outs, strict=True):
                results[i] = out
                _store(cache, sources[i], out)
        if progress is not None and pending:
            progress(len(pending))
        pending.clear()

    for i, src in enumerate(sources):
        hit = _lookup(cache, src)
        if hit is not None:
            results[i] = hit
            if progress is not None:
                progress(1)
            continue
        x = prepare(src, net.sample_rate, audio_length)
        if net.name == "passt":
            x = pad_or_trim(x, PASST_SAMPLES)
        elif net.name == "vggish":
            x = vggish_examples(x, str(src.path or src.name))
        pending.append((i, x))
        if len(pending) >= batch_size:
            flush()
    flush()
    return [r for r in results if r is not None]


def _lookup(cache: FeatureCache, src: AudioSource) -> np.ndarray | None:
    return cache.get(src.path) if src.path is not None else cache.get(digest=_digest(src))


def _store(cache: FeatureCache, src: AudioSource, value: np.ndarray) -> None:
    if src.path is not None:
        cache.put(src.path, value)
    else:
        cache.put(None, value, digest=_digest(src))


def _digest(src: AudioSource) -> str:
    import hashlib

    arr = np.ascontiguousarray(src.wave)
    head = f"{arr.dtype.str}{arr.shape}{src.sample_rate}".encode()
    return hashlib.sha256(head + arr.tobytes()).hexdigest()


def split_outputs(name: str, rows: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Per-clip arrays -> {"logits": float64[N, 527], "embedding": float64[N, D]} (PaSST, PANNs) or
    {"frames": float64[sum n_i, 128]} (VGGish: every frame of every clip, pooled)."""
    if name == "vggish":
        return {"frames": np.concatenate([np.asarray(r, dtype=np.float64) for r in rows])}
    arr = np.stack(rows).astype(np.float64)
    return {"logits": arr[:, :N_CLASSES], "embedding": arr[:, N_CLASSES:]}
