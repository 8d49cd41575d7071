"""`ShardDataset`: one split of a shard folder as a torch Dataset, with the reference's crops and resampling.

HDF5 handles are opened lazily and re-opened in every process that touches the dataset (a DataLoader
worker after fork, a DDP rank), because an h5py handle shared across fork returns garbage or crashes.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from vgs_cli.audio.spec import crop_frames
from vgs_cli.config.spec import SPEC
from vgs_cli.data import shards
from vgs_cli.data.condition import centre_start, condition_frames, resample_indices
from vgs_cli.errors import DataError

FIELDS = ("mel", "feats", "label", "wav", "id", "split", "source", "has_audio")
AUTO_VALID_FRACTION = 0.15  # of the training clips, when the data has no valid split
AUTO_VALID_MIN_CLIPS = 8  # fewer training clips than this: no automatic validation split


def auto_valid_split(ids: list[str]) -> tuple[list[int], list[int]]:
    """(train indices, valid indices) into `ids`: a stable ~15% of the clips, chosen by a hash of their id (the
    same clips on every rank, run and resume; none below 8 clips). Every train task uses it when the data has
    no valid split (train/holdout.py)."""
    n = len(ids)
    if n < AUTO_VALID_MIN_CLIPS:
        return list(range(n)), []
    order = sorted(range(n), key=lambda i: hashlib.sha256(ids[i].encode()).hexdigest())
    n_valid = max(1, round(AUTO_VALID_FRACTION * n))
    valid = sorted(order[:n_valid])
    chosen = set(valid)
    return [i for i in range(n) if i not in chosen], valid


def sample_feats(feats: np.ndarray, feat_frames: int | None, window: int = SPEC.model_video_frames) -> np.ndarray:
    """The condition the transformer trains on: `[215, D] -> [feat_frames, D]` (None keeps all 215 frames).

    Reference order: the centre `window` frames (`CropFeats`, 212 of 215), then `ResampleFrames(feat_frames)`;
    generation selects with the same `condition.condition_frames`."""
    if feat_frames is None:
        return feats
    return condition_frames(feats, feat_frames, window, centre_start(feats.shape[0], window))


class ShardDataset(Dataset):
    """One split of a shard folder. Items are dicts with the requested `fields`:

    `mel` Tensor[80, 848] on [0, 1] (`mel_crop` "center"/"random"; None keeps all 860 frames),
    `feats` Tensor[F, D] (F = 215, or `feat_frames` picked from the centre `feat_window` frames),
    `wav` Tensor[220500] float32, `label` int64 tensor, `id` str, `split` str, `source` str, `has_audio` bool,
    and always `index` (position in this dataset).
    Clips without an audio track are left out when `mel` or `wav` is requested (`require_audio=None`).
    A random mel crop does not move the features (the reference drew them independently and its configs
    disable random crops for the condition).
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", fields: Sequence[str] = ("mel", "feats", "label", "wav", "id"),
                 mel_crop: str | None = "center", feat_frames: int | None = None, extractor: str | None = None,
                 require_audio: bool | None = None, seed: int | None = None,
                 feat_window: int = SPEC.model_video_frames):
        self.root = Path(root)
        self.manifest = shards.read_manifest(self.root)
        if split not in shards.SPLITS:
            raise DataError(f"split must be one of {shards.SPLITS}, got {split!r}")
        unknown = [f for f in fields if f not in FIELDS]
        if unknown:
            raise DataError(f"unknown dataset field(s) {unknown}; choose from {FIELDS}")
        if mel_crop not in ("center", "random", None):
            raise DataError(f"mel_crop must be 'center', 'random' or None, got {mel_crop!r}")
        if feat_frames is not None:
            resample_indices(feat_window, feat_frames)  # validates the range
        self.split, self.fields, self.mel_crop, self.feat_frames = split, tuple(fields), mel_crop, feat_frames
        self.feat_window = feat_window
        self.classes: list[str] = list(self.manifest["classes"])
        self.extractor = self._pick_extractor(extractor) if "feats" in self.fields else extractor
        self.feat_dim = self.manifest["extractors"][self.extractor]["dim"] if self.extractor else None
        if require_audio is None:
            require_audio = "mel" in self.fields or "wav" in self.fields
        self._files = [self.root / s["file"] for s in self.manifest["shards"]]
        self._rows = self._index(require_audio)
        self._handles: dict[int, Any] = {}
        self._pid = -1
        self._gen = torch.Generator().manual_seed(seed) if seed is not None else None

    def _pick_extractor(self, name: str | None) -> str:
        available = list(self.manifest["extractors"])
        if not available:
            raise DataError(f"{self.root} holds no visual features")
        if name is None:
            return available[0]
        if name not in available:
            raise DataError(f"{self.root} has no {name!r} features (available: {', '.join(available)})")
        return name

    def _index(self, require_audio: bool) -> np.ndarray:
        """`int64[N, 2]` (shard number, row) of the clips in this split, in shard/row order."""
        rows = []
        for k, path in enumerate(self._files):
            with shards.open_shard(path) as f:
                split = np.array(shards.read_strings(f["split"]))
                keep = split == self.split
                if require_audio:
                    keep &= f["has_audio"][()]
                rows.extend((k, int(r)) for r in np.flatnonzero(keep))
        return np.array(rows, dtype=np.int64).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self._rows)

    def ids(self) -> list[str]:
        """The clip ids of this split in dataset order (read from the shards' id columns only)."""
        out: list[str] = []
        for k, path in enumerate(self._files):
            rows = self._rows[self._rows[:, 0] == k, 1]
            if len(rows):
                with shards.open_shard(path) as f:
                    ids = shards.read_strings(f["id"])
                out.extend(ids[int(r)] for r in rows)
        return out

    def _handle(self, k: int):
        if self._pid != os.getpid():  # a new process (fork): never reuse the parent's handles
            self._handles, self._pid = {}, os.getpid()
        if k not in self._handles:
            self._handles[k] = shards.open_shard(self._files[k])
        return self._handles[k]

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        k, r = self._rows[index]
        f = self._handle(int(k))
        item: dict[str, Any] = {"index": int(index)}
        for name in self.fields:
            if name == "mel":
                mel = torch.from_numpy(f["mel"][r])
                item["mel"] = mel if self.mel_crop is None else crop_frames(mel, SPEC.model_frames, self.mel_crop, self._gen)
            elif name == "feats":
                feats = sample_feats(f["feats"][self.extractor][r], self.feat_frames, self.feat_window)
                item["feats"] = torch.from_numpy(np.ascontiguousarray(feats))
            elif name == "wav":
                item["wav"] = torch.from_numpy(shards.decode_wav(f["wav"][r]))
            elif name == "label":
                item["label"] = torch.tensor(int(f["label"][r]), dtype=torch.int64)
            elif name == "has_audio":
                item["has_audio"] = bool(f["has_audio"][r])
            else:  # id, split, source
                v = f[name][r]
                item[name] = v.decode("utf-8") if isinstance(v, bytes) else str(v)
        return item

    def close(self) -> None:
        for h in self._handles.values():
            h.close()
        self._handles = {}

    def __getstate__(self) -> dict[str, Any]:  # spawn-based workers pickle the dataset: drop open handles
        state = dict(self.__dict__)
        state["_handles"], state["_pid"] = {}, -1
        return state


_LIST_FIELDS = ("id", "split", "source", "has_audio")


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors (and `index`) like `default_collate`, but keep strings (`id`, ...) as plain lists."""
    out: dict[str, Any] = {}
    for key in batch[0]:
        values = [b[key] for b in batch]
        out[key] = values if key in _LIST_FIELDS else default_collate(values)
    return out
