"""Mean KL divergence between each generated sample's class distribution and its own real clip's.

    MKL = mean over pairs (real r, fake f with the same clip id) of KL(softmax(l_r) || softmax(l_f))

A real clip with k generated samples contributes k pairs (the reference replicates the real logits).
The reference adds 1e-6 to the fake probabilities inside the log; so do we, to reproduce its numbers.
"""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Sequence

import numpy as np
import torch

from vgs_cli.errors import VgsError

EPS = 1e-6
_SAMPLE = re.compile(r"_sample_\d+$")
_MEL = re.compile(r"_mel$")


def clip_key(name: str) -> str:
    """The clip id a spectrogram / wav file name refers to: the stem without `_mel` and `_sample_<k>`.

    `video_00123_mel.npy` -> `video_00123`; `abc_30000_40000_sample_3.wav` -> `abc_30000_40000`.
    """
    stem = PurePath(name).name
    for ext in (".npy", ".wav", ".flac", ".mp3", ".ogg"):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
            break
    # only a trailing `_mel` is dropped (the reference's replace() anywhere would also mangle `x_melody`)
    return _MEL.sub("", _SAMPLE.sub("", stem))


def kl_pairs(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Row-wise KL(softmax(real) || softmax(fake)): `[P, C], [P, C] -> float64[P]`."""
    p = real_logits.to(torch.float64).softmax(dim=1)
    q = fake_logits.to(torch.float64).softmax(dim=1)
    # p * log p is taken as 0 where p == 0 (xlogy)
    return (torch.special.xlogy(p, p) - p * (q + EPS).log()).sum(dim=1)


def mean_kl(real_logits: np.ndarray | torch.Tensor, real_ids: Sequence[str],
            fake_logits: np.ndarray | torch.Tensor, fake_ids: Sequence[str]) -> tuple[float, int]:
    """(MKL, number of pairs). Fakes pair with the real item whose id equals their id."""
    real = torch.as_tensor(np.asarray(real_logits))
    fake = torch.as_tensor(np.asarray(fake_logits))
    if len(real_ids) != real.shape[0] or len(fake_ids) != fake.shape[0]:
        raise VgsError("MKL: ids and logits differ in length")
    index = {rid: i for i, rid in enumerate(real_ids)}
    pairs = [(index[fid], j) for j, fid in enumerate(fake_ids) if fid in index]
    if not pairs:
        raise VgsError("MKL: no generated item matches a real clip id (names must be <clip_id>[_sample_<k>])")
    ri = torch.tensor([p[0] for p in pairs])
    fi = torch.tensor([p[1] for p in pairs])
    return float(kl_pairs(real[ri], fake[fi]).mean()), len(pairs)
