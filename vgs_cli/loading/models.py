"""Checkpoint -> model, in one place: every command that turns a vgs checkpoint into a model comes here.

    path = resolve_checkpoint("runs/codebook")          # a file, or a run folder -> checkpoints/best.ckpt
    peek_stage(path)                                    # "codebook" (no tensors read), None if not a vgs file
    model, cfg, ckpt = load_model(path, "codebook")     # stage -> config class -> Model(cfg.model), strict
    check_codebook_match(t_ckpt, codebook_path)         # the transformer's own codebook, or an error

`MODELS` is the table in DEVELOPERS.md, imported explicitly so the import-layer check sees every edge.
`load_state_strict` is the one strict load (a one-line error naming the keys that do not fit).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from vgs_cli.checkpoint import load_checkpoint
from vgs_cli.config.codebook import CodebookConfig
from vgs_cli.config.melception import MelceptionConfig
from vgs_cli.config.transformer import TransformerConfig
from vgs_cli.config.vggishish import VGGishishConfig
from vgs_cli.config.vocoder import VocoderConfig
from vgs_cli.errors import CheckpointError, ConfigError, VgsError
from vgs_cli.fsutil import file_sha256
from vgs_cli.loading.adapters import transformer_state
from vgs_cli.models.gpt import GPT
from vgs_cli.models.melception import Melception
from vgs_cli.models.melgan import Generator, fold_weight_norm, official_to_parametrized
from vgs_cli.models.vggishish import VGGishish
from vgs_cli.models.vqgan import VQGAN

# stage -> (config class, model class); the model is `ModelClass(config.model)`
MODELS: dict[str, tuple[type, type[nn.Module]]] = {
    "codebook": (CodebookConfig, VQGAN),
    "transformer": (TransformerConfig, GPT),
    "vocoder": (VocoderConfig, Generator),
    "melception": (MelceptionConfig, Melception),
    "vggishish": (VGGishishConfig, VGGishish),
}

# Models whose every tensor is in the state dict (no non-persistent buffers), so they can be built on the meta
# device and take the file's tensors directly: at paper size the GPT is 1.2 GB, and building it normally costs a
# random initialisation and a second copy in memory.
META_BUILD = ("transformer",)


# ------------------------------------------------------------------------------------- finding files

def run_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """`<run>/checkpoints/best.ckpt`, else `last.ckpt`, else None."""
    for name in ("best.ckpt", "last.ckpt"):
        path = Path(run_dir) / "checkpoints" / name
        if path.is_file():
            return path
    return None


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file, or a run folder -> its `checkpoints/best.ckpt` (else `last.ckpt`)."""
    path = Path(path)
    if path.is_dir():
        found = run_checkpoint(path)
        if found is None:
            raise CheckpointError(f"{path}: a folder without checkpoints/best.ckpt or checkpoints/last.ckpt")
        return found
    return path


def peek_checkpoint(path: str | os.PathLike) -> dict[str, Any] | None:
    """A vgs checkpoint's dict with its tensors memory-mapped (not read), or None if `path` is not one."""
    try:
        return load_checkpoint(path, mmap=True)
    except CheckpointError:
        return None


def peek_stage(path: str | os.PathLike) -> str | None:
    """The `stage` of a vgs checkpoint without reading its tensors; None if not a vgs checkpoint."""
    ckpt = peek_checkpoint(path)
    return None if ckpt is None else ckpt.get("stage")


def recorded_codebook(transformer_path: str | os.PathLike) -> Path | None:
    """The codebook file a transformer checkpoint recorded at training time, if it still exists."""
    ckpt = peek_checkpoint(transformer_path)
    recorded = (ckpt or {}).get("extra", {}).get("codebook_path")
    return Path(recorded) if recorded and Path(recorded).is_file() else None


# ------------------------------------------------------------------------------------------ loading

def state_diff(model: nn.Module, state: dict[str, torch.Tensor], dtypes: bool = False) -> str | None:
    """None when `state` fits `model` exactly, else one line naming missing/unexpected/misshaped keys
    (and, with `dtypes`, keys of another dtype: the official importer's files must be bit-exact)."""
    own = model.state_dict()
    problems = {
        "missing": [k for k in own if k not in state],
        "unexpected": [k for k in state if k not in own],
        "wrong shape": [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
                        if k in state and tuple(state[k].shape) != tuple(own[k].shape)],
        "wrong dtype": [f"{k} {state[k].dtype} vs {own[k].dtype}" for k in own
                        if dtypes and k in state and state[k].dtype != own[k].dtype],
    }
    parts = [f"{label} {', '.join(keys[:5])}{f' (+{len(keys) - 5} more)' if len(keys) > 5 else ''}"
             for label, keys in problems.items() if keys]
    return "; ".join(parts) or None


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], where: str, assign: bool = False) -> None:
    """`load_state_dict(strict=True)` with a one-line CheckpointError naming missing/unexpected/misshaped keys."""
    diff = state_diff(model, state)
    if diff:
        raise CheckpointError(f"{where}: weights do not fit the model: {diff}")
    model.load_state_dict(state, strict=True, assign=assign)


def _melgan_state(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Vocoder files hold the weight-norm parametrised keys training saves, the official `weight_g`/`weight_v`
    names (renamed here), or already folded weights (the model is folded to take them)."""
    state = official_to_parametrized(state)
    if not any(k.endswith("parametrizations.weight.original0") for k in state):
        fold_weight_norm(model)
    return state


# stage -> (model, file state) -> the state the model takes
STATE_ADAPTERS: dict[str, Callable[[nn.Module, dict[str, torch.Tensor]], dict[str, torch.Tensor]]] = {
    "vocoder": _melgan_state,
}


def build_config(stage: str, config: dict[str, Any], where: str) -> Any:
    """The stage's config dataclass from a checkpoint's `config` dict (strict: unknown keys are errors)."""
    if stage not in MODELS:
        raise CheckpointError(f"{where}: stage {stage!r} has no model to load (known: {', '.join(MODELS)})")
    return MODELS[stage][0].from_dict(config, where=f"{where} config")


def load_model(path: str | os.PathLike, stage: str | tuple[str, ...] | None = None, *,
               device: str | torch.device = "cpu",
               base: str | os.PathLike | None = None) -> tuple[nn.Module, Any, dict[str, Any]]:
    """(model in eval mode on `device`, its stage config, the checkpoint dict) from a vgs checkpoint
    (file or run folder).

    `stage` (one name or several) is checked against the file; corrupt files, other stages and weights
    that do not match the config raise CheckpointError. A LoRA transformer (adapter file or LoRA run) comes
    back merged into a plain GPT; an adapter's base is its recorded file or `base` (loading/adapters.py).
    """
    path = resolve_checkpoint(path)
    ckpt = load_checkpoint(path, stage=stage, mmap=True)
    name = ckpt.get("stage")
    try:
        cfg = build_config(name, ckpt["config"], str(path))
    except ConfigError as exc:
        raise CheckpointError(f"{exc} (checkpoint written by vgs {ckpt.get('vgs_version')})") from None
    model_cls = MODELS[name][1]
    if name in META_BUILD:
        with torch.device("meta"):
            model = model_cls(cfg.model)
        state = transformer_state(ckpt, path, base) if name == "transformer" else ckpt["state_dict"]
        load_state_strict(model, state, str(path), assign=True)
    else:
        model = model_cls(cfg.model)
        state = STATE_ADAPTERS[name](model, ckpt["state_dict"]) if name in STATE_ADAPTERS else ckpt["state_dict"]
        load_state_strict(model, state, str(path))
    return model.to(device).eval(), cfg, ckpt


def check_codebook_match(transformer_ckpt: str | Path | dict[str, Any], codebook_path: str | Path) -> None:
    """Raise VgsError unless `codebook_path` is the codebook file the transformer was trained with
    (sha256 recorded at training time; without a record, at least the vocabulary sizes and grids must agree)."""
    ckpt = (transformer_ckpt if isinstance(transformer_ckpt, dict)
            else load_checkpoint(transformer_ckpt, "transformer", mmap=True))
    extra = ckpt.get("extra", {})
    want = extra.get("codebook_sha256") or ckpt.get("config", {}).get("codebook_sha256")
    if want:
        got = file_sha256(codebook_path)
        if got != want:
            raise VgsError(f"{codebook_path} is not the codebook this transformer was trained with "
                           f"(sha256 {got[:12]}... != {want[:12]}...; it was trained with {extra.get('codebook_path')})")
        return
    cb = load_checkpoint(codebook_path, stage="codebook", mmap=True)
    codebook = CodebookConfig.from_dict(cb["config"]).model
    gpt = TransformerConfig.from_dict(ckpt["config"]).model
    if codebook.n_embed != gpt.vocab_size:
        raise VgsError(f"{codebook_path} has {codebook.n_embed} codes but the transformer predicts {gpt.vocab_size}")
    if tuple(codebook.grid) != tuple(gpt.grid):  # the time geometry (config/transformer.py) follows the grid
        raise VgsError(f"{codebook_path} codes a clip as a {codebook.grid[0]}x{codebook.grid[1]} grid (downsampling "
                       f"{codebook.downsample}x) but the transformer predicts {gpt.grid[0]}x{gpt.grid[1]}")
