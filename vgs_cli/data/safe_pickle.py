"""Load pickled numpy arrays without executing code (the official SpecVQGAN features are `.pkl` files).

`pickle.load` runs whatever callable a file names, so a downloaded `.pkl` could run `os.system`. The
unpickler here resolves only the handful of globals numpy itself writes when it pickles a plain array
(protocols 2-5, numpy 1.x `numpy.core` and 2.x `numpy._core` spellings); any other global is refused with
`UnsafePickleError` before it is imported, let alone called. Built-in containers (lists, dicts, tuples)
need no globals, so `safe_loads` may return them; `load_array` insists on one numeric array.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vgs_cli.errors import DataError


class UnsafePickleError(DataError):
    """A pickle that names something other than a numpy array (refused; nothing was executed)."""


def _numpy_attr(*modules: str, name: str) -> Any:
    """The live numpy object `name` from the first importable module (numpy 2 renamed core -> _core)."""
    import importlib

    for mod in modules:
        try:
            return getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy has none of {modules} . {name}")


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """`_codecs.encode` as protocol-2 numpy pickles use it (array bytes stored as a latin-1 str)."""
    if encoding != "latin1" or not isinstance(text, str):
        raise UnsafePickleError(f"pickle calls _codecs.encode with {encoding!r} (only latin1 is admitted)")
    return codecs.encode(text, "latin1")


def _allowed() -> dict[tuple[str, str], Callable[..., Any] | type]:
    reconstruct = _numpy_attr("numpy._core.multiarray", "numpy.core.multiarray", name="_reconstruct")
    frombuffer = _numpy_attr("numpy._core.numeric", "numpy.core.numeric", name="_frombuffer")
    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for core in ("numpy.core", "numpy._core"):
        table[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        table[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return table


class SafeUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` that resolves only numpy's own array-rebuilding globals."""

    _ALLOWED: dict[tuple[str, str], Any] | None = None

    def find_class(self, module: str, name: str) -> Any:
        if SafeUnpickler._ALLOWED is None:
            SafeUnpickler._ALLOWED = _allowed()
        try:
            return SafeUnpickler._ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refused to unpickle global {module}.{name}: only numpy arrays are allowed"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refused to unpickle a persistent id: only numpy arrays are allowed")


def safe_loads(data: bytes, *, where: str = "pickle") -> Any:
    """Unpickle `data` admitting numpy arrays (and plain containers of them) only.

    Files written by Python 2 hold array bytes as str; `latin1` maps them back byte for byte (numpy's advice).
    """
    try:
        return SafeUnpickler(io.BytesIO(data), encoding="latin1").load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{where}: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise DataError(f"{where}: not a readable pickle ({type(exc).__name__}: {str(exc)[:120]})") from None


def load_array(path: str | os.PathLike) -> np.ndarray:
    """Read one `.pkl` that must hold a single numeric numpy array (object arrays are refused)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    obj = safe_loads(data, where=str(path))
    if not isinstance(obj, np.ndarray):
        raise DataError(f"{path}: expected a numpy array in the pickle, found {type(obj).__name__}")
    if obj.dtype.kind not in "biuf":
        raise DataError(f"{path}: expected a numeric array, found dtype {obj.dtype}")
    return obj
