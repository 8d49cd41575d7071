"""PaSST-S (AudioSet, `passt-s-f128-p16-s10-ap.476-swa.pt`) as av-benchmark runs it, with hear21passt's names.

hear21passt cannot be imported here: its ViT helpers import timm (which needs torchvision, built for another torch)
and its mel front end imports torchaudio (whose compiled part does not load beside this torch). So the network
and its evaluation-mode front end are written out with the package's parameter names (the published file loads
strictly); tests/test_metric_nets.py checks both equal the package's own forward on the same input.

    wave Tensor[B, 320000] (10 s at 32 kHz) -> PasstMel -> Tensor[B, 1, 128, 1000]
      -> PaSST -> (logits Tensor[B, 527] = head(mean of cls and dist tokens), embedding Tensor[B, 768])

Front end (hear21passt `AugmentMelSTFT`, eval): pre-emphasis [-0.97, 1], |STFT|^2 (n_fft 1024, hop 320,
symmetric Hann(800), centred, reflect), Kaldi mel banks (128 bins, 0-15000 Hz, one zero column appended),
log(mel + 1e-5), (x + 4.5) / 5. `head_dist` is stored but unused by the evaluation forward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class PaSSTConfig:
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    num_classes: int = 527
    patch_size: int = 16
    stride: int = 10
    n_mels: int = 128
    time_patches: int = 99  # 10 s: 1000 frames -> (1000 - 16) // 10 + 1
    sample_rate: int = 32000
    n_fft: int = 1024
    win_length: int = 800
    hop_length: int = 320
    fmin: float = 0.0
    fmax: float = 15000.0  # hear21passt: sr // 2 - fmax_aug_range // 2 = 16000 - 1000

    @property
    def freq_patches(self) -> int:
        return (self.n_mels - self.patch_size) // self.stride + 1


def kaldi_mel_banks(n_mels: int, n_fft: int, sample_rate: float, fmin: float, fmax: float) -> torch.Tensor:
    """torchaudio.compliance.kaldi.get_mel_banks without VTLN warping: `float32[n_mels, n_fft // 2]`."""
    def mel(f):
        return 1127.0 * (1.0 + f / 700.0).log() if torch.is_tensor(f) else 1127.0 * math.log(1.0 + f / 700.0)

    lo, hi = mel(fmin), mel(fmax)
    delta = (hi - lo) / (n_mels + 1)
    b = torch.arange(n_mels).unsqueeze(1)
    left, center, right = lo + b * delta, lo + (b + 1.0) * delta, lo + (b + 2.0) * delta
    m = mel(sample_rate / n_fft * torch.arange(n_fft / 2)).unsqueeze(0)
    up = (m - left) / (center - left)
    down = (right - m) / (right - center)
    return torch.max(torch.zeros(1), torch.min(up, down))


class PasstMel(nn.Module):
    """`Tensor[B, T]` waveform at 32 kHz -> `Tensor[B, 1, n_mels, 1 + (T - 1) // hop]` normalised log mel."""

    def __init__(self, cfg: PaSSTConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("window", torch.hann_window(cfg.win_length, periodic=False), persistent=False)
        self.register_buffer("preemphasis", torch.tensor([[[-0.97, 1.0]]]), persistent=False)
        banks = kaldi_mel_banks(cfg.n_mels, cfg.n_fft, float(cfg.sample_rate), cfg.fmin, cfg.fmax)
        self.register_buffer("mel_basis", F.pad(banks, (0, 1)), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        x = F.conv1d(wave.unsqueeze(1), self.preemphasis).squeeze(1)
        spec = torch.stft(x, cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length, center=True,
                          normalized=False, window=self.window, return_complex=True)
        power = torch.view_as_real(spec).pow(2).sum(-1)  # re^2 + im^2, as the package sums them
        with torch.autocast(device_type=wave.device.type, enabled=False):
            mel = torch.matmul(self.mel_basis, power.float())
        return ((mel + 0.00001).log() + 4.5).div(5.0).unsqueeze(1)


class PatchEmbed(nn.Module):
    def __init__(self, cfg: PaSSTConfig):
        super().__init__()
        self.proj = nn.Conv2d(1, cfg.embed_dim, kernel_size=cfg.patch_size, stride=cfg.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)  # [B, E, F, T]: flattened after the positional embeddings


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, cfg: PaSSTConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.embed_dim, eps=1e-6)
        self.attn = Attention(cfg.embed_dim, cfg.num_heads)
        self.norm2 = nn.LayerNorm(cfg.embed_dim, eps=1e-6)
        self.mlp = Mlp(cfg.embed_dim, int(cfg.embed_dim * cfg.mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PaSST(nn.Module):
    """The PaSST ViT (`PasstBasicWrapper.net`): `Tensor[B, 1, n_mels, frames]` -> (logits, embedding)."""

    def __init__(self, cfg: PaSSTConfig = PaSSTConfig()):
        super().__init__()
        self.cfg = cfg
        e = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.randn(1, 1, e) * 0.02)
        self.dist_token = nn.Parameter(torch.randn(1, 1, e) * 0.02)
        self.new_pos_embed = nn.Parameter(torch.randn(1, 2, e) * 0.02)
        self.freq_new_pos_embed = nn.Parameter(torch.randn(1, e, cfg.freq_patches, 1) * 0.02)
        self.time_new_pos_embed = nn.Parameter(torch.randn(1, e, 1, cfg.time_patches) * 0.02)
        self.blocks = nn.Sequential(*[Block(cfg) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(e, eps=1e-6)
        self.head = nn.Sequential(nn.LayerNorm(e), nn.Linear(e, cfg.num_classes))
        self.head_dist = nn.Linear(e, cfg.num_classes)  # stored in the file, unused by the evaluation

    def forward(self, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.patch_embed(spec)
        b = x.shape[0]
        x = x + self.time_new_pos_embed[:, :, :, : x.shape[-1]]  # shorter inputs cut the time embedding
        x = (x + self.freq_new_pos_embed).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(b, -1, -1) + self.new_pos_embed[:, :1]
        dist = self.dist_token.expand(b, -1, -1) + self.new_pos_embed[:, 1:]
        x = self.norm(self.blocks(torch.cat((cls, dist, x), dim=1)))
        embedding = (x[:, 0] + x[:, 1]) / 2
        return self.head(embedding), embedding


class PaSSTAudio(nn.Module):
    """Front end + network: `Tensor[B, T]` at 32 kHz -> (logits `[B, 527]`, embedding `[B, 768]`).
    State dict = the network's (`net.*`), as the published file's keys under `net.`."""

    def __init__(self, cfg: PaSSTConfig = PaSSTConfig()):
        super().__init__()
        self.mel = PasstMel(cfg)
        self.net = PaSST(cfg)

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(self.mel(wave))
