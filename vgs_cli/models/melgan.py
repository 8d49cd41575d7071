"""MelGAN (Kumar et al. 2019) as SpecVQGAN used it: a [0, 1] 80-bin mel -> 22.05 kHz waveform vocoder.

Module names follow the official layout (`model.<i>` in one Sequential; discriminators under
`model.disc_<k>.model.layer_<j>`) so an official `best_netG.pt` / `netD.pt` loads after renaming
`weight_g` / `weight_v` to the parametrisation names (`official_to_parametrized`). Every convolution is
weight-normalised with `torch.nn.utils.parametrizations.weight_norm` (dim 0, as the reference);
`fold_weight_norm` bakes g * v / ||v|| into plain weights for inference.

Initialisation: the reference calls `weights_init` (N(0, 0.02)) on `m.weight`, which under weight norm is a
derived tensor that the next forward recomputes, so it never took effect; we keep PyTorch's default init.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from vgs_cli.config.vocoder import DiscriminatorConfig, MelGANConfig

_LEAK = 0.2


def wn_conv1d(*args, **kwargs) -> nn.Conv1d:
    return weight_norm(nn.Conv1d(*args, **kwargs))


def wn_conv_transpose1d(*args, **kwargs) -> nn.ConvTranspose1d:
    return weight_norm(nn.ConvTranspose1d(*args, **kwargs))


class ResnetBlock(nn.Module):
    """Dilated residual layer: `Tensor[B, C, S] -> Tensor[B, C, S]` (reflection padding keeps the length)."""

    def __init__(self, dim: int, dilation: int):
        super().__init__()
        # Indices matter: block.2 and block.4 are the official parameter names.
        self.block = nn.Sequential(
            nn.LeakyReLU(_LEAK),
            nn.ReflectionPad1d(dilation),
            wn_conv1d(dim, dim, kernel_size=3, dilation=dilation),
            nn.LeakyReLU(_LEAK),
            wn_conv1d(dim, dim, kernel_size=1),
        )
        self.shortcut = wn_conv1d(dim, dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.block(x)


class Generator(nn.Module):
    """`mel01: Tensor[B, n_mels, T]` on [0, 1] -> `Tensor[B, 1, T * hop]` on (-1, 1).

    Output samples [i*hop, (i+1)*hop) are driven by frame i, which the centred STFT of `audio/spec.py`
    centres on sample i*hop; training segments are built with the same convention (`train/vocoder.py`).
    """

    def __init__(self, cfg: MelGANConfig):
        super().__init__()
        self.cfg = cfg
        mult = 2 ** len(cfg.ratios)
        layers: list[nn.Module] = [
            nn.ReflectionPad1d(3),
            wn_conv1d(cfg.n_mels, mult * cfg.ngf, kernel_size=7),
        ]
        for r in cfg.ratios:
            c_in, c_out = mult * cfg.ngf, mult * cfg.ngf // 2
            layers += [
                nn.LeakyReLU(_LEAK),
                # kernel 2r, stride r, this padding: exactly r output samples per input step, odd r included.
                wn_conv_transpose1d(c_in, c_out, kernel_size=2 * r, stride=r, padding=r // 2 + r % 2,
                                    output_padding=r % 2),
            ]
            layers += [ResnetBlock(c_out, dilation=d) for d in cfg.dilations]
            mult //= 2
        layers += [
            nn.LeakyReLU(_LEAK),
            nn.ReflectionPad1d(3),
            wn_conv1d(cfg.ngf, 1, kernel_size=7),
            nn.Tanh(),
        ]
        self.model = nn.Sequential(*layers)

    @property
    def hop_length(self) -> int:
        return self.cfg.hop_length

    def forward(self, mel01: torch.Tensor) -> torch.Tensor:
        return self.model(mel01)


class ScaleDiscriminator(nn.Module):
    """One scale: `Tensor[B, 1, S]` -> list of every layer's output (features ..., logits `[B, 1, S']`)."""

    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        chans = cfg.channels
        stride = cfg.downsampling_factor
        model = nn.ModuleDict()
        model["layer_0"] = nn.Sequential(
            nn.ReflectionPad1d(7), wn_conv1d(1, chans[0], kernel_size=15), nn.LeakyReLU(_LEAK)
        )
        for n in range(1, cfg.n_layers + 1):
            model[f"layer_{n}"] = nn.Sequential(
                wn_conv1d(chans[n - 1], chans[n], kernel_size=stride * 10 + 1, stride=stride,
                          padding=stride * 5, groups=chans[n - 1] // 4),
                nn.LeakyReLU(_LEAK),
            )
        n = cfg.n_layers
        model[f"layer_{n + 1}"] = nn.Sequential(
            wn_conv1d(chans[n], chans[n + 1], kernel_size=5, padding=2), nn.LeakyReLU(_LEAK)
        )
        model[f"layer_{n + 2}"] = wn_conv1d(chans[n + 1], 1, kernel_size=3, padding=1)
        self.model = model

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for layer in self.model.values():
            x = layer(x)
            outs.append(x)
        return outs


class MultiScaleDiscriminator(nn.Module):
    """`wav: Tensor[B, 1, S]` -> per scale k (input average-pooled k times by 2) the list of layer outputs."""

    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        self.cfg = cfg
        self.model = nn.ModuleDict({f"disc_{k}": ScaleDiscriminator(cfg) for k in range(cfg.num_d)})
        self.downsample = nn.AvgPool1d(4, stride=2, padding=1, count_include_pad=False)

    def forward(self, wav: torch.Tensor) -> list[list[torch.Tensor]]:
        results = []
        for disc in self.model.values():
            results.append(disc(wav))
            wav = self.downsample(wav)
        return results


def fold_weight_norm(module: nn.Module) -> nn.Module:
    """Replace every weight-norm parametrisation in `module` by the plain weight it computes (in place).

    Inference then skips the per-call norm; the state_dict keys become `<conv>.weight`."""
    for sub in module.modules():
        if parametrize.is_parametrized(sub, "weight"):
            parametrize.remove_parametrizations(sub, "weight", leave_parametrized=True)
    return module


_G, _V = "parametrizations.weight.original0", "parametrizations.weight.original1"


def official_to_parametrized(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the reference's `<conv>.weight_g` / `.weight_v` keys to this module's parametrisation keys."""
    out = {}
    for key, value in state_dict.items():
        if key.endswith(".weight_g"):
            key = key[: -len("weight_g")] + _G
        elif key.endswith(".weight_v"):
            key = key[: -len("weight_v")] + _V
        out[key] = value
    return out


def parametrized_to_official(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of `official_to_parametrized` (for exporting in the reference's layout)."""
    out = {}
    for key, value in state_dict.items():
        if key.endswith(_G):
            key = key[: -len(_G)] + "weight_g"
        elif key.endswith(_V):
            key = key[: -len(_V)] + "weight_v"
        out[key] = value
    return out
