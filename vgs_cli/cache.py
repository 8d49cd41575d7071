"""The one cache folder: everything vgs downloads or remembers between runs lives below `cache_dir()`.

    $VGS_CACHE                      when set
    $XDG_CACHE_HOME/vgs             else, when XDG_CACHE_HOME is set
    ~/.cache/vgs                    else

Layout (each part is owned by the module named; nothing else writes there):
    weights/<file>                  network weights: extractors, metric networks (`loading/weights.py`)
    official/                       published SpecVQGAN files and their imports (`vgs download` without -o)
    eval/                           real-clip classifier outputs of `vgs eval` (`metrics/evaluate.py`)
    features/                       per-file metric-network features (`metrics/`)
    codes/                          the transformer's codes cache when the data folder is read-only
    default_model.json              the model `vgs generate` uses when none is named

This module is at the ground (no torch, no vgs imports) so every layer can ask where the cache is.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "VGS_CACHE"


def cache_dir() -> Path:
    """The cache root (not created here: writers create the part they own)."""
    env = os.environ.get(ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "vgs"


def cache_path(*parts: str) -> Path:
    """`cache_dir() / parts...`, e.g. `cache_path("weights")`."""
    return cache_dir().joinpath(*parts)
