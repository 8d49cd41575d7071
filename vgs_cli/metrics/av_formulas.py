"""av-benchmark's per-pair formulas and the interval over samples (FD and IS are `fid.fid` / `isc.inception_score`,
which already are its formulas: scipy sqrtm with the eps retry; shuffled splits with seed 2020, population std).

    kl_per_pair(gt_logits [P, C], pred_logits [P, C]) -> float64[P]:  sum_c p_gt log(p_gt / p_pred), softmax
    mean_ci95(values [n]) -> (mean, half-width of the 95% Student-t interval of the mean; nan for n < 2)

av-benchmark's FD returns -1 when sqrtm leaves a significant imaginary part; vgs raises one line instead (a
distance of -1 would be averaged or tabled as a number).
"""

from __future__ import annotations

import math
import re
from typing import Sequence

import numpy as np
import torch

_SAMPLE = re.compile(r"_sample_(\d+)$")


def kl_per_pair(gt_logits: np.ndarray, pred_logits: np.ndarray) -> np.ndarray:
    """KL(gt || pred) per row on the softmax of the logits, summed over classes (no epsilon: av-benchmark's
    `F.kl_div(log_softmax(pred), softmax(gt), reduction="sum")` over a pair)."""
    gt = torch.as_tensor(np.asarray(gt_logits), dtype=torch.float64)
    pred = torch.as_tensor(np.asarray(pred_logits), dtype=torch.float64)
    p = gt.softmax(dim=1)
    return (torch.special.xlogy(p, p) - p * pred.log_softmax(dim=1)).sum(dim=1).numpy()


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% t-interval of the mean); the half-width is nan below two values."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan
    if x.size < 2:
        return float(x.mean()), math.nan
    from scipy.stats import t

    return float(x.mean()), float(t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))


def sample_index(stem: str) -> str:
    """`clip_sample_3` -> "3"; a name without `_sample_<k>` is sample "0" (one sample per clip)."""
    m = _SAMPLE.search(stem)
    return m.group(1) if m else "0"
