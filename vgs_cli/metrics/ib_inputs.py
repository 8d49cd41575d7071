"""ImageBind's inputs as av-benchmark prepares them for the IB-score (its video_dataset.py, ib_data.py and
audio_dataset.py @050a5cd).

Video: frames at 0.5 fps (ffmpeg's `fps` filter, default rounding: what torchaudio's StreamingMediaDecoder
asked ffmpeg for), decoded at source size; the shorter side resized to 224 on uint8 (torch's antialiased
bicubic on uint8, the kernel torchvision's `v2.Resize(224, BICUBIC)` runs for uint8 tensors on CPU; long side
`int(224 * long / short)`), to [0, 1], CLIP's mean/std; then three 224 x 224 crops along the long side
(ImageBind's SpatialCrop: offsets 0, ceil((long - 224) / 2), long - 224; a square frame gives three equal
crops). Consecutive frames make 2-frame clips (frames i, i+1); ImageBind embeds each crop of each clip and
averages the unit vectors. av-benchmark keeps the first int(0.5 * duration) frames (4 for 8 s: 3 clips).
Audio (ImageBind's load_and_transform_audio_data): the whole file at 16 kHz (torchaudio's resampler,
`audio/resample.py`), channels kept; three 2-s clips at uniform starts (pytorchvideo 0.1.5's
ConstantClipsPerVideoSampler: start_k = k * max(duration - 2, 0) / 3, so an 8-s file gives 0-2, 2-4, 4-6 s;
samples int(start * 16000) to int((start + 2) * 16000)); each clip minus its mean (in place on the shared
waveform, so overlapping clips of a short file see the earlier clip's subtraction, as ImageBind does), then
Kaldi's fbank of channel 0 (torchaudio.compliance.kaldi.fbank: 25-ms Hann frames every 10 ms, DC removal,
pre-emphasis 0.97, 512-point power spectrum, 128 mel bins 20-8000 Hz, log with float eps, no dither),
128 x frames zero-padded or cut to 204, then (x + 4.268) / 9.138.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

from vgs_cli.errors import DataError

FPS = 0.5
SIZE = 224
CROPS = 3
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SAMPLE_RATE = 16000
CLIP_S = 2  # seconds per audio clip
AUDIO_CLIPS = 3
MEL_BINS, MEL_FRAMES = 128, 204
FBANK_MEAN, FBANK_STD = -4.268, 9.138
FRAME_LEN, FRAME_SHIFT, N_FFT = 400, 160, 512  # 25 ms, 10 ms at 16 kHz; Kaldi rounds 400 up to 512
LOW_HZ = 20.0


def main_frames(duration_s: float) -> int:
    """Frames av-benchmark keeps for a `duration_s` evaluation: int(0.5 * duration), at least 2 (one clip)."""
    return max(2, int(FPS * duration_s))


def window_starts(n_frames: int, window: int) -> list[int]:
    """First frame of each IB window of `window` frames over `n_frames` usable frames: 0, window, 2 window, ...
    and a last one ending at the last frame (it may overlap the one before), so the windows cover every
    frame. `[0]` when the clip fits one window."""
    if n_frames <= window:
        return [0]
    last = n_frames - window
    return [*range(0, last, window), last]


# ----------------------------------------------------------------------------------------------- video

def resize_short(frames: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """`uint8[N, 3, H, W] -> uint8[N, 3, h, w]`, the shorter side `size`, the longer `int(size * long / short)`."""
    h, w = frames.shape[-2:]
    new = (size, int(size * w / h)) if h <= w else (int(size * h / w), size)
    if new == (h, w):
        return frames
    return F.interpolate(frames, size=new, mode="bicubic", align_corners=False, antialias=True)


def crop_offsets(h: int, w: int, size: int = SIZE) -> list[tuple[int, int]]:
    """(top, left) of the three crops: along the width unless the frame is taller than wide (SpatialCrop)."""
    top, left = math.ceil((h - size) / 2), math.ceil((w - size) / 2)
    if h > w:
        return [(0, left), (top, left), (h - size, left)]
    return [(top, 0), (top, left), (top, w - size)]


def crops(frames: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """`uint8[N, 3, H, W]` -> `float32[3, N, 3, size, size]`: resized, CLIP-normalised, the three crops."""
    x = resize_short(frames, size).float() / 255.0
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    x = (x - mean) / std
    return torch.stack([x[..., top:top + size, left:left + size] for top, left in crop_offsets(*x.shape[-2:], size)])


def load_crops(path: str | os.PathLike, size: int = SIZE, chunk: int = 32) -> torch.Tensor:
    """A whole video at 0.5 fps: `float32[3, N, 3, 224, 224]` (crops, frames)."""
    from vgs_cli.data.video import read_frames

    raw = read_frames(path, fps=FPS, frame_path="reference")  # uint8[N, H, W, 3]
    # a chunk at a time: float copies of full-size frames of a long video stay small
    return torch.cat([crops(torch.from_numpy(raw[i:i + chunk]).permute(0, 3, 1, 2).contiguous(), size)
                      for i in range(0, len(raw), chunk)], dim=1)


def frame_clips(crop_frames: torch.Tensor) -> torch.Tensor:
    """`[3, N, 3, S, S]` -> `[K, 3, 3, 2, S, S]` (clip, crop, C, T, H, W): clip i = frames i and i + 1,
    K = N - 1; one frame alone is ImageBind's image input (repeated to 2 frames), K = 1."""
    x = crop_frames.permute(1, 0, 2, 3, 4)  # [N, 3 crops, C, S, S]
    if len(x) == 1:
        x = x.repeat(2, 1, 1, 1, 1)
    return torch.stack((x[:-1], x[1:]), dim=3)


# ----------------------------------------------------------------------------------------------- audio

def load_audio(path: str | os.PathLike) -> torch.Tensor:
    """A sound file at 16 kHz with its channels (ImageBind reads them all, fbanks channel 0): `float32[C, S]`.
    Read as the audio metrics read their files (`av_audio.read_audio`: torchaudio.load's float layout)."""
    from vgs_cli.audio.resample import resample
    from vgs_cli.metrics.av_audio import AudioSource, read_audio

    wave, sr = read_audio(AudioSource(str(path), path=Path(path)))
    return resample(wave, sr, SAMPLE_RATE)


def clip_bounds(n_samples: int, sr: int = SAMPLE_RATE) -> list[tuple[int, int]]:
    """Sample ranges of the three 2-s clips (pytorchvideo's ConstantClipsPerVideoSampler, see the docstring)."""
    duration = n_samples / sr
    max_start = Fraction(max(duration - CLIP_S, 0))  # float subtraction first, as the sampler
    step = max_start / AUDIO_CLIPS
    return [(int(step * k * sr), int((step * k + CLIP_S) * sr)) for k in range(AUDIO_CLIPS)]


@lru_cache(maxsize=1)
def _mel_banks() -> torch.Tensor:
    from vgs_cli.models.passt import kaldi_mel_banks

    banks = kaldi_mel_banks(MEL_BINS, N_FFT, float(SAMPLE_RATE), LOW_HZ, SAMPLE_RATE / 2)
    return F.pad(banks, (0, 1))  # [128, 257]: Kaldi's banks stop below Nyquist


def fbank(wave: torch.Tensor) -> torch.Tensor:
    """torchaudio.compliance.kaldi.fbank with ImageBind's settings: `float32[S]` at 16 kHz -> `[frames, 128]`
    log mel energies, frames = 1 + (S - 400) // 160 (0 when S < 400)."""
    if len(wave) < FRAME_LEN:
        return torch.zeros(0, MEL_BINS)
    x = wave.unfold(0, FRAME_LEN, FRAME_SHIFT)  # [frames, 400], snip_edges
    x = x - x.mean(dim=1, keepdim=True)
    x = x - 0.97 * torch.cat((x[:, :1], x[:, :-1]), dim=1)  # pre-emphasis, the first sample replicated
    x = x * torch.hann_window(FRAME_LEN, periodic=False)
    power = torch.fft.rfft(F.pad(x, (0, N_FFT - FRAME_LEN))).abs().pow(2)
    mel = power @ _mel_banks().T
    return torch.clamp_min(mel, torch.finfo(torch.float32).eps).log()


def audio_clips(wave: torch.Tensor) -> torch.Tensor:
    """`float32[C, S]` at 16 kHz -> `[3, 1, 128, 204]` normalised fbanks (see the module docstring)."""
    wave = wave.clone()  # the clips' mean removal is in place, as ImageBind's
    out = []
    for a, b in clip_bounds(wave.shape[-1]):
        clip = wave[:, a:b]
        clip -= clip.mean()
        mel = fbank(clip[0]).T  # [128, frames]
        if mel.shape[1] == 0:
            raise DataError(f"audio clip of {clip.shape[-1]} samples is shorter than one 25-ms fbank frame")
        mel = F.pad(mel, (0, max(0, MEL_FRAMES - mel.shape[1])))[:, :MEL_FRAMES]
        out.append(((mel - FBANK_MEAN) / FBANK_STD)[None])
    return torch.stack(out)
