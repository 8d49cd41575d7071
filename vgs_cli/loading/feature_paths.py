"""How a visual feature extractor runs on this machine: fp32, bf16 autocast or int8 static quantization.

    path = FeaturePath(net, "int8", image_size=224)   # net: the fp32 network in eval mode
    path.calibrate(x_calib)                           # int8 only: Tensor[<=8, 3, S, S], once
    feats = path(x)                                   # Tensor[N, 3, S, S] -> float32 Tensor[N, dim]

The kind a feature was made with is recorded in the extractor settings (`precision`, absent = "fp32"), so a
transformer never meets features made another way (`extractors.check_same_features`, used by training and
generation).

- "fp32": the network with batch norm folded (loading/extractors.py), eager. What `vgs prepare` makes by
  default: its ResNet-50 features must match the official ones.
- "bf16": batch norm folded, channels-last tensors (oneDNN's native conv layout), CPU autocast to bfloat16.
  Pays only where the CPU does bf16 natively (AVX512-BF16 or AMX, `cpu.cpu_info().bf16`): on AVX2 oneDNN
  emulates it, ~4x SLOWER than fp32 (issue 28's probe). Still run there when the settings ask for it (the
  features must be made the way the transformer's were), with a note.
- "int8": static post-training quantization through torch's FX graph mode with the `x86` backend
  (`torch.ao.quantization.quantize_fx`, the x86 default qconfig: per-channel symmetric int8 weights, per-tensor
  uint8 activations, histogram calibration, conv+bn+relu and add+relu fused, oneDNN/fbgemm int8 kernels; VNNI
  where the CPU has it, AVX2 otherwise). Why this path and not PT2E (torchao's `prepare_pt2e` +
  `X86InductorQuantizer`), which torch's deprecation note points to: PT2E's converted graph runs int8 only
  once `torch.compile` (inductor, a C++ compiler, minutes on 2 cores, per process and input shape) lowers it,
  and torchao is another dependency pinned to torch versions; the FX path runs eagerly with real int8 kernels
  in the torch that is installed. torch marks it deprecated, so the tests fail loudly if it goes.
  Calibration: `CALIBRATION_FRAMES` evenly spaced distinct frames of the first clip an extractor is given
  (`vgs generate`: the clip itself; `vgs prepare`: the first clip each worker takes), once per extractor.
  Only ResNet-50 (`INT8_EXTRACTORS`): EfficientNet-Lite0's BN-folded convolutions are quantized before their
  ReLU6, which the x86 backend does not fuse, and the features came out at cosine 0.6 to fp32 on real VAS
  frames (and its depthwise convolutions were not faster in int8 at 128 px): int8 is refused for it.

Stated quality bounds (smallest per-frame cosine to fp32 on real VAS frames; tests/test_features_quant.py):
`COSINE_BOUND`. The README's "Visual features at int8/bf16" gives the measured values.
"""

from __future__ import annotations

import copy
import sys
import warnings
from typing import Any

import torch
from torch import nn

from vgs_cli.errors import VgsError

FEATURE_PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8")
INT8_EXTRACTORS: tuple[str, ...] = ("resnet50",)
CALIBRATION_FRAMES = 8  # as good as 16 on real VAS frames (cosine 0.9986 vs 0.9984), half the fp32 pass
COSINE_BOUND = {"fp32": 0.99999, "bf16": 0.99, "int8": 0.99}  # smallest per-frame cosine to fp32 we accept


def recorded_precision(settings: dict[str, Any]) -> str:
    """The kind of features these extractor settings describe (shards and transformers made before the key
    existed were fp32)."""
    return str(settings.get("precision") or "fp32")


def check_precision(name: str, precision: str) -> str:
    """`precision` if `name` can make features that way, else a one-line VgsError."""
    if precision not in FEATURE_PRECISIONS:
        raise VgsError(f"unknown feature precision {precision!r} (choose one of {', '.join(FEATURE_PRECISIONS)})")
    if precision == "int8" and name not in INT8_EXTRACTORS:
        raise VgsError(f"{name} has no int8 feature path (its int8 features were far from fp32: cosine 0.6); "
                       f"use --feature-precision bf16 or fp32, or int8 with {', '.join(INT8_EXTRACTORS)}")
    return precision


def generation_precision(name: str, settings: dict[str, Any], quantize: str, native_bf16: bool | None = None) -> str:
    """The feature kind `vgs generate` uses for a transformer trained on features with `settings`: the recorded
    kind; a fp32-trained transformer under `--quantize int8` (the measured approximation it stands for: README,
    "Visual features at int8/bf16") takes, for the extractors that have a fast path (`INT8_EXTRACTORS`):
    bf16 where the CPU does bf16 natively (`native_bf16`, default `cpu_info().bf16`): on the AVX-512 BF16
    machine it is faster for a clip than int8 with its one-off calibration (3.3 s vs 1.8 + 2.2 s for 215
    ResNet-50 frames) and closer to fp32 (smallest cosine 0.999994 vs 0.998); else int8 (VNNI or AVX2)."""
    recorded = recorded_precision(settings)
    if recorded == "fp32" and quantize == "int8" and name in INT8_EXTRACTORS:
        if native_bf16 is None:
            from vgs_cli.cpu import cpu_info

            native_bf16 = cpu_info().bf16
        return "bf16" if native_bf16 else "int8"
    return recorded


def _int8_qconfig() -> Any:
    """torch's x86 default mapping (the backend's own choice of observers and fusions)."""
    from torch.ao.quantization import get_default_qconfig_mapping

    return get_default_qconfig_mapping("x86")


class FeaturePath:
    """One way to run an extractor network: `__call__(Tensor[N, 3, S, S] normalised) -> float32 Tensor[N, dim]`.

    `net` is the fp32 network in eval mode, batch norm folded except for int8 (whose FX path fuses
    conv+bn+relu itself: a folded BN leaves an Identity between conv and ReLU that breaks the fusion). The int8 network is built by `calibrate`, on the CPU whatever `device` is."""

    def __init__(self, net: nn.Module, precision: str, image_size: int, device: torch.device):
        from vgs_cli.cpu import cpu_info

        self.precision, self.image_size, self.device = precision, image_size, device
        self.cpu = cpu_info()
        self._fp32 = net
        self.net: Any = None
        if precision == "int8":
            return  # built by calibrate()
        self.net = net.to(device)
        if precision == "bf16" and device.type == "cpu":
            self.net = _static_padding(net, image_size).to(memory_format=torch.channels_last)
            if not self.cpu.bf16:
                print(f"note: this CPU has no native bf16 ({self.cpu.summary()}): the bf16 features the transformer "
                      "was trained on are emulated here, several times slower than fp32", file=sys.stderr)

    @property
    def calibrated(self) -> bool:
        return self.precision != "int8" or self.net is not None

    def describe(self) -> str:
        """Which path runs, for --verbose and the bench."""
        if self.precision == "fp32":
            return "fp32 (batch norm folded, eager)"
        if self.precision == "bf16":
            native = "native" if self.cpu.bf16 or self.device.type != "cpu" else "EMULATED (no AVX512-BF16/AMX)"
            return f"bf16 autocast, channels-last, batch norm folded ({native})"
        isa = "VNNI" if self.cpu.vnni and self.cpu.torch_capability.upper().startswith("AVX512") else "AVX2"
        return (f"int8 static (torch.ao FX, x86 engine, {isa} kernels), calibrated on {CALIBRATION_FRAMES} frames "
                "of the first clip")

    @torch.inference_mode(False)
    def calibrate(self, x: torch.Tensor) -> None:
        """int8: trace, observe `x` (`Tensor[n, 3, S, S]`, n <= CALIBRATION_FRAMES) and convert; once."""
        if self.calibrated:
            return
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        with warnings.catch_warnings():  # torch >= 2.10's deprecation notices for torch.ao.quantization
            warnings.simplefilter("ignore")
            with torch.no_grad():
                x = x.detach().to("cpu", torch.float32).clone()
                prepared = prepare_fx(copy.deepcopy(self._fp32).cpu().eval(), _int8_qconfig(), (x[:1],))
                prepared(x)
                self.net = convert_fx(prepared)
        self._fp32 = None  # the fp32 copy is not needed any more

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.precision == "fp32":
            return self.net(x)
        if self.precision == "int8":
            if self.net is None:
                raise VgsError("int8 features: calibrate() first")
            out = self.net(x.to("cpu").contiguous(memory_format=torch.channels_last))
            return out.to(self.device)
        if self.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16):
            return self.net(x).float()


def _static_padding(net: nn.Module, image_size: int) -> nn.Module:
    """EfficientNet's run-time "same" padding as fixed padding (models/efficientnet.static_padding); others as is."""
    from vgs_cli.models.efficientnet import SameConv2d, static_padding

    if any(isinstance(m, SameConv2d) for m in net.modules()):
        static_padding(net, image_size)
    return net
