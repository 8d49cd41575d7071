"""Load official SpecVQGAN weight files without running pickled code.

The official `.ckpt` / `.pt` files are pickles. `torch.load(weights_only=True)` already refuses every global
outside a small allow-list, but these files name a few more: the PyTorch-Lightning callback classes, which
appear only as dictionary *keys* of `ckpt["callbacks"]`, and numpy's scalar reconstructor + dtype (the
classifiers' `metrics` hold numpy float64 values). We admit exactly those, each mapped to an inert stand-in
(placeholder classes that are never instantiated, numpy's own scalar/dtype builders), and nothing else:

1. for zip-format files, `torch.serialization.get_unsafe_globals_in_checkpoint` lists the globals the pickle
   names *without unpickling it*; anything outside the allow-list is refused before loading starts;
2. the load itself runs with `weights_only=True` inside `safe_globals(ALLOWED)`, so legacy (non-zip) files
   and anything the scan missed still meet torch's restricted unpickler.

A refused file raises `UnsafeFileError` (a one-line CheckpointError naming the global); nothing in it ran.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vgs_cli.errors import CheckpointError

# Lightning classes that PL 1.2 checkpoints use as keys of `ckpt["callbacks"]`.
LIGHTNING_CALLBACKS: tuple[str, ...] = (
    "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
    "pytorch_lightning.callbacks.early_stopping.EarlyStopping",
)
# numpy scalars (the classifiers' metrics): numpy 1.x and 2.x spell the module differently.
NUMPY_SCALAR_NAMES: tuple[str, ...] = ("numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar")


class UnsafeFileError(CheckpointError):
    """An official file that needs a global outside the allow-list (refused; nothing was executed)."""


def _placeholder(dotted: str) -> type:
    """An inert class standing in for `dotted` (only ever used as a dict key, never instantiated)."""
    module, _, name = dotted.rpartition(".")
    return type(name, (), {"__module__": f"vgs_placeholder.{module}", "__doc__": f"stand-in for {dotted}"})


def _numpy_scalar() -> Any:
    try:
        from numpy._core.multiarray import scalar  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import scalar
    return scalar


def _allowed() -> list[Any]:
    scalar = _numpy_scalar()
    entries: list[Any] = [(_placeholder(name), name) for name in LIGHTNING_CALLBACKS]
    entries += [(scalar, name) for name in NUMPY_SCALAR_NAMES]
    entries.append(np.dtype)
    # BUILD on a dtype instance needs its class; only plain numeric dtypes are admitted.
    entries += [type(np.dtype(t)) for t in ("float64", "float32", "int64")]
    return entries


ALLOWED_NAMES: frozenset[str] = frozenset({*LIGHTNING_CALLBACKS, *NUMPY_SCALAR_NAMES, "numpy.dtype"})


def _refused(path: Path, name: str) -> UnsafeFileError:
    return UnsafeFileError(
        f"{path}: refused to load: it needs the Python global {name!r}, which an official SpecVQGAN weight file "
        "does not use (only tensors, Lightning callback names and numpy scalars are admitted; nothing was executed)"
    )


def scan_globals(path: Path) -> list[str]:
    """Globals a zip-format torch file names (read from the pickle opcodes, nothing is unpickled)."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception as exc:  # corrupt archive, not a torch file
        raise CheckpointError(f"{path}: not a readable PyTorch file ({type(exc).__name__}: {str(exc)[:120]})") from None


def _restricted_load(path: Path, *, mmap: bool) -> Any:
    with torch.serialization.safe_globals(_allowed()), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's note about unusual pickle protocols
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def load_official(path: str | os.PathLike, *, mmap: bool = True) -> Any:
    """The unpickled content of an official `.ckpt` / `.pt` file, tensors on the CPU.

    Zip-format files are memory-mapped (`mmap`), so a 3.7 GB transformer checkpoint whose optimiser state we
    discard is not read into memory."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"file not found: {path}")
    is_zip = zipfile.is_zipfile(path)
    if is_zip:
        bad = sorted(set(scan_globals(path)) - ALLOWED_NAMES)
        if bad:
            raise _refused(path, bad[0])
    try:
        try:
            return _restricted_load(path, mmap=mmap and is_zip)
        except RuntimeError:
            if not (mmap and is_zip):
                raise
            return _restricted_load(path, mmap=False)  # archives some writers made cannot be memory-mapped
    except pickle.UnpicklingError as exc:
        m = re.search(r"GLOBAL ([\w.]+)|global[s]?:? '?([\w.]+\.[\w]+)'?", str(exc))
        if m:
            raise _refused(path, m.group(1) or m.group(2)) from None
        detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(exc))
        reason = detail.group(1).strip() if detail else type(exc).__name__
        raise UnsafeFileError(f"{path}: refused to load: not a plain PyTorch weight file ({reason[:120]}; "
                              "nothing was executed)") from None
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile, AttributeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch file ({first[:160]})") from None
