"""Which video frames condition the transformer: one rule for training and for generation.

A window of codes covers `window` video frames (`GPTConfig.feat_window`: 212 at the paper's 16x codebook
downsampling, from `config/spec.py`'s hop, rate and fps). The condition is `feat_frames` of them, picked as
the reference's `ResampleFrames` picks them. Training reads a 10 s clip's centre window (the reference's
`CropFeats`: start (215 - 212) // 2 = 1); generation slides the window along a longer video,
`video_frames_per_column` frames per code column. Both call `condition_frames`.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

from vgs_cli.errors import DataError

Frames = TypeVar("Frames", np.ndarray, torch.Tensor)


def resample_indices(feat_len: int, sample_size: int) -> np.ndarray:
    """Frame indices of SpecVQGAN's `ResampleFrames` (specvqgan/data/vas.py, also used for VGGSound):
    evenly spaced `np.linspace(0, L, n, dtype=int32, endpoint=False)` shifted by `L // (n + 1)` so the picks
    sit inside their segments. L=212: n=1 -> [106]; n=5 -> [35, 77, 119, 162, 204]; n=212 -> 0..211."""
    if not 1 <= sample_size <= feat_len:
        raise DataError(f"feat_frames must be between 1 and {feat_len}, got {sample_size}")
    idx = np.linspace(0, feat_len, sample_size, dtype=np.int32, endpoint=False)
    return idx + feat_len // (sample_size + 1)


def centre_start(length: int, window: int) -> int:
    """First frame of the centre `window` of `length` frames (albumentations' CenterCrop: 215, 212 -> 1)."""
    if length < window:
        raise DataError(f"cannot crop {length} feature frames to {window}")
    return (length - window) // 2


def condition_frames(feats: Frames, feat_frames: int, window: int, start: int) -> Frames:
    """The condition of the code window whose video starts at frame `start`: frames start .. start+window-1,
    resampled to `feat_frames`; frames past the end of the video are zeros.

    `feats`: `[..., L, D]` (numpy or torch, e.g. `[215, D]` of one clip or `[B, L, D]` of long videos)
    -> `[..., feat_frames, D]` of the same kind."""
    idx = start + resample_indices(window, feat_frames)
    length = feats.shape[-2]
    if isinstance(feats, np.ndarray):
        if idx[-1] < length:
            return feats[..., idx, :]
        out = np.zeros((*feats.shape[:-2], len(idx), feats.shape[-1]), dtype=feats.dtype)
        out[..., idx < length, :] = feats[..., idx[idx < length], :]
        return out
    inside = torch.from_numpy(idx < length).to(feats.device)
    picked = torch.from_numpy(np.minimum(idx, length - 1)).to(feats.device)
    return feats.index_select(-2, picked) * inside.to(feats.dtype)[:, None]
