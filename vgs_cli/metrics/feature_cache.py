"""Per-file features of the metric networks, remembered between evaluations (`cache_dir()/features`).

    cache = FeatureCache("passt", weights_sha256)          # network name (+ settings), the weights' SHA-256
    emb = cache.get_or_compute(Path("real/x.wav"), compute)  # compute: Path -> np.ndarray, run on a miss

A file's entry is keyed by its content (SHA-256 of the bytes, so a copy or a move of the real set still hits,
and a rewritten file never returns stale features), the network name and the weights' SHA-256:

    cache_dir()/features/<network>/<weights_sha256[:16]>/<content_sha256[:2]>/<content_sha256>.npy

`network` should name everything besides the file that changes the features (e.g. "passt-10s"), so one
cache serves any set of settings without collisions. A second evaluation of the same real clips therefore
costs only the fakes. Entries are written atomically; an unreadable entry is recomputed; a cache folder that
cannot be written (read-only home, full disk) only costs the saving, never the evaluation.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Callable

import numpy as np

from vgs_cli.cache import cache_path
from vgs_cli.errors import OutputError
from vgs_cli.fsutil import atomic_path, file_sha256

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class FeatureCache:
    """Features of one network with one set of weights, per file content (see the module docstring)."""

    def __init__(self, network: str, weights_sha256: str, *, enabled: bool = True, root: Path | None = None):
        if not network or not weights_sha256:
            raise ValueError("FeatureCache needs a network name and the weights' SHA-256")
        self.network = network
        self.weights_sha256 = weights_sha256
        self.enabled = enabled
        # the folder name is for people; the weights hash keeps two settings or weights apart
        self.folder = (root or cache_path("features")) / _SAFE.sub("_", network) / weights_sha256[:16]
        self.hits = 0
        self.misses = 0

    def entry(self, path: Path | None = None, digest: str | None = None) -> Path:
        """Where the features of `path` (by content), or of data with SHA-256 `digest`, are kept."""
        digest = digest or file_sha256(path)
        return self.folder / digest[:2] / f"{digest}.npy"

    def get(self, path: Path | None = None, digest: str | None = None) -> np.ndarray | None:
        if not self.enabled:
            return None
        entry = self.entry(path, digest)
        if not entry.is_file():
            return None
        try:
            return np.load(entry, allow_pickle=False)
        except (OSError, ValueError):  # a damaged entry is recomputed, never fatal
            return None

    def put(self, path: Path | None, value: np.ndarray, digest: str | None = None) -> None:
        if not self.enabled:
            return
        try:
            with atomic_path(self.entry(path, digest)) as tmp, open(tmp, "wb") as fh:
                np.save(fh, np.asarray(value), allow_pickle=False)
        except (OSError, OutputError):  # an unwritable cache only costs the saving (fsutil's one-line form too)
            return

    def get_or_compute(self, path: Path, compute: Callable[[Path], np.ndarray]) -> np.ndarray:
        """The cached features of `path`, else `compute(path)` (then saved)."""
        path = Path(path)
        found = self.get(path)
        if found is not None:
            self.hits += 1
            return found
        value = np.asarray(compute(path))
        self.misses += 1
        self.put(path, value)
        return value


def settings_tag(**settings: object) -> str:
    """A short stable tag for feature-changing settings: settings_tag(sr=16000, length=8.0) -> "sr16000-length8.0"."""
    text = "-".join(f"{k}{v}" for k, v in sorted(settings.items()))
    return text if len(text) <= 48 else hashlib.sha256(text.encode()).hexdigest()[:16]
