"""VGGish-ish: a VGG16-style classifier on 1-channel mel spectrograms (the official `vggishish16.pt`).

State-dict names follow the official file (`features.<i>.*` at the Sequential indices of the 13 convs,
`classifier.{0,2,4}.*`) plus one vgs addition: `scaling_layer.{shift,scale}` `[1, 1, 80, 1]`, the per-mel-bin
standardisation. The official model had no such buffers (its data loader standardised the inputs), so an
importer must fill them from the training statistics; the names and the [-1, 1] convention are those of the
official LPAPS, so LPAPS copies them as they are.
"""

from __future__ import annotations

import torch
from torch import nn

from vgs_cli.config.vggishish import MP, VGGishishModelConfig


class ScalingLayer(nn.Module):
    """Per-mel-bin standardisation of mels on [-1, 1]: `(x - shift) / scale`, buffers `[1, 1, F, 1]`.

    `shift = 2 * mean - 1` and `scale = 2 * std` for statistics measured on the [0, 1] scale, which makes this
    exactly `(x01 - mean) / std`. Identity until `set_stats` is called (or weights are loaded).
    """

    def __init__(self, n_mels: int) -> None:
        super().__init__()
        self.register_buffer("shift", torch.zeros(1, 1, n_mels, 1))
        self.register_buffer("scale", torch.ones(1, 1, n_mels, 1))

    @torch.no_grad()
    def set_stats(self, means: torch.Tensor, stds: torch.Tensor) -> None:
        """Set from per-bin statistics of [0, 1] mels: `means`, `stds` `Tensor[F]`."""
        n = self.shift.shape[2]
        means, stds = torch.as_tensor(means).flatten(), torch.as_tensor(stds).flatten()
        if means.numel() != n or stds.numel() != n:
            raise ValueError(f"expected {n} per-bin statistics, got {means.numel()} means / {stds.numel()} stds")
        self.shift.copy_((2.0 * means - 1.0).view(1, 1, n, 1))
        self.scale.copy_((2.0 * stds).clamp_min(1e-8).view(1, 1, n, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`Tensor[B, 1, F, T] -> Tensor[B, 1, F, T]`."""
        return (x - self.shift) / self.scale


def make_features(cfg: VGGishishModelConfig) -> nn.Sequential:
    """The conv stack: 3x3 conv (+BN) + ReLU per channel entry, 2x2 max-pool per "MP" (torchvision VGG layout)."""
    layers: list[nn.Module] = []
    in_ch = 1
    for v in cfg.conv_layers:
        if v == MP:
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(in_ch, int(v), kernel_size=3, padding=1))
        if cfg.use_bn:
            layers.append(nn.BatchNorm2d(int(v)))
        layers.append(nn.ReLU(inplace=True))
        in_ch = int(v)
    return nn.Sequential(*layers)


def stage_ends(features: nn.Sequential) -> list[int]:
    """Index of the ReLU that closes each max-pool-separated stage (relu1_2, relu2_2, ... relu5_3)."""
    ends, open_stage = [], False
    for i, layer in enumerate(features):
        if isinstance(layer, nn.MaxPool2d):
            if open_stage:
                ends.append(i - 1)
            open_stage = False
        elif isinstance(layer, nn.Conv2d):
            open_stage = True
    if open_stage:
        ends.append(len(features) - 1)
    return ends


class VGGishish(nn.Module):
    """`Tensor[B, 1, 80, T]` (or `[B, 80, T]`) mels on [-1, 1] -> class logits `Tensor[B, num_classes]`."""

    def __init__(self, cfg: VGGishishModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.scaling_layer = ScalingLayer(cfg.n_mels)
        self.features = make_features(cfg)
        self.avgpool = nn.AdaptiveAvgPool2d(tuple(cfg.pool))
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Linear(cfg.feature_dim, cfg.hidden),
            nn.ReLU(True),
            nn.Linear(cfg.hidden, cfg.hidden),
            nn.ReLU(True),
            nn.Linear(cfg.hidden, cfg.num_classes),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # torchvision's VGG initialisation (what the reference used)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled conv features: `Tensor[B, 1, F, T] -> Tensor[B, feature_dim]`."""
        if x.dim() == 3:
            x = x.unsqueeze(1)
        return self.flatten(self.avgpool(self.features(self.scaling_layer(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))
