"""FID / KID / ISc / MKL as pure functions: closed forms, identities and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from vgs_cli.errors import VgsError
from vgs_cli.metrics.fid import fid, frechet_distance, gaussian_stats
from vgs_cli.metrics.isc import inception_score
from vgs_cli.metrics.kid import kid, polynomial_mmd2
from vgs_cli.metrics.mkl import clip_key, mean_kl


def _closed_form_fid(mu1, s1, mu2, s2) -> float:
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean))


def test_fid_matches_closed_form_for_gaussians():
    rng = np.random.default_rng(0)
    d = 4
    mu1, mu2 = np.zeros(d), np.array([1.0, -0.5, 0.0, 2.0])
    s1 = np.diag([1.0, 2.0, 0.5, 1.5])
    a = rng.normal(size=(d, d))
    s2 = a @ a.T / d + 0.5 * np.eye(d)
    exact = _closed_form_fid(mu1, s1, mu2, s2)
    x = rng.multivariate_normal(mu1, s1, size=40_000)
    y = rng.multivariate_normal(mu2, s2, size=40_000)
    est = fid(x, y)
    # sampling error of the moments at N = 40k is ~1 %; the closed form here is ~7.6
    assert exact > 5
    assert abs(est - exact) < 0.03 * exact
    # and exactly the closed form when fed the true moments
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(exact, rel=1e-9)


def test_fid_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(1).normal(size=(200, 16))
    assert abs(fid(x, x)) < 1e-6
    mu, sigma = gaussian_stats(x)
    np.testing.assert_allclose(sigma, np.cov(x.T, ddof=1))


def test_fid_singular_covariance_is_finite_and_small_for_same_distribution():
    # fewer items than dimensions: rank-deficient covariances (the 1e-6 * I retry path must keep it finite)
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(10, 32)), rng.normal(size=(10, 32))
    value = fid(x, y)
    assert math.isfinite(value) and value > 0
    assert fid(x, x + 10.0) == pytest.approx(32 * 100 + fid(x, x), rel=1e-6)


def test_fid_rejects_bad_input():
    with pytest.raises(VgsError):
        fid(np.zeros((1, 4)), np.zeros((5, 4)))
    with pytest.raises(VgsError):
        fid(np.zeros((5, 4)), np.zeros((5, 3)))


def test_polynomial_mmd2_matches_a_direct_double_loop():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(6, 5)), rng.normal(size=(6, 5)) + 0.3

    def k(a, b):
        return (a @ b / 5 + 1) ** 3

    m = 6
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    assert polynomial_mmd2(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-10)


def test_kid_identical_is_about_zero_and_shifted_is_clearly_positive():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 32))
    same_mean, same_std = kid(x, x, subsets=20, subset_size=100)
    shift_mean, shift_std = kid(x, x + 0.5, subsets=20, subset_size=100)
    assert shift_mean > 0.1
    assert abs(same_mean) < 0.1 * shift_mean  # subset noise only (~0.05 here vs ~0.94)
    # the std is over the subsets' MMD^2 values, drawn as kid draws them (fakes first, one seeded stream)
    rng = np.random.RandomState(2020)
    per_subset = [polynomial_mmd2(x[rng.choice(300, 100, replace=False)], (x + 0.5)[rng.choice(300, 100, replace=False)])
                  for _ in range(20)]
    assert shift_std == pytest.approx(np.std(per_subset), rel=1e-9) and shift_std > 0
    assert 0 < same_std < 0.1 * shift_mean  # different subsets of the same set still differ a little
    # seeded: the same call gives the same numbers; subset size is capped by the set size
    assert kid(x, x + 0.5, subsets=20, subset_size=100) == (shift_mean, shift_std)
    assert math.isfinite(kid(x[:50], x[:40] + 0.5, subsets=3, subset_size=1000)[0])


def _reference_kid(features_1, features_2, subsets, subset_size, seed):
    """The reference's KID (SpecVQGAN evaluation/metrics/kid.py, torch-fidelity's): per subset, draw
    `features_1` rows then `features_2` rows from one RandomState(seed), kernel (x.y / D + 1)^3, unbiased
    MMD^2 from row sums minus the diagonals; mean and (population) std over subsets."""
    rng = np.random.RandomState(seed)
    mmds = np.zeros(subsets)
    for i in range(subsets):
        x = features_1[rng.choice(len(features_1), subset_size, replace=False)]
        y = features_2[rng.choice(len(features_2), subset_size, replace=False)]
        k_xx, k_yy, k_xy = ((a @ b.T / x.shape[1] + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        m = len(x)
        mmds[i] = ((k_xx.sum(axis=1) - np.diagonal(k_xx)).sum() + (k_yy.sum(axis=1) - np.diagonal(k_yy)).sum()) \
            / (m * (m - 1)) - 2 * k_xy.sum(axis=0).sum() / (m * m)
    return float(np.mean(mmds)), float(np.std(mmds))


def test_eval_kid_is_the_references_fakes_first_seeded_kid():
    from vgs_cli.metrics.evaluate import EvalSettings, compute_metrics

    rng = np.random.default_rng(11)
    real = rng.normal(size=(120, 16))
    fake = rng.normal(size=(90, 16)) * 1.2 + 0.3
    settings = EvalSettings(metrics=("kid",), kid_subsets=7, kid_subset_size=50, seed=2020)
    got = compute_metrics(settings, {"features": real}, {"features": fake}, [], [])
    want = _reference_kid(fake, real, 7, 50, 2020)  # evaluate.py: calculate_kid(fakes, reals, ...)
    assert (got["kid_mean"], got["kid_std"]) == pytest.approx(want, rel=1e-12, abs=0)
    swapped = _reference_kid(real, fake, 7, 50, 2020)  # what vgs eval computed before: other subsets
    assert abs(swapped[1] - want[1]) > 0.05 * want[1]


def test_isc_is_one_for_identical_predictions():
    logits = np.tile(np.array([[2.0, -1.0, 0.5, 3.0]]), (50, 1))
    mean, std = inception_score(logits, splits=10)
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("k", [2, 5, 7])
def test_isc_is_k_for_k_equally_used_one_hot_classes(k):
    # every split of N/10 consecutive rows uses each class equally (no shuffle); one-hot via large logits
    labels = np.tile(np.arange(k), 10 * 3)
    logits = 60.0 * np.eye(k)[labels]
    mean, std = inception_score(logits, splits=10, shuffle=False)
    assert mean == pytest.approx(k, rel=1e-9) and std == pytest.approx(0.0, abs=1e-9)
    # one split: shuffling cannot matter
    assert inception_score(logits, splits=1, shuffle=True)[0] == pytest.approx(k, rel=1e-9)


def test_isc_needs_enough_items():
    with pytest.raises(VgsError):
        inception_score(np.zeros((5, 3)), splits=10)


def test_mkl_zero_for_identical_logits():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(6, 10))
    ids = [f"clip{i}" for i in range(6)]
    value, pairs = mean_kl(logits, ids, logits, ids)
    assert pairs == 6 and abs(value) < 1e-5  # only the reference's 1e-6 inside the log remains


def test_mkl_hand_computed_with_samples_paired_by_id():
    # the reference's own example: KL([9,12,4]/25 || uniform(3)) = 0.0853
    p = np.array([9, 12, 4]) / 25
    expected = float(np.sum(p * np.log(p / (1 / 3))))
    assert expected == pytest.approx(0.0853, abs=1e-4)
    real = np.log(np.array([p, [1 / 3, 1 / 3, 1 / 3]]))
    fake = np.log(np.array([[1 / 3, 1 / 3, 1 / 3], [1 / 3, 1 / 3, 1 / 3], [1 / 3, 1 / 3, 1 / 3], p]))
    # a_sample_0 and a_sample_1 pair with real a (KL = expected each); b pairs with b (0); c has no real
    fake_ids = [clip_key(n) for n in ("a_sample_0.npy", "a_sample_1.npy", "b_sample_0.npy", "c_sample_0.npy")]
    value, pairs = mean_kl(real, ["a", "b"], fake, fake_ids)
    assert pairs == 3
    assert value == pytest.approx((2 * expected + 0) / 3, abs=1e-5)


def test_mkl_without_any_matching_id_is_a_user_error():
    with pytest.raises(VgsError, match="no generated item"):
        mean_kl(np.zeros((2, 3)), ["a", "b"], np.zeros((1, 3)), ["zzz"])


def test_clip_key_strips_mel_and_sample_suffixes_only_at_the_end():
    assert clip_key("video_00123_mel.npy") == "video_00123"
    assert clip_key("abc_30000_40000_sample_3.wav") == "abc_30000_40000"
    assert clip_key("x_melody_sample_12.npy") == "x_melody"
    assert clip_key("dir/plain.wav") == "plain"


def test_metrics_accept_torch_tensors():
    x = torch.randn(40, 8, dtype=torch.float64)
    assert fid(x.numpy(), x.numpy()) == pytest.approx(0.0, abs=1e-6)
    assert inception_score(torch.zeros(20, 3), splits=2)[0] == pytest.approx(1.0)
