"""Fréchet distance between Gaussians fitted to classifier features (FID; torch-fidelity's formula).

    FID = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))

with sample means and covariances (ddof 1) of the 2048-d pooled Melception features.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

from vgs_cli.errors import VgsError

# torch-fidelity's tolerance on the imaginary part of sqrtm's diagonal before it refuses the result
IMAG_TOL = 1e-3
SQRTM_EPS = 1e-6


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`float[N, D]` -> (mean `float64[D]`, sample covariance `float64[D, D]`, ddof 1)."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise VgsError(f"FID needs at least 2 feature vectors, got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False, ddof=1)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """FID between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise VgsError(f"FID: feature sizes differ ({mu1.shape} vs {mu2.shape})")
    diff = mu1 - mu2
    with warnings.catch_warnings():
        # a singular product is expected with fewer items than dimensions; the non-finite check handles it
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        warnings.simplefilter("ignore", RuntimeWarning)  # sqrtm's own error estimate of a singular product
        covmean, _ = scipy.linalg.sqrtm(sigma1.dot(sigma2), disp=False)
        if not np.isfinite(covmean).all():
            # a (nearly) singular product: regularise both covariances, as torch-fidelity does
            offset = np.eye(sigma1.shape[0]) * SQRTM_EPS
            covmean, _ = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset), disp=False)
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=IMAG_TOL):
            worst = float(np.max(np.abs(covmean.imag)))
            raise VgsError(f"FID: the covariance square root has a large imaginary part ({worst:.3g})")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid(features_1: np.ndarray, features_2: np.ndarray) -> float:
    """FID between two feature sets `float[N1, D]`, `float[N2, D]`."""
    return frechet_distance(*gaussian_stats(features_1), *gaussian_stats(features_2))
