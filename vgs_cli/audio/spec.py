"""The paper's mel spectrogram, its inverse, and the crops models see. The only definition in vgs.

Forward chain (SpecVQGAN's `extract_mel_spectrogram.py`, librosa 0.8 semantics):
    wav (22050 Hz mono, zero-padded/trimmed to 220500) -> |STFT| (n_fft 1024, hop 256, periodic Hann 1024,
    centred, reflect padding) -> Slaney mel basis (80 bins, 125-7600 Hz) -> clamp(min 1e-5) -> 20*log10
    -> -20 dB -> +100 -> /100 -> clip to [0, 1] -> first 860 frames.
The torch implementation computes in float64 so that it matches librosa on every bin within 1e-4.
Models see a centre (or random) crop of 848 frames scaled to [-1, 1].
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from vgs_cli.config.spec import SPEC, SpecConfig


def pad_or_trim(wav: np.ndarray | torch.Tensor, length: int) -> np.ndarray | torch.Tensor:
    """Zero-pad or trim the last axis to `length` samples: `[..., S] -> [..., length]`."""
    n = wav.shape[-1]
    if n >= length:
        return wav[..., :length]
    if isinstance(wav, torch.Tensor):
        return torch.nn.functional.pad(wav, (0, length - n))
    pad = [(0, 0)] * (wav.ndim - 1) + [(0, length - n)]
    return np.pad(wav, pad)


@functools.lru_cache(maxsize=4)
def mel_basis(cfg: SpecConfig = SPEC) -> np.ndarray:
    """Slaney-normalised mel filterbank, `float64[n_mels, n_fft//2 + 1]` (librosa.filters.mel defaults)."""
    import librosa

    return librosa.filters.mel(
        sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax, dtype=np.float64
    )


@functools.lru_cache(maxsize=4)
def _mel_basis_t(cfg: SpecConfig = SPEC) -> torch.Tensor:
    return torch.from_numpy(mel_basis(cfg))


@functools.lru_cache(maxsize=4)
def _mel_pinv_t(cfg: SpecConfig = SPEC) -> torch.Tensor:
    return torch.from_numpy(np.linalg.pinv(mel_basis(cfg)))


def num_frames(num_samples: int, cfg: SpecConfig = SPEC) -> int:
    """Frames of a centred STFT over `num_samples` samples."""
    return 1 + num_samples // cfg.hop_length


def stft_magnitude(wav: torch.Tensor, cfg: SpecConfig = SPEC) -> torch.Tensor:
    """`Tensor[..., S] -> Tensor[..., n_fft//2+1, 1 + S//hop]` float64 magnitudes (librosa 0.8 `abs(stft)`)."""
    lead = wav.shape[:-1]
    x = wav.reshape(-1, wav.shape[-1]).to(torch.float64)
    window = torch.hann_window(cfg.win_length, periodic=True, dtype=torch.float64, device=x.device)
    spec = torch.stft(
        x, cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length, window=window,
        center=True, pad_mode=cfg.pad_mode, return_complex=True,
    )
    return spec.abs().reshape(*lead, spec.shape[-2], spec.shape[-1])


def magnitude_to_unit(mel: torch.Tensor, cfg: SpecConfig = SPEC) -> torch.Tensor:
    """Mel magnitudes -> the paper's [0, 1] log scale."""
    db = 20.0 * torch.log10(torch.clamp(mel, min=cfg.amin)) - cfg.ref_db
    return torch.clamp((db - cfg.min_db) / -cfg.min_db, 0.0, 1.0)


def unit_to_magnitude(x: torch.Tensor, cfg: SpecConfig = SPEC) -> torch.Tensor:
    """Inverse of `magnitude_to_unit` (exact except where the clip saturated)."""
    db = x.to(torch.float64) * -cfg.min_db + cfg.min_db + cfg.ref_db
    return torch.pow(10.0, db / 20.0)


def mel_spectrogram(wav: torch.Tensor | np.ndarray, cfg: SpecConfig = SPEC) -> torch.Tensor:
    """Mel on the [0, 1] scale for any length: `Tensor[..., S] -> float32 Tensor[..., 80, 1 + S//256]`."""
    wav_t = torch.as_tensor(wav)
    mag = stft_magnitude(wav_t, cfg)
    basis = _mel_basis_t(cfg).to(mag.device)
    mel = torch.matmul(basis, mag)
    return magnitude_to_unit(mel, cfg).to(torch.float32)


def clip_mel(wav: torch.Tensor | np.ndarray, cfg: SpecConfig = SPEC) -> torch.Tensor:
    """The stored dataset mel: pad/trim to 10 s, mel, keep the first 860 frames. `[..., S] -> [..., 80, 860]`."""
    wav_t = pad_or_trim(torch.as_tensor(wav), cfg.num_samples)
    return mel_spectrogram(wav_t, cfg)[..., : cfg.stored_frames]


def mel_spectrogram_librosa(wav: np.ndarray, cfg: SpecConfig = SPEC) -> np.ndarray:
    """The same chain with librosa (reference for tests and benchmarks): `float[S] -> float32[80, frames]`."""
    import librosa

    stft = librosa.stft(
        np.asarray(wav, dtype=np.float64), n_fft=cfg.n_fft, hop_length=cfg.hop_length,
        win_length=cfg.win_length, window="hann", center=True, pad_mode=cfg.pad_mode,
    )
    mel = mel_basis(cfg) @ np.abs(stft)
    x = 20.0 * np.log10(np.maximum(mel, cfg.amin)) - cfg.ref_db
    return np.clip((x - cfg.min_db) / -cfg.min_db, 0.0, 1.0).astype(np.float32)


def crop_frames(mel: torch.Tensor, n: int = SPEC.model_frames, mode: str = "center",
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Crop the time axis: `Tensor[..., F, T] -> Tensor[..., F, n]` (centre, or uniformly random start)."""
    t = mel.shape[-1]
    if t < n:
        raise ValueError(f"cannot crop {t} frames to {n}")
    if mode == "center":
        start = (t - n) // 2
    elif mode == "random":
        start = int(torch.randint(0, t - n + 1, (1,), generator=generator))
    else:
        raise ValueError(f"unknown crop mode {mode!r}")
    return mel[..., start : start + n]


def to_model_range(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1] (what the codebook and classifiers' inputs use)."""
    return x * 2.0 - 1.0


def from_model_range(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped."""
    return torch.clamp((x + 1.0) / 2.0, 0.0, 1.0)


def mel_to_linear(x: torch.Tensor, cfg: SpecConfig = SPEC, n_iter: int = 30) -> torch.Tensor:
    """[0, 1] mel -> non-negative linear magnitudes: `Tensor[..., 80, T] -> float64 Tensor[..., 513, T]`.

    Starts from the pseudo-inverse and refines with projected gradient steps on ||M s - m||^2, s >= 0
    (what librosa's NNLS does, but batched in torch).
    """
    mel = unit_to_magnitude(x, cfg)
    basis = _mel_basis_t(cfg).to(mel.device)
    s = torch.clamp(torch.matmul(_mel_pinv_t(cfg).to(mel.device), mel), min=0.0)
    step = 1.0 / float(torch.linalg.matrix_norm(basis, ord=2) ** 2)
    for _ in range(n_iter):
        grad = torch.matmul(basis.T, torch.matmul(basis, s) - mel)
        s = torch.clamp(s - step * grad, min=0.0)
    return s


def griffin_lim(mag: torch.Tensor, cfg: SpecConfig = SPEC, n_iter: int = 32, momentum: float = 0.99,
                length: int | None = None, seed: int = 0) -> torch.Tensor:
    """Fast Griffin-Lim: `Tensor[..., 513, T]` magnitudes -> `float32 Tensor[..., S]` waveform."""
    lead = mag.shape[:-2]
    mag = mag.reshape(-1, *mag.shape[-2:]).to(torch.float64)
    window = torch.hann_window(cfg.win_length, periodic=True, dtype=torch.float64, device=mag.device)
    frames_len = (mag.shape[-1] - 1) * cfg.hop_length  # what the frames describe; `length` pads/trims it
    kw = dict(n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length, window=window, center=True)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    phase = torch.exp(2j * torch.pi * torch.rand(mag.shape, generator=gen, dtype=torch.float64)).to(mag.device)
    prev = torch.zeros_like(phase)
    for _ in range(n_iter):
        wav = torch.istft(mag * phase, length=frames_len, **kw)
        rebuilt = torch.stft(wav, pad_mode=cfg.pad_mode, return_complex=True, **kw)
        accel = rebuilt - (momentum / (1.0 + momentum)) * prev
        prev = rebuilt
        phase = accel / torch.clamp(accel.abs(), min=1e-16)
    wav = pad_or_trim(torch.istft(mag * phase, length=frames_len, **kw), length or frames_len)
    return wav.reshape(*lead, wav.shape[-1]).to(torch.float32)


def mel_to_audio(x: torch.Tensor, cfg: SpecConfig = SPEC, n_iter: int = 32, length: int | None = None) -> torch.Tensor:
    """The inverse of `mel_spectrogram`: [0, 1] mel `Tensor[..., 80, T]` -> waveform `Tensor[..., S]`."""
    return griffin_lim(mel_to_linear(x, cfg), cfg, n_iter=n_iter, length=length)


def spectral_convergence(ref: torch.Tensor, est: torch.Tensor) -> float:
    """||ref - est||_F / ||ref||_F over magnitudes (0 = perfect)."""
    return float(torch.linalg.norm(ref - est) / torch.clamp(torch.linalg.norm(ref), min=1e-12))
