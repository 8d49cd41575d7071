"""Inception Score on the classifier's unbiased logits: exp(E_x KL(p(y|x) || p(y))), over shuffled splits."""

from __future__ import annotations

import numpy as np
import torch

from vgs_cli.errors import VgsError


def inception_score(logits: np.ndarray | torch.Tensor, splits: int = 10, shuffle: bool = True,
                    seed: int = 2020) -> tuple[float, float]:
    """`float[N, C]` logits -> (mean, std) of the per-split scores (split i = rows [i N/s, (i+1) N/s))."""
    x = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    if x.dim() != 2:
        raise VgsError(f"ISc expects logits [N, C], got shape {tuple(x.shape)}")
    n = x.shape[0]
    if n < splits:
        raise VgsError(f"ISc with {splits} splits needs at least {splits} items, got {n}")
    if shuffle:
        x = x[torch.from_numpy(np.random.RandomState(seed).permutation(n))]
    p = x.softmax(dim=1)
    log_p = x.log_softmax(dim=1)
    scores = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        p_chunk, log_p_chunk = p[lo:hi], log_p[lo:hi]
        log_q = p_chunk.mean(dim=0, keepdim=True).log()
        kl = (p_chunk * (log_p_chunk - log_q)).sum(dim=1).mean()
        scores.append(float(kl.exp()))
    return float(np.mean(scores)), float(np.std(scores))
