"""Inception-v3 building blocks with torchvision's parameter names (so official weights load 1:1).

Every block takes a channel function `ch(n) -> int` that maps the official channel count `n` to the one
used here: the identity for the official network, a multiplier for the tiny CPU variant. Each block
exposes `out_channels` so the next block's input size is derived, never written by hand.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

ChannelFn = Callable[[int], int]


class BasicConv2d(nn.Module):
    """conv (no bias) -> BatchNorm(eps 1e-3) -> ReLU: `Tensor[B, C_in, H, W] -> Tensor[B, C_out, H', W']`."""

    def __init__(self, in_channels: int, out_channels: int, bn_eps: float = 0.001, **conv_kw) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_kw)
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class InceptionA(nn.Module):
    """35x35-grid block (Mixed_5b/c/d): 1x1, 5x5, double 3x3 and pool branches, spatial size kept."""

    def __init__(self, in_channels: int, pool_features: int, ch: ChannelFn, eps: float) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, ch(64), eps, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, ch(48), eps, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(ch(48), ch(64), eps, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, ch(64), eps, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(ch(64), ch(96), eps, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(ch(96), ch(96), eps, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, ch(pool_features), eps, kernel_size=1)
        self.out_channels = ch(64) + ch(64) + ch(96) + ch(pool_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    """Grid reduction (Mixed_6a): stride-2 3x3, stride-2 double 3x3 and max pool, spatial size ~halved."""

    def __init__(self, in_channels: int, ch: ChannelFn, eps: float) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, ch(384), eps, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, ch(64), eps, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(ch(64), ch(96), eps, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(ch(96), ch(96), eps, kernel_size=3, stride=2)
        self.out_channels = ch(384) + ch(96) + in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, bd, bp], 1)


class InceptionC(nn.Module):
    """17x17-grid block (Mixed_6b..e): factorised 1x7 / 7x1 convolutions, spatial size kept."""

    def __init__(self, in_channels: int, channels_7x7: int, ch: ChannelFn, eps: float) -> None:
        super().__init__()
        c7 = ch(channels_7x7)
        self.branch1x1 = BasicConv2d(in_channels, ch(192), eps, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, eps, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, eps, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, ch(192), eps, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, eps, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, eps, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, eps, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, eps, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, ch(192), eps, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, ch(192), eps, kernel_size=1)
        self.out_channels = 4 * ch(192)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = layer(bd)
        bp = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):
    """Grid reduction (Mixed_7a): stride-2 3x3, stride-2 7x7x3 and max pool."""

    def __init__(self, in_channels: int, ch: ChannelFn, eps: float) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, ch(192), eps, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(ch(192), ch(320), eps, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, ch(192), eps, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(ch(192), ch(192), eps, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(ch(192), ch(192), eps, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(ch(192), ch(192), eps, kernel_size=3, stride=2)
        self.out_channels = ch(320) + ch(192) + in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b7, bp], 1)


class InceptionE(nn.Module):
    """8x8-grid block (Mixed_7b/c): expanded 1x3 + 3x1 branches, spatial size kept."""

    def __init__(self, in_channels: int, ch: ChannelFn, eps: float) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, ch(320), eps, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, ch(384), eps, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(ch(384), ch(384), eps, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(ch(384), ch(384), eps, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, ch(448), eps, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(ch(448), ch(384), eps, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(ch(384), ch(384), eps, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(ch(384), ch(384), eps, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, ch(192), eps, kernel_size=1)
        self.out_channels = ch(320) + 4 * ch(384) + ch(192)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        bp = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([b1, b3, bd, bp], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier on Mixed_6e: `Tensor[B, C, H, W] -> Tensor[B, num_classes]` (training only)."""

    def __init__(self, in_channels: int, num_classes: int, ch: ChannelFn, eps: float) -> None:
        super().__init__()
        self.conv0 = BasicConv2d(in_channels, ch(128), eps, kernel_size=1)
        self.conv1 = BasicConv2d(ch(128), ch(768), eps, kernel_size=5)
        self.fc = nn.Linear(ch(768), num_classes)
        self.fc.stddev = 0.001  # type: ignore[assignment]  # torchvision's init scale for this layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(x, kernel_size=5, stride=3)
        x = self.conv1(self.conv0(x))
        x = torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)
        return self.fc(x)


def set_bn_momentum(module: nn.Module, momentum: float | None) -> None:
    """Running-statistics momentum of every BatchNorm (None = cumulative average); no parameters change."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = momentum


def init_inception_weights(module: nn.Module) -> None:
    """torchvision's Inception3 init: truncated normal (std 0.1, or a layer's `stddev`), BN weight 1 bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            std = float(getattr(m, "stddev", 0.1))
            nn.init.trunc_normal_(m.weight, mean=0.0, std=std, a=-2, b=2)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
