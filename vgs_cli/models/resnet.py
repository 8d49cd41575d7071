"""ResNet-50 with torchvision's parameter names, so torchvision's published ImageNet weights load strictly.

SpecVQGAN's visual features are the 2048-d global-average-pooled output of torchvision's ImageNet ResNet-50
(the layer before `fc`), one per frame at 21.5 fps. `forward` returns those features; `logits` the classes.
"""

from __future__ import annotations

import torch
from torch import nn


class Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 bottleneck (stride on the 3x3 conv): `Tensor[B, in, H, W] -> [B, 4*width, H/s, W/s]`."""

    expansion = 4

    def __init__(self, inplanes: int, width: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50(nn.Module):
    """`Tensor[B, 3, H, W]` (ImageNet-normalised RGB) -> `Tensor[B, 2048]` pooled features.

    State-dict names equal `torchvision.models.resnet50()`'s (conv1, bn1, layer1..4.<i>.conv1..bn3,
    downsample.0/1, fc): 320 entries, 25,557,032 parameters."""

    feature_dim = 2048
    layers = (3, 4, 6, 3)

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = 64
        for i, (blocks, width) in enumerate(zip(self.layers, (64, 128, 256, 512), strict=True)):
            stride = 1 if i == 0 else 2
            layer, inplanes = self._make_layer(inplanes, width, blocks, stride)
            setattr(self, f"layer{i + 1}", layer)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512 * Bottleneck.expansion, num_classes)

    @staticmethod
    def _make_layer(inplanes: int, width: int, blocks: int, stride: int) -> tuple[nn.Sequential, int]:
        out = width * Bottleneck.expansion
        down = None
        if stride != 1 or inplanes != out:
            down = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
        mods = [Bottleneck(inplanes, width, stride, down)] + [Bottleneck(out, width) for _ in range(blocks - 1)]
        return nn.Sequential(*mods), out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """`Tensor[B, 3, H, W] -> Tensor[B, 1000]` ImageNet class scores."""
        return self.fc(self.forward(x))
