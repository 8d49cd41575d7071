"""PANNs Cnn14 at 16 kHz (`Cnn14_16k_mAP=0.438.pth`) in evaluation mode, with panns-inference's names.

panns-inference can build this variant, but importing it runs its `config.py`, which downloads a label file with
wget into ~/panns_data at import time (a hang or an error offline); so the network is written out here with the
package's parameter names (the published `ckpt["model"]` loads strictly) and tests/test_metric_nets.py checks it
equals the package's own forward.

    wave Tensor[B, T] at 16 kHz -> (logits Tensor[B, 527], embedding Tensor[B, 2048])

Front end (torchlibrosa, whose kernels the file stores): |STFT|^2 as two Conv1d over the reflect-padded signal
(n_fft 512, hop 160, periodic Hann), mel matrix (64 bins, 50-8000 Hz), 10 log10(max(x, 1e-10)); bn0 over mel
bins; six conv blocks (avg-pool 2x2, the last 1x1); mean over frequency, max + mean over time; fc1 + ReLU =
the embedding (FD); logits = fc_audioset(embedding) (KL, IS; the package returns their sigmoid).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Cnn14Config:
    sample_rate: int = 16000
    window_size: int = 512
    hop_size: int = 160
    mel_bins: int = 64
    fmin: float = 50.0
    fmax: float = 8000.0
    classes_num: int = 527
    widths: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)


class _STFT(nn.Module):
    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        n = np.arange(n_fft)
        window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)  # periodic Hann (librosa's fftbins=True)
        dft = np.exp(-2j * np.pi * np.outer(n, n[: n_fft // 2 + 1]) / n_fft) * window[:, None]
        self.conv_real = nn.Conv1d(1, n_fft // 2 + 1, n_fft, stride=hop, bias=False)
        self.conv_imag = nn.Conv1d(1, n_fft // 2 + 1, n_fft, stride=hop, bias=False)
        with torch.no_grad():
            self.conv_real.weight.copy_(torch.tensor(dft.real.T, dtype=torch.float32)[:, None])
            self.conv_imag.weight.copy_(torch.tensor(dft.imag.T, dtype=torch.float32)[:, None])

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = F.pad(wave[:, None], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        real, imag = self.conv_real(x), self.conv_imag(x)  # [B, F, frames]
        return (real ** 2 + imag ** 2)[:, None].transpose(2, 3)  # [B, 1, frames, F]


class _Spectrogram(nn.Module):
    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.stft = _STFT(n_fft, hop)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.stft(wave)


class _LogMel(nn.Module):
    def __init__(self, cfg: Cnn14Config):
        super().__init__()
        import librosa

        mel = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.window_size, n_mels=cfg.mel_bins,
                                  fmin=cfg.fmin, fmax=cfg.fmax).T
        self.melW = nn.Parameter(torch.tensor(mel, dtype=torch.float32), requires_grad=False)

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        return 10.0 * torch.log10(torch.clamp(torch.matmul(power, self.melW), min=1e-10))  # ref 1, no top_db


class ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor, pool: int) -> torch.Tensor:
        x = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        return F.avg_pool2d(x, kernel_size=pool)


class Cnn14(nn.Module):
    """`Tensor[B, T]` at `cfg.sample_rate` -> (logits `[B, classes]`, embedding `[B, 2048]`); eval mode only."""

    def __init__(self, cfg: Cnn14Config = Cnn14Config()):
        super().__init__()
        self.cfg = cfg
        self.spectrogram_extractor = _Spectrogram(cfg.window_size, cfg.hop_size)
        self.logmel_extractor = _LogMel(cfg)
        self.bn0 = nn.BatchNorm2d(cfg.mel_bins)
        widths = (1, *cfg.widths)
        for i in range(len(cfg.widths)):
            setattr(self, f"conv_block{i + 1}", ConvBlock(widths[i], widths[i + 1]))
        self.fc1 = nn.Linear(cfg.widths[-1], cfg.widths[-1])
        self.fc_audioset = nn.Linear(cfg.widths[-1], cfg.classes_num)

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.logmel_extractor(self.spectrogram_extractor(wave))  # [B, 1, frames, mels]
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        n = len(self.cfg.widths)
        for i in range(n):
            x = getattr(self, f"conv_block{i + 1}")(x, pool=1 if i == n - 1 else 2)
        x = x.mean(dim=3)
        x = x.max(dim=2).values + x.mean(dim=2)
        embedding = F.relu(self.fc1(x))
        return self.fc_audioset(embedding), embedding
