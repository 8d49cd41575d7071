"""LPAPS: the learned perceptual *audio* patch similarity (LPIPS on mel spectrograms, VGGish-ish features).

d(x, y) = sum over the five VGGish-ish stages s of  mean_{h,w}  sum_c  w_{s,c} (f̂_s(x) - f̂_s(y))^2_{c,h,w},
where f̂ is the stage output (relu1_2 ... relu5_3 equivalents) normalised to unit length over channels and
w_s are the 1x1 "lin" weights (no bias). Names follow the official `lpaps.pt` / `loss.perceptual_loss.*`:
`scaling_layer.{shift,scale}`, `net.slice<k>.<features index>.*`, `lin<k>.model.1.weight` (index 1 because a
Dropout sits at index 0; the metric is always run in eval mode, so it never drops anything).

Default lin weights are uniform 1.0 (plain sum over channels, LPIPS' "baseline" variant): no learned
weights were ever published for spectrograms. Learned weights load through `load_state_dict`.
"""

from __future__ import annotations

import torch
from torch import nn

from vgs_cli.config.vggishish import VGGishishModelConfig
from vgs_cli.models.vggishish import ScalingLayer, VGGishish, make_features, stage_ends


class FeatureSlices(nn.Module):
    """The VGGish-ish conv stack cut after each stage: `slice1 ... slice5`, modules keyed by their index in
    `VGGishish.features` (so `features.17.weight` becomes `slice4.17.weight`)."""

    def __init__(self, cfg: VGGishishModelConfig) -> None:
        super().__init__()
        features = make_features(cfg)
        start = 0
        self.n_slices = 0
        for k, end in enumerate(stage_ends(features), start=1):
            part = nn.Sequential()
            for i in range(start, end + 1):
                part.add_module(str(i), features[i])
            self.add_module(f"slice{k}", part)
            self.n_slices = k
            start = end + 1

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """`Tensor[B, 1, F, T]` -> one `Tensor[B, C_s, F/2^s, T/2^s]` per stage."""
        outs = []
        for k in range(1, self.n_slices + 1):
            x = getattr(self, f"slice{k}")(x)
            outs.append(x)
        return outs


class NetLinLayer(nn.Module):
    """Channel weights of one stage: `model = [Dropout, Conv2d(C, 1, 1, bias=False)]`."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))
        nn.init.ones_(self.model[1].weight)


def normalize_channels(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Unit L2 norm over the channel axis: `Tensor[B, C, H, W]`."""
    return x / (torch.sqrt(torch.sum(x * x, dim=1, keepdim=True)) + eps)


class LPAPS(nn.Module):
    """Frozen perceptual distance: `(Tensor[B, 1, 80, T], Tensor[B, 1, 80, T])` on [-1, 1] -> `Tensor[B]`."""

    def __init__(self, cfg: VGGishishModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.scaling_layer = ScalingLayer(cfg.n_mels)
        self.net = FeatureSlices(cfg)
        self.chns = cfg.stage_channels
        for k, c in enumerate(self.chns):
            self.add_module(f"lin{k}", NetLinLayer(c))
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_vggishish(cls, model: VGGishish) -> LPAPS:
        """Take the conv weights and the standardisation from a VGGish-ish classifier (lin weights uniform)."""
        lp = cls(model.cfg)
        src = model.state_dict()
        dst = {k: v for k, v in lp.state_dict().items() if k.startswith("lin")}
        dst["scaling_layer.shift"] = src["scaling_layer.shift"]
        dst["scaling_layer.scale"] = src["scaling_layer.scale"]
        for k in range(1, lp.net.n_slices + 1):
            for name in getattr(lp.net, f"slice{k}").state_dict():
                dst[f"net.slice{k}.{name}"] = src[f"features.{name}"]
        lp.load_state_dict(dst, strict=True)
        return lp

    def train(self, mode: bool = True) -> LPAPS:
        # A fixed metric: dropout in the lin layers (and any BatchNorm) must never switch to training mode,
        # whatever the trainer does to the modules around it.
        return super().train(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        feats_x = self.net(self.scaling_layer(x))
        feats_y = self.net(self.scaling_layer(y))
        total = x.new_zeros(x.shape[0])
        for k, (fx, fy) in enumerate(zip(feats_x, feats_y, strict=True)):
            diff = (normalize_channels(fx) - normalize_channels(fy)) ** 2
            total = total + getattr(self, f"lin{k}").model(diff).mean(dim=(1, 2, 3))
        return total
