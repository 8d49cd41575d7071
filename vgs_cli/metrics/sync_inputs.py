"""Synchformer's inputs as av-benchmark prepares them (DeSync): frames at 25 fps, 16-kHz log-mels, segments.

Video: ffmpeg's `fps=25` filter (default rounding, what torchaudio's StreamingMediaDecoder asked ffmpeg
for), frames decoded at source size; the shorter side resized to 224 on uint8 (torch's antialiased bicubic
on uint8, the kernel torchvision's `v2.Resize(224, BICUBIC)` runs for uint8 tensors on CPU; long side
`int(224 * long / short)`), centre crop 224 (torchvision's offsets), to [0, 1], then (x - 0.5) / 0.5.
Audio: mono at 16 kHz (torchaudio's sinc resampler: `audio/resample.py`),
no DC removal; per segment of 10240 samples a power mel spectrogram (n_fft 1024, window 400, hop 160,
centred with reflect padding, 128 HTK mels 0-8 kHz, no filter norm) -> log(mel + 1e-6) -> 65 frames,
zero-padded to 66 (zero in log space) -> (x + 4.2677393) / (2 * 4.5689974).
Segments: 16 frames with step 8 (0.64 s every 0.32 s), audio segments on the same times (10240 samples,
step 5120). A window is 14 consecutive segments (4.8 s); av-benchmark scores the first and the last.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

FPS = 25
SAMPLE_RATE = 16000
SIZE = 224
SEG_FRAMES, SEG_STEP = 16, 8
SEG_SAMPLES, SEG_HOP_SAMPLES = 10240, 5120  # the same 0.64 s / 0.32 s at 16 kHz
N_FFT, WIN, HOP, N_MELS = 1024, 400, 160, 128
MEL_FRAMES = 66  # 10240 / 160 + 1 = 65 frames, padded to 66 (the AST's 6 time patches)
LOG_MEAN, LOG_STD = -4.2677393, 4.5689974  # AudioSet statistics Synchformer was trained with
WINDOW_SEGMENTS = 14  # 13 * 0.32 + 0.64 = 4.8 s
SEGMENT_S = SEG_STEP / FPS  # 0.32 s between segment starts


def segment_count(n: int, size: int, step: int) -> int:
    """How many windows of `size` with `step` fit in `n` items (0 when none): (n - size) // step + 1."""
    return (n - size) // step + 1 if n >= size else 0


def window_starts(n_segments: int, window: int = WINDOW_SEGMENTS) -> list[int]:
    """First segment of each scored window: the first (0) and the last (n - 14) as av-benchmark, and for long
    clips the windows tiling the time between them without overlap (step 15 segments = 4.8 s), kept only where
    they do not overlap the last window. `[]` when fewer than `window` segments exist."""
    if n_segments < window:
        return []
    last = n_segments - window
    starts = [s for s in range(0, last, window + 1) if s == 0 or s + window <= last]
    return starts + [last] if last not in starts else starts


# ----------------------------------------------------------------------------------------------- video

def resize_crop(frames: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """`uint8[N, 3, H, W] -> float32[N, 3, size, size]` on [-1, 1] (see the module docstring)."""
    h, w = frames.shape[-2:]
    if h <= w:
        new_h, new_w = size, int(size * w / h)
    else:
        new_h, new_w = int(size * h / w), size
    if (new_h, new_w) != (h, w):
        frames = F.interpolate(frames, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True)
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    frames = frames[..., top:top + size, left:left + size]
    return (frames.float() / 255.0 - 0.5) / 0.5


def load_frames(path: str | os.PathLike, max_s: float | None = None, chunk: int = 64) -> torch.Tensor:
    """A video's frames at 25 fps, resized and cropped: `float32[N, 3, 224, 224]` on [-1, 1]."""
    from vgs_cli.data.video import read_frames

    raw = read_frames(path, fps=FPS, max_duration_s=max_s, frame_path="reference")  # uint8[N, H, W, 3]
    out = torch.empty(len(raw), 3, SIZE, SIZE)
    for i in range(0, len(raw), chunk):  # a chunk at a time: float copies of full-size frames stay small
        out[i:i + chunk] = resize_crop(torch.from_numpy(raw[i:i + chunk]).permute(0, 3, 1, 2).contiguous())
    return out


def video_segments(frames: torch.Tensor) -> torch.Tensor:
    """`[N, 3, 224, 224] -> [S, 16, 3, 224, 224]` (a strided view: segments share frames)."""
    return frames.unfold(0, SEG_FRAMES, SEG_STEP).permute(0, 4, 1, 2, 3)


# ----------------------------------------------------------------------------------------------- audio

def load_audio16k(path: str | os.PathLike) -> torch.Tensor:
    """A sound file as mono float32 at 16 kHz (channels averaged, no DC removal): `float32[S]`."""
    from vgs_cli.audio.io import read_wav
    from vgs_cli.audio.resample import resample as resample_wave

    wav, sr = read_wav(path, sr=None)
    return resample_wave(torch.from_numpy(np.ascontiguousarray(wav)), sr, SAMPLE_RATE)


@lru_cache(maxsize=1)
def mel_filterbank() -> torch.Tensor:
    """torchaudio's melscale_fbanks(513, 0, 8000, 128, 16000, norm=None, mel_scale="htk"): `[513, 128]`."""
    n_freqs = N_FFT // 2 + 1
    freqs = torch.linspace(0, SAMPLE_RATE // 2, n_freqs)
    m_max = 2595.0 * math.log10(1.0 + (SAMPLE_RATE / 2) / 700.0)
    f_pts = 700.0 * (10 ** (torch.linspace(0.0, m_max, N_MELS + 2) / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - freqs.unsqueeze(1)
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.clamp(torch.min(down, up), min=0.0)


def log_mels(segments: torch.Tensor) -> torch.Tensor:
    """`[S, 10240]` at 16 kHz `-> [S, 66, 128]` normalised log-mels, time first (the AST's input)."""
    window = torch.hann_window(WIN)  # torch.stft centres the 400-sample window inside n_fft 1024
    spec = torch.stft(segments.float(), N_FFT, HOP, WIN, window, center=True, pad_mode="reflect",
                      return_complex=True).abs() ** 2  # [S, 513, 65]
    mel = torch.log(torch.matmul(spec.transpose(1, 2), mel_filterbank()) + 1e-6)  # [S, 65, 128]
    mel = F.pad(mel, (0, 0, 0, MEL_FRAMES - mel.shape[1]))
    return (mel - LOG_MEAN) / (2 * LOG_STD)


def audio_segments(wav: torch.Tensor) -> torch.Tensor:
    """`float32[S_samples]` at 16 kHz `-> [S, 10240]` (a strided view)."""
    return wav.unfold(0, SEG_SAMPLES, SEG_HOP_SAMPLES)
