"""Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial kernel (x.y / d + 1)^3.

Averaged over `subsets` random subsets of `subset_size` items drawn without replacement from each set
(subset size capped by the smaller set, as the reference does); reports mean and std over subsets.

The argument order matters: each subset draws from `features_1` first, then `features_2`, from one seeded
`np.random.RandomState`, so swapping the sets changes which items are paired (on random 2000 x 2048
features, 20 subsets: mean 0.3%, std 40% apart). The reference's evaluation passes the FAKES first (`input1`), and so does
`vgs eval`. Computed in float64; the reference kept its float32 features, which moves the mean by ~3e-5
relative on that case.
"""

from __future__ import annotations

import numpy as np

from vgs_cli.errors import VgsError


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None,
                      coef0: float = 1.0) -> np.ndarray:
    """`[m, D] x [n, D] -> [m, n]`: (gamma x.y + coef0)^degree, gamma = 1/D by default."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (x @ y.T * gamma + coef0) ** degree


def polynomial_mmd2(x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None,
                    coef0: float = 1.0) -> float:
    """Unbiased MMD^2 between equal-size samples `[m, D]` (diagonals of K_XX, K_YY left out)."""
    m = x.shape[0]
    if y.shape[0] != m or m < 2:
        raise VgsError(f"KID subsets must have the same size >= 2, got {m} and {y.shape[0]}")
    k_xx = polynomial_kernel(x, x, degree, gamma, coef0)
    k_yy = polynomial_kernel(y, y, degree, gamma, coef0)
    k_xy = polynomial_kernel(x, y, degree, gamma, coef0)
    sum_xx = k_xx.sum() - np.trace(k_xx)
    sum_yy = k_yy.sum() - np.trace(k_yy)
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


def kid(features_1: np.ndarray, features_2: np.ndarray, subsets: int = 100, subset_size: int = 1000,
        degree: int = 3, gamma: float | None = None, coef0: float = 1.0, seed: int = 2020) -> tuple[float, float]:
    """(mean, std) of the unbiased polynomial MMD^2 over seeded random subsets. `features_1`: the fakes
    `[N1, D]`, `features_2`: the reals `[N2, D]` (the reference's order; see the module docstring)."""
    f1 = np.asarray(features_1, dtype=np.float64)
    f2 = np.asarray(features_2, dtype=np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise VgsError(f"KID: feature shapes do not match ({f1.shape} vs {f2.shape})")
    size = min(subset_size, len(f1), len(f2))
    if size < 2:
        raise VgsError(f"KID needs at least 2 items in each set, got {len(f1)} and {len(f2)}")
    rng = np.random.RandomState(seed)
    mmds = np.empty(subsets)
    for i in range(subsets):
        a = f1[rng.choice(len(f1), size, replace=False)]
        b = f2[rng.choice(len(f2), size, replace=False)]
        mmds[i] = polynomial_mmd2(a, b, degree, gamma, coef0)
    return float(mmds.mean()), float(mmds.std())
