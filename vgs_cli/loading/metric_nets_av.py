"""The audio-visual metric networks' weights -> models: Synchformer (DeSync), ImageBind-huge (IB-score).

    model, sha = load_synchformer(weights_dir=None, device="cpu")   # the published file, strictly loaded
    model, sha = load_imagebind(weights_dir=None, device="cpu")     # its vision and audio paths, strictly

The file is found through the weights registry (`loading/weights.py`: --weights-dir, else the cache, else a
download). `synchformer_state_dict.pth` is a plain state dict (MMAudio release v0.1; av-benchmark loads it
with `torch.load(weights_only=True)` and a strict `load_state_dict`); a file of another layout is one line
naming the missing / unexpected / misshaped keys. `imagebind_huge.pth` is a plain state dict too (ImageBind's
`imagebind_huge(pretrained=True)` loads it strictly); it also holds the text, depth, thermal and IMU paths, which
the IB-score does not use: exactly the keys under `models.imagebind.dropped_prefixes()` are set aside, every
other key must match the vision and audio paths.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from vgs_cli.errors import CheckpointError
from vgs_cli.fsutil import file_sha256
from vgs_cli.loading.models import load_state_strict
from vgs_cli.loading.weights import weight_path
from vgs_cli.models.imagebind import ImageBind, ImageBindConfig, dropped_prefixes
from vgs_cli.models.synchformer import Synchformer, SynchformerConfig


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """A plain state dict from a torch file (weights only): one-line CheckpointError for anything else."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch raises pickle / zip / RuntimeError variants for files of other kinds
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable torch weights file ({first})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a plain state dict (name -> tensor) as published")
    return state


def load_synchformer(weights_dir: str | os.PathLike | None = None, device: str = "cpu",
                     cfg: SynchformerConfig | None = None) -> tuple[Synchformer, str]:
    """`-> (Synchformer in eval mode on device, the file's SHA-256)`."""
    path = weight_path("synchformer", weights_dir)
    state = read_state(path)
    with torch.device("meta"):  # no random initialisation of 237 M values that the file replaces
        model = Synchformer(cfg or SynchformerConfig())
    load_state_strict(model, state, f"{path} (Synchformer)", assign=True)
    return model.float().to(device).eval(), file_sha256(path)


def load_imagebind(weights_dir: str | os.PathLike | None = None, device: str = "cpu",
                   cfg: ImageBindConfig | None = None) -> tuple[ImageBind, str]:
    """`-> (ImageBind's vision + audio paths in eval mode on device, the file's SHA-256)`."""
    path = weight_path("imagebind", weights_dir)
    state = read_state(path)
    drop = dropped_prefixes()
    state = {k: v for k, v in state.items() if not k.startswith(drop)}  # memory-mapped: never read
    with torch.device("meta"):  # no random initialisation of 719 M values that the file replaces
        model = ImageBind(cfg or ImageBindConfig())
    load_state_strict(model, state, f"{path} (ImageBind-huge)", assign=True)
    return model.float().to(device).eval(), file_sha256(path)
