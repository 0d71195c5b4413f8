"""Fréchet distance between two Gaussians fitted to feature sets (Heusel et al. 2017, FID).

    d^2 = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))

The trace of the matrix square root is the sum of the square roots of the eigenvalues of S1 S2,
computed in float64. The eigenvalues are real and non-negative in exact arithmetic; rounding gives
the near-zero ones of a rank-deficient product (fewer images than feature dimensions) small
negative or imaginary parts, so the principal complex square root is taken and the real part of
the sum kept: the trace `scipy.linalg.sqrtm(S1 S2).real` gives, and what torch-fidelity computes.
This avoids `sqrtm` itself, whose `disp` argument recent SciPy removed (see tests).
"""

from __future__ import annotations

import numpy as np
import torch


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    eigenvalues = np.linalg.eigvals(sigma1 @ sigma2).astype(np.complex128)
    trace_sqrt = np.sqrt(eigenvalues).sum().real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def feature_statistics(features: np.ndarray, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of (N, D) features, in float64 (as `np.cov`).

    Accumulated `chunk` rows at a time, so 50k x 2048 float32 features need no float64 copy.
    """
    features = np.asarray(features)
    n = len(features)
    if n < 2:
        raise ValueError("a covariance needs at least 2 feature vectors")
    mu = np.zeros(features.shape[1])
    for start in range(0, n, chunk):
        mu += features[start:start + chunk].sum(axis=0, dtype=np.float64)
    mu /= n
    sigma = np.zeros((features.shape[1], features.shape[1]))
    for start in range(0, n, chunk):
        centered = features[start:start + chunk].astype(np.float64) - mu
        sigma += centered.T @ centered
    return mu, sigma / (n - 1)


def pixel_features(images: torch.Tensor, size: int = 8) -> np.ndarray:
    """(N, C, H, W) uint8 -> (N, C*size*size) area-pooled pixels in [0, 1]: a cheap, data-only feature.

    Not FID: a sanity statistic for tests and quick comparisons, always reported under its own name.
    """
    pooled = torch.nn.functional.adaptive_avg_pool2d(images.double() / 255, size)
    return pooled.flatten(1).numpy()


def pixel_frechet_distance(a: torch.Tensor, b: torch.Tensor, size: int = 8) -> float:
    """Fréchet distance between two uint8 image sets' `size`x`size` pooled pixels."""
    return frechet_distance(*feature_statistics(pixel_features(a, size)), *feature_statistics(pixel_features(b, size)))
