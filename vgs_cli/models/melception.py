"""Melception: torchvision's Inception-v3 adapted to 80 x 848 mel spectrograms (SpecVQGAN's FID/ISc net).

Differences from the ImageNet network (as in the paper's classifier):
- one input channel: `Conv2d_1a_3x3` is a 3x3 stride-2 conv from 1 to 32 channels;
- the two max-pools of the stem (`maxpool1`, `maxpool2`) are removed: a mel is only 80 bins high;
- 309 VGGSound classes in `fc` and `AuxLogits.fc` (any count here).
Parameter names are torchvision's, so the official `melception-21-05-10T09-28-40.pt` state_dict loads with
strict matching. Input standardisation `(mel - mean[f]) / std[f]` uses non-persistent buffers built from the
config, which keeps the state_dict key set exactly the official one.

Spatial sizes at width 1 for a `[B, 80, 848]` input: stem -> [B, 192, 35, 419], Mixed_6a -> [B, 768, 17, 209],
Mixed_7a -> [B, 1280, 8, 104], Mixed_7c -> [B, 2048, 8, 104], pooled -> [B, 2048].
"""

from __future__ import annotations

import torch
from torch import nn

from vgs_cli.config.melception import MelceptionModelConfig
from vgs_cli.errors import ConfigError
from vgs_cli.models.inception_blocks import (
    BasicConv2d,
    InceptionA,
    InceptionAux,
    InceptionB,
    InceptionC,
    InceptionD,
    InceptionE,
    init_inception_weights,
    set_bn_momentum,
)


class Melception(nn.Module):
    """`Tensor[B, 80, T]` mel on [0, 1] -> dict of `features` `[B, D]`, `logits_unbiased` / `logits` `[B, C]`
    (plus `aux_logits` `[B, C]` in training mode when the auxiliary head is enabled)."""

    def __init__(self, cfg: MelceptionModelConfig) -> None:
        super().__init__()
        if cfg.num_classes <= 0:
            raise ConfigError("melception num_classes is not set (train on shards or import official weights)")
        self.cfg = cfg
        ch, eps = cfg.ch, cfg.bn_eps
        self.Conv2d_1a_3x3 = BasicConv2d(1, ch(32), eps, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(ch(32), ch(32), eps, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(ch(32), ch(64), eps, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(ch(64), ch(80), eps, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(ch(80), ch(192), eps, kernel_size=3)
        self.Mixed_5b = InceptionA(ch(192), 32, ch, eps)
        self.Mixed_5c = InceptionA(self.Mixed_5b.out_channels, 64, ch, eps)
        self.Mixed_5d = InceptionA(self.Mixed_5c.out_channels, 64, ch, eps)
        self.Mixed_6a = InceptionB(self.Mixed_5d.out_channels, ch, eps)
        self.Mixed_6b = InceptionC(self.Mixed_6a.out_channels, 128, ch, eps)
        self.Mixed_6c = InceptionC(self.Mixed_6b.out_channels, 160, ch, eps)
        self.Mixed_6d = InceptionC(self.Mixed_6c.out_channels, 160, ch, eps)
        self.Mixed_6e = InceptionC(self.Mixed_6d.out_channels, 192, ch, eps)
        self.AuxLogits = InceptionAux(self.Mixed_6e.out_channels, cfg.num_classes, ch, eps) if cfg.aux_logits else None
        self.Mixed_7a = InceptionD(self.Mixed_6e.out_channels, ch, eps)
        self.Mixed_7b = InceptionE(self.Mixed_7a.out_channels, ch, eps)
        self.Mixed_7c = InceptionE(self.Mixed_7b.out_channels, ch, eps)
        assert self.Mixed_7c.out_channels == cfg.feature_dim
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(cfg.feature_dim, cfg.num_classes)
        init_inception_weights(self)
        set_bn_momentum(self, cfg.bn_momentum)
        mean = torch.tensor(cfg.norm_mean or [0.0] * cfg.n_mels, dtype=torch.float32)
        std = torch.tensor(cfg.norm_std or [1.0] * cfg.n_mels, dtype=torch.float32)
        # non-persistent: the statistics travel in the config, the state_dict stays the official one
        self.register_buffer("norm_mean", mean.view(1, 1, -1, 1), persistent=False)
        self.register_buffer("norm_std", std.view(1, 1, -1, 1), persistent=False)

    @property
    def feature_dim(self) -> int:
        return self.cfg.feature_dim

    def standardize(self, mel: torch.Tensor) -> torch.Tensor:
        """`Tensor[B, F, T]` (or `[B, 1, F, T]`) on [0, 1] -> standardised `Tensor[B, 1, F, T]`."""
        if mel.dim() == 3:
            mel = mel.unsqueeze(1)
        if mel.dim() != 4 or mel.shape[1] != 1 or mel.shape[2] != self.cfg.n_mels:
            raise ValueError(f"Melception expects [B, {self.cfg.n_mels}, T] mels, got {tuple(mel.shape)}")
        return (mel - self.norm_mean) / self.norm_std

    def trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Standardised `Tensor[B, 1, F, T]` -> (Mixed_7c map `Tensor[B, D, h, w]`, aux logits or None)."""
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
                     "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                     "Mixed_6e"):
            x = getattr(self, name)(x)
        aux = self.AuxLogits(x) if (self.AuxLogits is not None and self.training) else None
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        return x, aux

    def forward(self, mel: torch.Tensor) -> dict[str, torch.Tensor]:
        x, aux = self.trunk(self.standardize(mel))
        feats = torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, (1, 1)), 1)
        feats = self.dropout(feats)
        # the reference's "logits_unbiased" (used by ISc) is fc without its bias
        unbiased = feats @ self.fc.weight.T
        out = {"features": feats, "logits_unbiased": unbiased, "logits": unbiased + self.fc.bias}
        if aux is not None:
            out["aux_logits"] = aux
        return out
