"""Rebuild a trained model from its checkpoint file alone: stage -> config class -> `Model(cfg.model)`.

The table is the one in DEVELOPERS.md; classes are imported lazily by dotted path so loading a vocoder
does not import the GPT (and a stage that is missing from this build fails with a clear message).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vgs_cli.checkpoint import load_checkpoint
from vgs_cli.config.codebook import CodebookConfig
from vgs_cli.config.transformer import TransformerConfig
from vgs_cli.errors import CheckpointError, ConfigError, VgsError
from vgs_cli.fsutil import file_sha256

# stage -> ("module:ConfigClass", "module:ModelClass")
MODELS: dict[str, tuple[str, str]] = {
    "codebook": ("vgs_cli.config.codebook:CodebookConfig", "vgs_cli.models.vqgan:VQGAN"),
    "transformer": ("vgs_cli.config.transformer:TransformerConfig", "vgs_cli.models.gpt:GPT"),
    "vocoder": ("vgs_cli.config.vocoder:VocoderConfig", "vgs_cli.models.melgan:Generator"),
    "melception": ("vgs_cli.config.melception:MelceptionConfig", "vgs_cli.models.melception:Melception"),
    "vggishish": ("vgs_cli.config.vggishish:VGGishishConfig", "vgs_cli.models.vggishish:VGGishish"),
}


def resolve(dotted: str, stage: str) -> Any:
    """Import `package.module:Name`; a module missing from this build is a VgsError, not a traceback."""
    module_name, _, attr = dotted.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise VgsError(f"{stage} checkpoints need {module_name}, which is not available in this build") from None
        raise
    try:
        return getattr(module, attr)
    except AttributeError:
        raise VgsError(f"{stage} checkpoints need {dotted}, which is not available in this build") from None


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], where: str, assign: bool = False) -> None:
    """`load_state_dict(strict=True)` with a one-line CheckpointError naming missing/unexpected/misshaped keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    misshaped = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
                 if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or misshaped:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshaped)):
            if keys:
                more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
                parts.append(f"{label} {', '.join(keys[:5])}{more}")
        raise CheckpointError(f"{where}: weights do not fit the model: {'; '.join(parts)}")
    model.load_state_dict(state, strict=True, assign=assign)


# Models whose every tensor is in the state dict (no non-persistent buffers), so they can be built on the meta
# device and take the file's tensors directly: at paper size the GPT is 1.2 GB, and building it normally costs a
# random initialisation and a second copy in memory.
META_BUILD = ("transformer",)


def load_model(path: str | os.PathLike, stage: str | tuple[str, ...] | None = None, *,
               device: str | torch.device = "cpu") -> tuple[nn.Module, Any, dict[str, Any]]:
    """(model in eval mode on `device`, its stage config, the checkpoint dict) from a vgs checkpoint.

    `stage` (one name or several) is checked against the file; corrupt files, other stages and weights
    that do not match the config raise CheckpointError.
    """
    ckpt = load_checkpoint(path, stage=stage, mmap=True)
    name = ckpt.get("stage")
    if name not in MODELS:
        raise CheckpointError(f"{path}: stage {name!r} has no model to load (known: {', '.join(MODELS)})")
    config_path, model_path = MODELS[name]
    config_cls, model_cls = resolve(config_path, name), resolve(model_path, name)
    try:
        cfg = config_cls.from_dict(ckpt["config"], where=f"{path} config")
    except ConfigError as exc:
        raise CheckpointError(f"{exc} (checkpoint written by vgs {ckpt.get('vgs_version')})") from None
    if name in META_BUILD:
        with torch.device("meta"):
            model = model_cls(cfg.model)
        load_state_strict(model, ckpt["state_dict"], str(path), assign=True)
    else:
        model = model_cls(cfg.model)
        load_state_strict(model, ckpt["state_dict"], str(path))
    return model.to(device).eval(), cfg, ckpt


def check_codebook_match(transformer_ckpt: str | Path | dict[str, Any], codebook_path: str | Path) -> None:
    """Raise VgsError unless `codebook_path` is the codebook file the transformer was trained with
    (sha256 recorded at training time; without a record, at least the vocabulary sizes must agree)."""
    ckpt = transformer_ckpt if isinstance(transformer_ckpt, dict) else load_checkpoint(transformer_ckpt, "transformer")
    extra = ckpt.get("extra", {})
    want = extra.get("codebook_sha256") or ckpt.get("config", {}).get("codebook_sha256")
    if want:
        got = file_sha256(codebook_path)
        if got != want:
            raise VgsError(f"{codebook_path} is not the codebook this transformer was trained with "
                           f"(sha256 {got[:12]}... != {want[:12]}...; it was trained with {extra.get('codebook_path')})")
        return
    cb = load_checkpoint(codebook_path, stage="codebook")
    n_embed = CodebookConfig.from_dict(cb["config"]).model.n_embed
    vocab = TransformerConfig.from_dict(ckpt["config"]).model.vocab_size
    if n_embed != vocab:
        raise VgsError(f"{codebook_path} has {n_embed} codes but the transformer predicts {vocab}")
