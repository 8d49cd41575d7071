"""Melception: the Inception-v3 spectrogram classifier behind FID / KID / ISc / MKL (paper Sec. 4).

`MelceptionModelConfig` rebuilds the network; `MelceptionConfig` adds the training settings of
`vgs train melception`. With `width = 1.0` the network is the official one (25,213,450 parameters at 309
classes, torchvision Inception3 names); `tiny` shrinks every channel count so CPU tests stay fast.

Input standardisation: the classifier sees `(mel - mean[f]) / std[f]` per mel bin on the [0, 1] scale
(the reference's `StandardNormalizeAudio`). The statistics live in the config (`norm_mean` / `norm_std`, 80
values each) rather than in the state_dict, so the state_dict keeps exactly the official key set and a
checkpoint still rebuilds the whole classifier from its own config. Empty tuples mean "not yet known":
`vgs train melception` fills them from the training shards, `vgs import` from the official statistics file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vgs_cli.config.base import Config
from vgs_cli.config.train import TrainConfig
from vgs_cli.errors import ConfigError

# torchvision Inception-v3 channel counts at width 1.0 (what the official weights use).
BASE_FEATURES = 2048
BASE_AUX_FEATURES = 768


@dataclass(frozen=True)
class MelceptionModelConfig(Config):
    num_classes: int = 0  # 0 = take it from the training shards' class list (filled in by make_task)
    width: float = 1.0  # channel multiplier: 1.0 = official architecture; < 1 for CPU tests
    n_mels: int = 80
    aux_logits: bool = True  # the auxiliary head (trained with aux_weight, unused at inference)
    dropout: float = 0.5  # before fc (torchvision default); inactive in eval mode
    bn_eps: float = 0.001
    # BatchNorm running-statistics momentum (None = cumulative average). Short CPU runs use a large one:
    # with 0.1 the eval-mode model of a 10-step run still carries the initial (0, 1) statistics, and a
    # cumulative average mixes in statistics of weights long gone; either leaves valid accuracy at chance
    bn_momentum: float | None = 0.1
    norm_mean: tuple[float, ...] = ()  # per-mel-bin mean of training mels on [0, 1]; () = identity
    norm_std: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        # plain floats: numpy scalars would make the checkpoint unreadable with weights_only=True
        object.__setattr__(self, "norm_mean", tuple(float(v) for v in self.norm_mean))
        object.__setattr__(self, "norm_std", tuple(float(v) for v in self.norm_std))
        if self.width <= 0:
            raise ConfigError(f"melception width must be > 0, got {self.width}")
        if len(self.norm_mean) != len(self.norm_std):
            raise ConfigError("melception norm_mean and norm_std must have the same length")
        if self.norm_mean and len(self.norm_mean) != self.n_mels:
            raise ConfigError(f"melception norm_mean has {len(self.norm_mean)} values, expected {self.n_mels}")
        if any(s <= 0 for s in self.norm_std):
            raise ConfigError("melception norm_std values must be > 0")

    def ch(self, n: int) -> int:
        """Channels of a layer that has `n` channels in the official network."""
        return max(1, int(round(n * self.width)))

    @property
    def feature_dim(self) -> int:
        """Size of the pooled features that FID / KID use (2048 at width 1)."""
        # Mixed_7c concatenates 1x1 (320), two 3x3 pairs (4 x 384) and the pool branch (192).
        return self.ch(320) + 4 * self.ch(384) + self.ch(192)

    @property
    def has_norm(self) -> bool:
        return bool(self.norm_mean)


@dataclass(frozen=True)
class MelceptionConfig(Config):
    model: MelceptionModelConfig = field(default_factory=MelceptionModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    aux_weight: float = 0.4  # loss = CE(logits) + aux_weight * CE(aux_logits)
    norm_clips: int = 4000  # training clips sampled (seeded) for the per-bin mean/std; 0 = all
    norm_min_std: float = 0.01  # floor for a bin's std (a constant bin would otherwise blow up)


PRESETS: dict[str, MelceptionConfig] = {
    # The official classifier was trained on VGGSound (309 classes, Adam) and the paper scores VAS samples
    # with that same VGGSound classifier; `vas` is for training one on VAS alone (8 classes, shorter).
    "vggsound": MelceptionConfig(
        train=TrainConfig(steps=200_000, batch_size=64, lr=3e-4, eval_every=2000, log_every=50),
    ),
    "vas": MelceptionConfig(
        train=TrainConfig(steps=30_000, batch_size=64, lr=3e-4, eval_every=1000, log_every=50),
    ),
    "tiny": MelceptionConfig(
        # measured on 4 synthetic classes: width 1/8 reaches ~0.7-1.0 valid top-1 in 8-12 steps of 8 clips,
        # width 1/16 is half the cost per step but needs about twice the steps
        model=MelceptionModelConfig(width=0.125, dropout=0.0, bn_momentum=0.5),
        train=TrainConfig(steps=40, batch_size=8, lr=1e-3, eval_every=20, log_every=5),
        norm_clips=64,
    ),
}
