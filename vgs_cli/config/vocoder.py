"""Config of the vocoder stage: MelGAN generator + multi-scale discriminator and how they are trained.

Paper settings (SpecVQGAN's `vocoder/`, itself MelGAN's reference code): generator ngf 32, upsampling
8x8x2x2 = hop 256, 3 dilated residual layers per stage; discriminator 3 scales, ndf 16, 4 strided layers,
downsampling 4; hinge GAN loss + feature matching (weight 10); Adam(lr 1e-4, betas 0.5/0.9); random
8192-sample segments; batch 64 (the README's training command). The mel-L1 term is an addition of ours for
fast small-scale training and is off (weight 0) in the `vas` and `vggsound` presets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from vgs_cli.config.base import Config
from vgs_cli.config.spec import SPEC
from vgs_cli.config.train import TrainConfig
from vgs_cli.errors import ConfigError


@dataclass(frozen=True)
class MelGANConfig(Config):
    """The generator (`models.melgan.Generator`): [0, 1] mel `[B, n_mels, T]` -> waveform `[B, 1, T*hop]`."""

    n_mels: int = SPEC.n_mels
    ngf: int = 32
    ratios: tuple[int, ...] = (8, 8, 2, 2)
    n_residual_layers: int = 3

    def __post_init__(self) -> None:
        if self.ngf < 1 or self.n_mels < 1 or self.n_residual_layers < 0:
            raise ConfigError("model: ngf and n_mels must be positive, n_residual_layers >= 0")
        if not self.ratios or any(r < 1 for r in self.ratios):
            raise ConfigError(f"model.ratios must be positive integers, got {list(self.ratios)}")
        if self.hop_length != SPEC.hop_length:
            # The stored mels have one frame per 256 samples: any other product would stretch time.
            raise ConfigError(f"model.ratios multiply to {self.hop_length}, the spectrogram hop is {SPEC.hop_length}")

    @property
    def hop_length(self) -> int:
        """Output samples per input frame."""
        return math.prod(self.ratios)

    @property
    def first_channels(self) -> int:
        """Channels after the input convolution; every upsampling stage halves them."""
        return self.ngf * 2 ** len(self.ratios)

    @property
    def dilations(self) -> tuple[int, ...]:
        """Dilations of the residual layers in each stage (1, 3, 9 for three layers)."""
        return tuple(3**j for j in range(self.n_residual_layers))


@dataclass(frozen=True)
class DiscriminatorConfig(Config):
    """The multi-scale waveform discriminator (`models.melgan.MultiScaleDiscriminator`)."""

    num_d: int = 3
    ndf: int = 16
    n_layers: int = 4
    downsampling_factor: int = 4
    max_channels: int = 1024  # the reference caps every layer at 1024 channels

    def __post_init__(self) -> None:
        if self.num_d < 1 or self.n_layers < 1 or self.downsampling_factor < 1:
            raise ConfigError("disc: num_d, n_layers and downsampling_factor must be positive")
        if self.ndf < 4 or self.ndf % 4 or self.max_channels % 4 or self.max_channels < self.ndf:
            # The strided layers use groups = in_channels // 4, so channel counts must be multiples of 4.
            raise ConfigError("disc: ndf and max_channels must be multiples of 4 with ndf >= 4 and max_channels >= ndf")

    @property
    def channels(self) -> tuple[int, ...]:
        """Output channels of layer_0 .. layer_{n_layers+1} (the final 1-channel conv not included)."""
        chans = [self.ndf]
        for _ in range(self.n_layers):
            chans.append(min(chans[-1] * self.downsampling_factor, self.max_channels))
        chans.append(min(chans[-1] * 2, self.max_channels))
        return tuple(chans)


@dataclass(frozen=True)
class VocoderConfig(Config):
    model: MelGANConfig = field(default_factory=MelGANConfig)
    disc: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    segment_samples: int = 8192  # random training segment; must be a whole number of hops
    feat_match_weight: float = 10.0
    mel_l1_weight: float = 0.0  # ours, not the paper's: L1 between [0,1] mels of real and generated segments
    valid_samples: int = 3  # clips written to run_dir/samples (wav + png) at each validation

    def __post_init__(self) -> None:
        if self.segment_samples < 4 * SPEC.n_fft or self.segment_samples % SPEC.hop_length:
            raise ConfigError(
                f"segment_samples must be a multiple of {SPEC.hop_length} and at least {4 * SPEC.n_fft}, "
                f"got {self.segment_samples}"
            )
        if self.feat_match_weight < 0 or self.mel_l1_weight < 0 or self.valid_samples < 0:
            raise ConfigError("feat_match_weight, mel_l1_weight and valid_samples must be >= 0")

    @property
    def segment_frames(self) -> int:
        """Mel frames that drive one segment (8192 / 256 = 32)."""
        return self.segment_samples // SPEC.hop_length


# Adam(0.5, 0.9) at 1e-4 is MelGAN's setting, kept by SpecVQGAN.
# Validation vocodes whole 10 s clips: 16 batches (1,024 clips at batch 64) is plenty for the mel-L1 curve.
_PAPER_TRAIN = dict(lr=1e-4, betas=(0.5, 0.9), batch_size=64, eval_every=5000, eval_batches=16, log_every=100,
                    ckpt_every=50000)

PRESETS: dict[str, VocoderConfig] = {
    # The official vocoder was trained on VGGSound (and used for VAS too); the reference ran until stopped, so
    # the step count is ours: ~200 epochs of one segment per VGGSound training clip at batch 64.
    "vggsound": VocoderConfig(train=TrainConfig(steps=500_000, **_PAPER_TRAIN)),
    "vas": VocoderConfig(train=TrainConfig(steps=200_000, **_PAPER_TRAIN)),
    # Laptop-sized: a 4x narrower generator, a small discriminator and the mel-L1 term for fast convergence.
    "tiny": VocoderConfig(
        model=MelGANConfig(ngf=8),
        disc=DiscriminatorConfig(num_d=2, ndf=4, n_layers=3, max_channels=64),
        train=TrainConfig(steps=200, batch_size=4, lr=5e-4, betas=(0.5, 0.9), eval_every=100, log_every=10),
        mel_l1_weight=45.0,
        valid_samples=2,
    ),
}
