"""PatchGAN discriminator (pix2pix `NLayerDiscriminator`, as in taming / SpecVQGAN) on 1-channel mels.

Layout with n_layers = 3, ndf = 64 (official `loss.discriminator.main.<i>`): conv 1->64 k4 s2 (bias), then
[conv (no bias), BatchNorm, LeakyReLU 0.2] with 128 (s2), 256 (s2), 512 (s1) channels, and conv 512->1 k4 s1.
`Tensor[B, 1, 80, 848] -> Tensor[B, 1, 8, 104]` logits, one per overlapping patch.
"""

from __future__ import annotations

import torch
from torch import nn


class PatchDiscriminator(nn.Module):
    def __init__(self, in_channels: int = 1, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.main = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # pix2pix / taming `weights_init`: N(0, 0.02) convs, N(1, 0.02) BatchNorm scales.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`Tensor[B, C, F, T] -> Tensor[B, 1, F', T']` patch logits."""
        return self.main(x)
