"""Codebook indices of every clip, computed once per (codebook, dataset, split) and cached on disk.

The transformer's codebook is frozen, so re-encoding every mel at every step would waste most of the
training time. `load_or_build_codes` encodes a split once (centre crop, as the reference trained the GPT)
and stores `codes_<split>_<key>.npz` with

    codes  int16 [N, H, W]   the grid indices (raster layout; `models.gpt.to_sequence` reorders them)
    ids    str   [N]         clip ids, in `ShardDataset(split, require_audio=True)` order
    labels int64 [N]         class index per clip (-1 = none), so class conditioning needs no shard reads
    key    str               JSON of what the codes depend on (codebook sha256, data manifest hash, crop ...)

in the cache folder: `$VGS_CODES_CACHE`, else `<data>/codes_cache/` when writable, else
the cache folder's `codes/` (`vgs_cli/cache.py`). A file whose key does not match (another codebook file, re-prepared data) is never
used; it is rebuilt. Under torchrun rank 0 builds and the other ranks wait, then read.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from vgs_cli.audio.spec import to_model_range
from vgs_cli.cache import cache_path as vgs_cache_path
from vgs_cli.data import shards
from vgs_cli.data.dataset import ShardDataset, collate
from vgs_cli.errors import DataError
from vgs_cli.fsutil import atomic_path
from vgs_cli.train import distributed as D

CACHE_VERSION = 1


@dataclass
class CodeSet:
    """The codes of one split: `codes` int64 [N, H, W] (raster), `ids` [N], `labels` int64 [N]."""

    codes: np.ndarray
    ids: list[str]
    labels: np.ndarray
    path: Path | None = None  # the cache file
    built: bool = False  # encoded by this call (False: read from the cache)


def manifest_hash(data_dir: str | os.PathLike) -> str:
    """sha256 of the dataset's manifest plus the shard files' names and sizes (shards are immutable)."""
    root = Path(data_dir)
    manifest = shards.read_manifest(root)
    files = [(p.name, p.stat().st_size) for p in shards.shard_files(root)]
    blob = json.dumps({"manifest": manifest, "files": files}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def cache_dir_for(data_dir: str | os.PathLike) -> Path:
    """Where code files go (see the module docstring)."""
    env = os.environ.get("VGS_CODES_CACHE")
    if env:
        return Path(env)
    local = Path(data_dir) / "codes_cache"
    if os.access(local if local.exists() else Path(data_dir), os.W_OK):
        return local
    return vgs_cache_path("codes")  # the one cache folder (vgs_cli/cache.py)


def _is_main() -> bool:
    import torch.distributed as dist

    return not dist.is_initialized() or dist.get_rank() == 0


def cache_key(codebook_sha256: str, data_hash: str, split: str, crop: str = "center") -> dict[str, Any]:
    return {"version": CACHE_VERSION, "codebook_sha256": codebook_sha256, "data": data_hash, "split": split,
            "crop": crop}


def cache_path(cache_dir: Path, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    return Path(cache_dir) / f"codes_{key['split']}_{digest}.npz"


def read_codes(path: Path, key: dict[str, Any]) -> CodeSet | None:
    """The codes when `path` holds codes for exactly `key`; None when absent, stale or unreadable."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            if json.loads(str(f["key"])) != key:
                return None
            return CodeSet(f["codes"].astype(np.int64), [str(s) for s in f["ids"]], f["labels"].astype(np.int64),
                           path=path)
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None


def write_codes(path: Path, key: dict[str, Any], cs: CodeSet) -> None:
    if int(cs.codes.max(initial=0)) > np.iinfo(np.int16).max:
        raise DataError(f"codebook indices up to {int(cs.codes.max())} do not fit the int16 codes cache")
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, codes=cs.codes.astype(np.int16), ids=np.array(cs.ids, dtype=str),
                 labels=cs.labels.astype(np.int64), key=np.array(json.dumps(key, sort_keys=True)))


@torch.no_grad()
def encode_split(encode: Callable[[torch.Tensor], torch.Tensor], data_dir: str | os.PathLike, split: str,
                 device: torch.device, batch_size: int = 16,
                 progress: Callable[[int, int], None] | None = None) -> CodeSet:
    """Encode every clip of `split` (centre crop). `encode`: mels `Tensor[B, 1, 80, 848]` on [-1, 1] ->
    indices `Tensor[B, H, W]`."""
    ds = ShardDataset(data_dir, split, fields=("mel", "id", "label"), mel_crop="center", require_audio=True)
    codes, ids, labels = [], [], []
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate)
    for batch in loader:
        mel = to_model_range(batch["mel"].to(device).float()).unsqueeze(1)
        codes.append(encode(mel).long().cpu())
        ids.extend(batch["id"])
        labels.append(batch["label"].long())
        if progress is not None:
            progress(len(ids), len(ds))
    if not codes:
        raise DataError(f"{data_dir}: the {split!r} split has no clips with audio to encode")
    return CodeSet(torch.cat(codes).numpy(), ids, torch.cat(labels).numpy(), built=True)


def load_or_build_codes(encode: Callable[[torch.Tensor], torch.Tensor], codebook_sha256: str,
                        data_dir: str | os.PathLike, split: str, device: torch.device,
                        cache_dir: str | os.PathLike | None = None, batch_size: int = 16,
                        progress: Callable[[int, int], None] | None = None) -> CodeSet:
    """The split's codes: from a matching cache file, or encoded now (rank 0 encodes and writes while the
    other ranks wait at a barrier, then read the file)."""
    key = cache_key(codebook_sha256, manifest_hash(data_dir), split)
    path = cache_path(Path(cache_dir) if cache_dir else cache_dir_for(data_dir), key)
    found = read_codes(path, key)
    if found is None and _is_main():
        found = encode_split(encode, data_dir, split, device, batch_size, progress)
        write_codes(path, key, found)
        found.path = path
    D.barrier()
    if found is None:
        found = read_codes(path, key)
        if found is None:
            raise DataError(f"codes cache {path} was not written by rank 0")
    return found
