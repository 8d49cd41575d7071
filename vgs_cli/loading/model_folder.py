"""Which three checkpoints (transformer, codebook, vocoder) a model flag means: the one resolution that
`vgs generate`, `vgs serve` and `vgs reproduce` share (`default_model.resolve` adds the default model).

    paths = resolve_models("runs/m")                  # a model folder, a run folder or a checkpoint file
    paths.source                                      # "--model runs/m" (default_model.resolve: "$VGS_MODEL" ...)

A model folder holds the models that belong together: `*.ckpt` files and run folders (`<run>/checkpoints/`).
Its codebook is the one the transformer RECORDED when it trained (path and SHA-256): a codebook run trained a
few steps more after the transformer took `last.ckpt` has a `best.ckpt` of other weights, and the recorded file
wins over it whenever it is there (or any codebook file in the folder with the recorded SHA-256, so a moved
folder still works). Only when no file matches is it an error, naming the file to pass with --codebook.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vgs_cli.errors import VgsError
from vgs_cli.fsutil import file_sha256
from vgs_cli.loading.models import peek_checkpoint, peek_stage, run_checkpoint


@dataclass(frozen=True)
class ModelPaths:
    transformer: Path
    codebook: Path
    vocoder: Path | None  # None with the Griffin-Lim vocoder
    base: Path | None = None  # a LoRA adapter's base transformer (default: the path the adapter recorded)
    source: str = ""  # how the model was chosen, for the one line each run prints and the provenance


def find_checkpoints(folder: Path) -> dict[str, list[Path]]:
    """Checkpoints by stage in a model folder: `*.ckpt` files and run folders (`<run>/checkpoints/best.ckpt`)."""
    candidates = sorted(folder.glob("*.ckpt"))
    for sub in [folder, *sorted(p for p in folder.iterdir() if p.is_dir())]:
        ckpt = run_checkpoint(sub)
        if ckpt is not None:
            candidates.append(ckpt)
    found: dict[str, list[Path]] = {}
    for path in candidates:
        stage = peek_stage(path)
        if stage:
            found.setdefault(stage, []).append(path)
    return found


def _one(found: dict[str, list[Path]], stage: str, folder: Path, flag: str) -> Path | None:
    paths = found.get(stage, [])
    if len(paths) > 1:
        raise VgsError(f"{folder} holds {len(paths)} {stage} checkpoints ({', '.join(p.name for p in paths[:4])}); "
                       f"pick one with {flag}")
    return paths[0] if paths else None


def _codebook_files(folder: Path) -> list[Path]:
    """Every checkpoint file of a model folder that could be a codebook: `*.ckpt` and `<run>/checkpoints/*.ckpt`."""
    files = sorted(folder.glob("*.ckpt")) + sorted(folder.glob("checkpoints/*.ckpt"))
    files += sorted(folder.glob("*/checkpoints/*.ckpt"))
    return [p for p in files if peek_stage(p) == "codebook"]


def recorded_codebook_in(transformer: Path, folder: Path | None, found: Path | None) -> Path | None:
    """The codebook file a transformer was trained with (its recorded SHA-256), preferring `found` (the
    folder's pick) when it is that file; then the recorded path; then any codebook file of `folder` with that
    SHA-256. None when the transformer records nothing (the caller keeps `found`). Raises VgsError when it
    records a codebook that is nowhere, naming the file to pass."""
    ckpt = peek_checkpoint(transformer) or {}
    extra = ckpt.get("extra") or {}
    want = extra.get("codebook_sha256") or (ckpt.get("config") or {}).get("codebook_sha256")
    recorded = extra.get("codebook_path")
    if not want:
        return found if found is not None else (Path(recorded) if recorded and Path(recorded).is_file() else None)
    tried: list[Path] = []
    for path in [found, Path(recorded) if recorded else None, *(_codebook_files(folder) if folder else [])]:
        if path is None or not path.is_file() or path in tried:
            continue
        tried.append(path)
        if file_sha256(path) == want:
            return path
    where = f" in {folder}" if folder else ""
    raise VgsError(f"no codebook{where} is the one {transformer} was trained with (sha256 {want[:12]}...; it "
                   f"was trained with {recorded or 'an unrecorded file'}); pass that file with --codebook")


def resolve_models(model: str | os.PathLike | None = None, *, transformer: str | os.PathLike | None = None,
                   codebook: str | os.PathLike | None = None, vocoder_ckpt: str | os.PathLike | None = None,
                   vocoder: str = "melgan") -> ModelPaths:
    """Find the three checkpoints: explicit paths win over what `model` (a folder or run folder) holds.
    (`default_model.resolve` first applies the default model when no model is named.)"""
    source = f"--model {model}" if model is not None else (f"--transformer {transformer}" if transformer else "")
    found: dict[str, list[Path]] = {}
    folder = Path(model) if model is not None else None
    if folder is not None:
        if not folder.exists():
            raise VgsError(f"model folder not found: {folder}")
        found = find_checkpoints(folder) if folder.is_dir() else {peek_stage(folder) or "?": [folder]}
    where = folder or Path(".")
    t_path = Path(transformer) if transformer else _one(found, "transformer", where, "--transformer")
    if t_path is None:
        raise VgsError(f"no transformer checkpoint in {where} (train one with `vgs train transformer` or pass --transformer)")
    if not t_path.is_file():
        raise VgsError(f"checkpoint not found: {t_path}")
    if codebook:
        c_path = Path(codebook)
    else:  # the folder's codebook only if it is the transformer's own; else the recorded one
        candidates = found.get("codebook", [])
        c_path = recorded_codebook_in(t_path, folder if folder is not None and folder.is_dir() else None,
                                      candidates[0] if len(candidates) == 1 else None)
        c_path = c_path or _one(found, "codebook", where, "--codebook")
        if c_path is None:
            raise VgsError(f"the model folder {where} is missing a codebook checkpoint (pass --codebook)")
    v_path = None
    if vocoder == "melgan":
        v_path = Path(vocoder_ckpt) if vocoder_ckpt else _one(found, "vocoder", where, "--vocoder-ckpt")
        if v_path is None:
            raise VgsError(f"the model folder {where} is missing a vocoder checkpoint "
                           "(pass --vocoder-ckpt, or use --vocoder griffinlim)")
    for p in (c_path, v_path):
        if p is not None and not p.is_file():
            raise VgsError(f"checkpoint not found: {p}")
    return ModelPaths(t_path, c_path, v_path, source=source)
