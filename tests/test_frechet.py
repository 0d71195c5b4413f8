import numpy as np
import pytest
import torch
from scipy import linalg

from dcgan.metrics.frechet import feature_statistics, frechet_distance, pixel_frechet_distance


def random_spd(rng, dim):
    a = rng.standard_normal((dim, dim + 5))
    return a @ a.T / dim


@pytest.mark.parametrize("dim", [2, 16, 64])
def test_eigenvalue_trace_matches_scipy_sqrtm(dim):
    rng = np.random.default_rng(dim)
    s1, s2 = random_spd(rng, dim), random_spd(rng, dim)
    mu1, mu2 = rng.standard_normal(dim), rng.standard_normal(dim)
    reference = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-8)


def test_zero_for_identical_sets_and_symmetric():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((500, 8)), rng.standard_normal((400, 8)) + 0.5
    assert frechet_distance(*feature_statistics(x), *feature_statistics(x)) == pytest.approx(0, abs=1e-8)
    assert frechet_distance(*feature_statistics(x), *feature_statistics(y)) == pytest.approx(
        frechet_distance(*feature_statistics(y), *feature_statistics(x)), rel=1e-9)


def test_equal_covariances_leave_the_squared_mean_difference():
    rng = np.random.default_rng(1)
    sigma = random_spd(rng, 10)
    mu1, mu2 = rng.standard_normal(10), rng.standard_normal(10)
    assert frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(((mu1 - mu2) ** 2).sum(), rel=1e-6)


def test_pixel_distance_grows_with_a_shift():
    torch.manual_seed(0)
    images = torch.randint(0, 200, (300, 3, 32, 32), dtype=torch.uint8)
    assert pixel_frechet_distance(images, images) == pytest.approx(0, abs=1e-8)
    assert pixel_frechet_distance(images, images + 20) > pixel_frechet_distance(images, images + 5) > 0


def test_statistics_accumulate_in_chunks_as_numpy_computes_them():
    x = np.random.default_rng(2).standard_normal((1000, 16)).astype(np.float32) * 3 + 1
    mu, sigma = feature_statistics(x, chunk=128)
    np.testing.assert_allclose(mu, x.astype(np.float64).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-10, atol=1e-12)


def test_rank_deficient_covariances_match_scipy_sqrtm():
    # Fewer images than feature dimensions, as in a small FID: S1 S2 is singular.
    rng = np.random.default_rng(3)
    (mu1, s1), (mu2, s2) = feature_statistics(rng.standard_normal((20, 64))), feature_statistics(
        rng.standard_normal((25, 64)) + 0.3)
    reference = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2) - 2 * np.trace(linalg.sqrtm(s1 @ s2)).real
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-10)  # clipping: 9e-9 off
