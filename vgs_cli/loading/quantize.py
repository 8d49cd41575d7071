"""Faster inference for the GPT: int8 weights on CPU (`--quantize int8`) and reduced-precision autocast on GPU.

`quantize_gpt(gpt, "int8")` swaps the `nn.Linear` layers of the transformer blocks for torch's own
dynamically quantized Linear (`torch.ao.nn.quantized.dynamic.Linear`: int8 weights with one symmetric scale
per output channel, activations quantized per call, fbgemm/oneDNN int8 GEMM). Sampling one token at paper size reads every
weight once, so a quarter of the bytes is most of the gain. Why this path and not torchao's `quantize_`,
and the measured speed and quality (KL of the next-token distributions): README, "Faster generation".

Kept in fp32 (measured to matter or not worth it): the output `head` (its logits are what the sampler
draws from: int8 there moved the next-token distributions most per byte saved), the condition embedders
(run once per window) and the embeddings/LayerNorms (tiny). Quantization copies the model; the fp32 one
is left untouched unless asked (`inplace`).
"""

from __future__ import annotations

import copy
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import torch
from torch import nn

from vgs_cli.errors import VgsError

QUANTIZE_MODES: tuple[str, ...] = ("none", "int8")
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def quantize_gpt(gpt: nn.Module, mode: str = "int8", keep_fp32: tuple[str, ...] = ("head",),
                 inplace: bool = False) -> nn.Module:
    """`gpt` (a `models.gpt.GPT`) with int8 Linear layers, in eval mode; `mode` "none" returns it as is.

    `keep_fp32`: names of Linear modules (as in `named_modules`, e.g. "head", "blocks.0.mlp.2") left in
    fp32. `inplace` swaps the layers of `gpt` itself (no fp32 copy in memory), else a copy is quantized.
    Only CPU: torch's dynamic int8 kernels have no CUDA version (use `precision="bf16"` there)."""
    if mode == "none":
        return gpt
    if mode not in QUANTIZE_MODES:
        raise VgsError(f"unknown --quantize {mode!r} (choose one of {', '.join(QUANTIZE_MODES)})")
    if next(gpt.parameters()).device.type != "cpu":
        raise VgsError("--quantize int8 runs on the CPU only; on a GPU use --precision bf16 (or fp16) instead")
    model = (gpt if inplace else copy.deepcopy(gpt)).eval()
    names = [name for name, m in model.named_modules() if type(m) is nn.Linear and name not in keep_fp32]
    with warnings.catch_warnings():
        # torch >= 2.10 marks torch.ao.quantization deprecated in favour of torchao; it is still the
        # fastest int8 path on this CPU torch (README) and is covered by the tests, which fail if it goes.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        # One layer per core at a time: fbgemm's weight packing (most of the ~2.3 s at paper size) runs on
        # one thread, and the ops release the GIL. The pool is as wide as torch's own thread count.
        with ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads())) as pool:
            layers = list(pool.map(lambda n: _int8_linear(model.get_submodule(n)), names))
    for name, layer in zip(names, layers, strict=True):
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent), attr, layer)
    return model


def _int8_linear(linear: nn.Linear) -> nn.Module:
    """`linear` as torch's dynamic int8 Linear, weights quantized per output channel (symmetric).

    Not `torch.ao.quantization.quantize_dynamic`: its default gives ONE scale per weight matrix, while per
    channel keeps every output row exact to 1/127 of that row's own range (rows differ several-fold in
    trained GPTs). Rounding is done here because `torch.quantize_per_channel` took longer than the rest.
    Called inside `quantize_gpt`'s warnings context (torch.ao's deprecation notices)."""
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    w = linear.weight.detach().float()
    low, high = w.aminmax(dim=1)
    scale = (torch.maximum(-low, high) / 127.5).clamp(min=torch.finfo(torch.float32).eps)
    ints = torch.round(w / scale[:, None]).clamp_(-128, 127).to(torch.int8)
    zero = torch.zeros_like(scale, dtype=torch.long)
    qweight = torch._make_per_channel_quantized_tensor(ints, scale.double(), zero, 0)
    q = QLinear(1, 1, dtype=torch.qint8)  # 1 x 1: its placeholder costs nothing to pack
    q.in_features, q.out_features = linear.in_features, linear.out_features
    bias = None if linear.bias is None else linear.bias.detach().float()
    q.set_weight_bias(qweight, bias)
    return q


def check_speed_options(quantize: str, precision: str) -> None:
    """Refuse unknown or conflicting `--quantize` / `--precision` values before any model is loaded."""
    if quantize not in QUANTIZE_MODES:
        raise VgsError(f"unknown --quantize {quantize!r} (choose one of {', '.join(QUANTIZE_MODES)})")
    if precision not in PRECISIONS:
        raise VgsError(f"unknown --precision {precision!r} (choose one of {', '.join(PRECISIONS)})")
    if quantize != "none" and precision != "fp32":
        raise VgsError(f"--quantize {quantize} runs its own int8 kernels: drop --precision {precision} "
                       "(int8 is for the CPU, bf16/fp16 for a GPU)")


def quantized_layers(gpt: nn.Module) -> Iterator[str]:
    """Names of the int8 Linear layers of a model from `quantize_gpt` (for tests and reports)."""
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    return (name for name, m in gpt.named_modules() if isinstance(m, QLinear))


def autocast(device: torch.device, precision: str = "fp32"):
    """The context sampling runs in: fp32 = no autocast; bf16/fp16 = autocast on `device` (the KV cache then
    takes that dtype, see `models.sampling`). fp16 only on CUDA (CPU fp16 matmuls are slow or missing)."""
    import contextlib

    if precision == "fp32":
        return contextlib.nullcontext()
    if precision not in PRECISIONS:
        raise VgsError(f"unknown --precision {precision!r} (choose one of {', '.join(PRECISIONS)})")
    if precision == "fp16" and device.type != "cuda":
        raise VgsError("--precision fp16 needs a GPU (--device cuda); on the CPU use bf16 or --quantize int8")
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])
