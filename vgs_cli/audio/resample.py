"""torchaudio's `functional.resample` (sinc_interp_hann, lowpass width 6, rolloff 0.99), written out.

av-benchmark resamples every clip with torchaudio before PaSST / PANNs / VGGish; torchaudio's compiled part does
not load beside this torch, and the metric numbers depend on the exact filter, so the same arithmetic lives here
(torchaudio 2.x `_get_sinc_resample_kernel` + `_apply_sinc_resample_kernel`, BSD licence).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def sinc_kernel(orig_freq: int, new_freq: int, lowpass_filter_width: int = 6, rolloff: float = 0.99,
                dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, int]:
    """The polyphase kernel `[new/g, 1, 2*width + orig/g]` and its half-width (g = gcd of the rates)."""
    gcd = math.gcd(int(orig_freq), int(new_freq))
    orig, new = int(orig_freq) // gcd, int(new_freq) // gcd
    base = min(orig, new) * rolloff
    width = math.ceil(lowpass_filter_width * orig / base)
    idx = torch.arange(-width, width + orig, dtype=dtype)[None, None] / orig
    t = torch.arange(0, -new, -1, dtype=dtype)[:, None, None] / new + idx
    t *= base
    t = t.clamp_(-lowpass_filter_width, lowpass_filter_width)
    window = torch.cos(t * math.pi / lowpass_filter_width / 2) ** 2
    t *= math.pi
    kernels = torch.where(t == 0, torch.tensor(1.0).to(t), t.sin() / t)
    kernels *= window * (base / orig)
    return kernels, width


def resample(wave: torch.Tensor, orig_freq: int, new_freq: int) -> torch.Tensor:
    """`Tensor[..., T]` at `orig_freq` -> `Tensor[..., ceil(T * new / orig)]` at `new_freq` (torchaudio's result)."""
    if orig_freq <= 0 or new_freq <= 0:
        raise ValueError("sample rates must be positive")
    if orig_freq == new_freq:
        return wave
    gcd = math.gcd(int(orig_freq), int(new_freq))
    orig, new = int(orig_freq) // gcd, int(new_freq) // gcd
    kernel, width = sinc_kernel(orig_freq, new_freq, dtype=wave.dtype)
    shape = wave.shape
    x = wave.reshape(-1, shape[-1])
    n, length = x.shape
    x = F.pad(x, (width, width + orig))
    out = F.conv1d(x[:, None], kernel.to(x.device), stride=orig).transpose(1, 2).reshape(n, -1)
    target = int(math.ceil(new * length / orig))
    return out[..., :target].reshape(*shape[:-1], -1)
