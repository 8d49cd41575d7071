"""LoRA transformer checkpoints -> plain GPT weights (what `load_model` builds for a transformer).

Two kinds of file carry LoRA weights (see models/lora.py for the names):
- the trainer's own `best.ckpt` / `last.ckpt` of a `--lora-rank` run: the whole wrapped model
  (`<layer>.base.weight`, `<layer>.lora_A`, `<layer>.lora_B`, ...);
- the small adapter file such a run writes (`checkpoints/adapter.ckpt`): only the trained tensors (the
  `lora_A` / `lora_B` pairs and any unfrozen plain weights, e.g. a new class table), with
  `extra.adapter = {base_path, base_sha256, rank, alpha, targets}`. The base is found through the recorded
  path (or `base=` / `vgs generate --base`) and must have the recorded SHA-256.

Both are merged here on the state dicts (W + alpha/rank * B @ A, in fp64), so the model that comes out is an
ordinary GPT and a merged file (`--merge`) is an ordinary transformer checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from vgs_cli.checkpoint import load_checkpoint
from vgs_cli.errors import CheckpointError
from vgs_cli.fsutil import file_sha256
from vgs_cli.models.lora import base_key, is_lora_key

State = dict[str, torch.Tensor]


def is_adapter(ckpt: dict[str, Any]) -> bool:
    return isinstance(ckpt.get("extra", {}).get("adapter"), dict)


def merge_lora_state(state: State, scale: float) -> State:
    """A wrapped model's state -> the plain model's: every `x.lora_A`/`x.lora_B` pair folded into
    `x.base.weight` (`Tensor[out, in] + scale * B[out, r] @ A[r, in]`), `.base.` dropped from the names."""
    out: State = {}
    for key, value in state.items():
        if is_lora_key(key):
            continue
        if key.endswith(".base.weight") and f"{key[:-len('.base.weight')]}.lora_A" in state:
            prefix = key[:-len(".base.weight")]
            delta = state[f"{prefix}.lora_B"].double() @ state[f"{prefix}.lora_A"].double()
            value = (value.double() + scale * delta).to(value.dtype)
        out[base_key(key)] = value
    return out


def _base_path(ckpt: dict[str, Any], path: Path, base: str | os.PathLike | None) -> Path:
    info = ckpt["extra"]["adapter"]
    recorded = info.get("base_path", "")
    if base is not None:
        found = Path(base)
    elif recorded and Path(recorded).is_file():
        found = Path(recorded)
    else:
        raise CheckpointError(f"{path} is a LoRA adapter whose base {recorded or '(not recorded)'} is not there; "
                              "pass the base transformer checkpoint with --base")
    want = info.get("base_sha256", "")
    if want and file_sha256(found) != want:
        raise CheckpointError(f"{found} is not the base this adapter was trained on (sha256 "
                              f"{file_sha256(found)[:12]}... != {want[:12]}...; it was {recorded}); pass that "
                              "file with --base")
    return found


def adapter_base_state(ckpt: dict[str, Any], path: Path, base: str | os.PathLike | None = None) -> State:
    """The full wrapped-model state of an adapter file: its base's weights (checked by SHA-256) with the
    adapter's tensors on top, in the wrapped names."""
    base_path = _base_path(ckpt, path, base)
    base_ckpt = load_checkpoint(base_path, stage="transformer", mmap=True)
    base_state = dict(base_ckpt["state_dict"])
    if is_adapter(base_ckpt):
        base_state = adapter_base_state(base_ckpt, base_path)  # an adapter on an adapter: resolve down
        base_state = merge_lora_state(base_state, _scale(base_ckpt))
    elif any(is_lora_key(k) for k in base_state):
        base_state = merge_lora_state(base_state, _scale(base_ckpt))
    adapter = ckpt["state_dict"]
    targets = {k[:-len(".lora_A")] for k in adapter if k.endswith(".lora_A")}
    state: State = {}
    for key, value in base_state.items():
        prefix, _, leaf = key.rpartition(".")
        state[f"{prefix}.base.{leaf}" if prefix in targets else key] = value
    state.update(adapter)
    return state


def _scale(ckpt: dict[str, Any]) -> float:
    ft = ckpt.get("config", {}).get("finetune", {})
    rank = int(ft.get("lora_rank", 0) or 0)
    return float(ft.get("lora_alpha", 0.0) or rank) / max(rank, 1)


def transformer_state(ckpt: dict[str, Any], path: str | os.PathLike,
                      base: str | os.PathLike | None = None) -> State:
    """The plain GPT state of any transformer checkpoint: plain files unchanged, LoRA runs and adapter files
    (base + adapter) merged."""
    state = ckpt["state_dict"]
    if is_adapter(ckpt):
        state = adapter_base_state(ckpt, Path(path), base)
    if any(is_lora_key(k) for k in state):
        state = merge_lora_state(state, _scale(ckpt))
    return state


def merge_inputs(ckpt: dict[str, Any], path: str | os.PathLike, base: str | os.PathLike | None = None) -> list[Path]:
    """The files a merge of `ckpt` (at `path`) stands on: itself, then its base (an adapter's recorded or given
    base, down a chain of adapters; a LoRA run's `--init` checkpoint, which its adapter.ckpt records as base).
    Overwriting any of them with the merge would destroy what the adapter needs."""
    paths = [Path(path)]
    if is_adapter(ckpt):
        base_path = _base_path(ckpt, Path(path), base)
        paths += merge_inputs(load_checkpoint(base_path, stage="transformer", mmap=True), base_path)
    elif any(is_lora_key(k) for k in ckpt["state_dict"]):
        init = (ckpt.get("extra") or {}).get("init") or {}
        paths += [Path(init["path"])] if init.get("path") else []
    return paths
