"""Mel -> waveform for generate / codec / eval: one interface, two vocoders.

    voc = load_vocoder("melgan", ckpt="runs/vocoder")     # or load_vocoder("griffinlim")
    wav = voc.vocode(mel01)                                # Tensor[B, 80, T] on [0, 1] -> Tensor[B, T*256]

MelGAN loads a `vocoder` checkpoint (ours, or the official `best_netG.pt` after `vgs import`) and folds the
weight norm for speed. Griffin-Lim needs no weights and is always available (`--vocoder griffinlim`), but
sounds phasey: use it for smoke tests and when no vocoder checkpoint exists.
"""

from __future__ import annotations

import os
from typing import Protocol

import torch

from vgs_cli.audio import spec
from vgs_cli.config.spec import SPEC
from vgs_cli.errors import VgsError
from vgs_cli.loading.models import load_model
from vgs_cli.models.melgan import Generator, fold_weight_norm

KINDS = ("melgan", "griffinlim")


class Vocoder(Protocol):
    name: str
    sample_rate: int
    hop_length: int

    def vocode(self, mel01: torch.Tensor) -> torch.Tensor:
        """`Tensor[B, 80, T]` on [0, 1] -> `Tensor[B, T * 256]` float32 on [-1, 1], on mel01's device."""


def _check_mel(mel01: torch.Tensor, min_frames: int) -> torch.Tensor:
    if not isinstance(mel01, torch.Tensor) or mel01.ndim != 3 or mel01.shape[1] != SPEC.n_mels:
        shape = tuple(mel01.shape) if isinstance(mel01, torch.Tensor) else type(mel01).__name__
        raise VgsError(f"vocoder input must be a mel Tensor[B, {SPEC.n_mels}, T], got {shape}")
    if mel01.shape[-1] < min_frames:
        raise VgsError(f"vocoder input has {mel01.shape[-1]} frames; at least {min_frames} are needed")
    # Inputs come from decoders that may overshoot [0, 1] slightly; the vocoders only know that range.
    return mel01.float().clamp(0.0, 1.0)


class GriffinLimVocoder:
    """Mel pseudo-inverse + fast Griffin-Lim (`audio/spec.py`). Deterministic (fixed initial phase)."""

    name = "griffinlim"
    sample_rate = SPEC.sample_rate
    hop_length = SPEC.hop_length

    def __init__(self, n_iter: int = 32):
        self.n_iter = n_iter

    def vocode(self, mel01: torch.Tensor) -> torch.Tensor:
        mel01 = _check_mel(mel01, min_frames=2)
        # Griffin-Lim's STFT round trip needs 1 + length // hop == frames, so T*256 samples need T+1 frames:
        # repeat the last frame (it only shapes the final hop) instead of passing a longer `length`.
        padded = torch.cat([mel01, mel01[..., -1:]], dim=-1)
        return spec.mel_to_audio(padded, n_iter=self.n_iter).float()


class MelGANVocoder:
    """A (weight-norm folded) MelGAN generator in eval mode."""

    name = "melgan"
    sample_rate = SPEC.sample_rate
    hop_length = SPEC.hop_length

    def __init__(self, generator: Generator, device: str | torch.device = "cpu", max_batch: int = 8):
        self.device = torch.device(device)
        self.generator = generator.to(self.device).eval()
        self.max_batch = max_batch  # full 10 s clips: bounds the ~30 MB/clip activations of the last stage

    @torch.no_grad()
    def vocode(self, mel01: torch.Tensor) -> torch.Tensor:
        # The generator's first layer reflection-pads 3 frames, which needs at least 4.
        mel01 = _check_mel(mel01, min_frames=4)
        outs = [self.generator(chunk.to(self.device)).squeeze(1) for chunk in mel01.split(self.max_batch)]
        return torch.cat(outs).to(mel01.device)


def load_generator(path: str | os.PathLike) -> Generator:
    """The generator of a `vocoder` checkpoint or run folder: ours (weight-norm parametrised), the official
    `weight_g`/`weight_v` names after `vgs import`, or already folded weights (`loading.models.load_model`)."""
    return load_model(path, "vocoder")[0]


def load_vocoder(kind: str = "melgan", ckpt: str | os.PathLike | None = None,
                 device: str | torch.device | None = None, *, n_iter: int = 32) -> Vocoder:
    """`kind` "melgan" (needs `ckpt`: file or run folder) or "griffinlim" (`n_iter` iterations)."""
    if kind not in KINDS:
        raise VgsError(f"unknown vocoder {kind!r} (choose {' or '.join(KINDS)})")
    if kind == "griffinlim":
        return GriffinLimVocoder(n_iter=n_iter)
    if ckpt is None:
        raise VgsError("the MelGAN vocoder needs a checkpoint: train one with `vgs train vocoder`, import the "
                       "official best_netG.pt with `vgs import`, or use the griffinlim vocoder")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return MelGANVocoder(fold_weight_norm(load_generator(ckpt)), device=device)
