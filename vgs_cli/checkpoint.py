"""The one checkpoint format: a single self-describing file, safe to load with `weights_only=True`.

    {
      "format": "vgs-checkpoint", "format_version": 1, "vgs_version": "0.1.0",
      "stage": "codebook" | "transformer" | "vocoder" | "melception" | "vggishish" | ...,
      "config": {...},          # the stage config's to_dict(): enough to rebuild the model
      "state_dict": {...},      # inference weights of the stage's main model
      "extra": {...},           # provenance: data manifest hash, codebook hash, classes, step, ...
      "aux_state": {...},       # optional: {name: state_dict} of training-only models that came with the
                                #   weights (an imported official codebook's discriminator "disc" and "lpaps")
      "train_state": {...}      # optional: optimisers, schedulers, scaler, RNG, other models, step
    }

Only plain containers, numbers, strings and tensors are stored, so `torch.load(weights_only=True)` works and
loading never executes code. Files are written atomically (temp file + rename).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import torch

from vgs_cli import __version__
from vgs_cli.errors import CheckpointError
from vgs_cli.fsutil import atomic_path

FORMAT = "vgs-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(
    path: str | os.PathLike,
    *,
    stage: str,
    config: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    extra: dict[str, Any] | None = None,
    train_state: dict[str, Any] | None = None,
    aux_state: dict[str, dict[str, torch.Tensor]] | None = None,
) -> Path:
    """Write a checkpoint atomically and return its path."""
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "vgs_version": __version__,
        "stage": stage,
        "config": config,
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "extra": extra or {},
    }
    if train_state is not None:
        payload["train_state"] = train_state
    if aux_state:
        payload["aux_state"] = {n: {k: v.detach().cpu() for k, v in sd.items()} for n, sd in aux_state.items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | os.PathLike, stage: str | tuple[str, ...] | None = None,
                    map_location: str | torch.device = "cpu", mmap: bool = False) -> dict[str, Any]:
    """Load and validate a checkpoint; `stage` (one name or several) is checked when given.

    `mmap=True` maps the tensors from the file instead of reading them into memory (for inference loading of
    big models: the weights are then paged in once, not held twice)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable vgs checkpoint ({first[:160]})") from None
    except Exception as exc:  # the unpickler refusing a global is reported as UnpicklingError
        first = (str(exc).strip().splitlines() or [""])[0]  # one line: torch's message spans several
        raise CheckpointError(f"{path}: refused to load ({type(exc).__name__}: {first[:160]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a vgs checkpoint (use `vgs import` for official SpecVQGAN files)")
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {ckpt.get('format_version')} is not supported "
            f"(this vgs reads version {FORMAT_VERSION})"
        )
    if stage is not None:
        wanted = (stage,) if isinstance(stage, str) else tuple(stage)
        if ckpt.get("stage") not in wanted:
            raise CheckpointError(f"{path}: is a {ckpt.get('stage')!r} checkpoint, expected {' or '.join(wanted)}")
    return ckpt


def checkpoint_summary(ckpt: dict[str, Any]) -> dict[str, Any]:
    """A small dict for `vgs info`: stage, version, parameter count, provenance."""
    n_params = sum(int(v.numel()) for v in ckpt["state_dict"].values() if v.is_floating_point())
    return {
        "stage": ckpt["stage"],
        "format_version": ckpt["format_version"],
        "vgs_version": ckpt.get("vgs_version"),
        "parameters": n_params,
        "has_train_state": "train_state" in ckpt,
        **{f"extra.{k}": v for k, v in ckpt.get("extra", {}).items() if not isinstance(v, (dict, list))},
    }
