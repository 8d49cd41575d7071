"""Low-rank adapters (LoRA, Hu et al. 2021) as a pure `nn.Module` wrapper around `nn.Linear`.

    y = base(x) + (alpha / rank) * x A^T B^T        A: Tensor[rank, in], B: Tensor[out, rank]

`A` starts Kaiming-uniform and `B` at zero (the paper's / PEFT's initialisation), so a freshly wrapped model
computes exactly what its base computes, and only `A`, `B` learn while the base stays frozen. Wrapping keeps
the base's own parameter names under `<name>.base.` and adds `<name>.lora_A`, `<name>.lora_B`;
`merge_lora` folds `W + (alpha / rank) B A` back into plain `nn.Linear`s with the original names, so a merged
model is an ordinary model of the same class.

Target patterns are `fnmatch` globs on module names ("blocks.*.attn.query"); a pattern without a dot or "*"
prefix also matches as a suffix ("attn.query" matches "blocks.3.attn.query").
"""

from __future__ import annotations

import fnmatch
import math

import torch
from torch import Tensor, nn

# The GPT's attention q/k/v/output projections and both MLP layers (models/gpt.py names).
DEFAULT_TARGETS: tuple[str, ...] = ("attn.query", "attn.key", "attn.value", "attn.proj", "mlp.0", "mlp.2")
LORA_KEYS = (".lora_A", ".lora_B")


class LoRALinear(nn.Module):
    """`nn.Linear` + a low-rank update. Input `Tensor[..., in]` -> `Tensor[..., out]`."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.base = base
        self.rank, self.alpha = rank, float(alpha)
        self.scale = self.alpha / rank
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=w.device, dtype=w.dtype))
        if w.device.type != "meta":
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear's own weight init

    def forward(self, x: Tensor) -> Tensor:
        return self.base(x) + (x @ self.lora_A.to(x.dtype).t() @ self.lora_B.to(x.dtype).t()) * self.scale

    def merged(self) -> nn.Linear:
        """A plain `nn.Linear` computing the same function (weight `W + scale * B @ A`)."""
        b = self.base
        out = nn.Linear(b.in_features, b.out_features, bias=b.bias is not None, device=b.weight.device,
                        dtype=b.weight.dtype)
        with torch.no_grad():
            delta = (self.lora_B.double() @ self.lora_A.double()) * self.scale  # fp64: merged == unmerged
            out.weight.copy_((b.weight.double() + delta).to(b.weight.dtype))
            if b.bias is not None:
                out.bias.copy_(b.bias)
        return out


def matches(name: str, patterns: tuple[str, ...] | list[str]) -> bool:
    """True when module/parameter `name` matches a glob in `patterns` (whole name, or as a dotted suffix)."""
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(name, f"*.{p}") for p in patterns)


def _set_child(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def add_lora(model: nn.Module, rank: int, alpha: float, targets: tuple[str, ...] = DEFAULT_TARGETS) -> list[str]:
    """Wrap every `nn.Linear` whose name matches `targets` in place; returns the wrapped names.

    Raises ValueError when nothing matches (a typo in a pattern must not silently train nothing)."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and matches(n, targets)]
    if not names:
        raise ValueError(f"no Linear layer matches the LoRA targets {', '.join(targets)}")
    for name in names:
        _set_child(model, name, LoRALinear(model.get_submodule(name), rank, alpha))
    return names


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every `LoRALinear` by its merged `nn.Linear` (in place; returns `model`)."""
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            _set_child(model, name, module.merged())
    return model


def is_lora_key(key: str) -> bool:
    return key.endswith(LORA_KEYS)


def base_key(key: str) -> str:
    """The plain model's name of a wrapped model's state-dict key ("x.base.weight" -> "x.weight")."""
    return key.replace(".base.", ".")
