"""Kernel Inception Distance (Binkowski et al. 2018, "Demystifying MMD GANs").

The unbiased estimate of the squared MMD under the polynomial kernel k(x, y) = (x.y / d + 1)^3,
averaged over `num_subsets` random subsets of `subset_size` features from each set. The subsets
are drawn as torch-fidelity draws them (a numpy RandomState seeded with `seed`, one
`choice(n, m, replace=False)` per set and subset, generated set first), so the two agree for the
same features and seed. Sums are taken in float64.
"""

from __future__ import annotations

import numpy as np


def polynomial_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between two (m, d) feature sets under (x.y / d + 1)^3."""
    m, d = x.shape
    k_xx = (x @ x.T / d + 1) ** 3
    k_yy = (y @ y.T / d + 1) ** 3
    k_xy = (x @ y.T / d + 1) ** 3
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2 * k_xy.sum() / (m * m))


def kernel_distance(generated: np.ndarray, reference: np.ndarray, *, num_subsets: int = 100,
                    subset_size: int = 1000, seed: int = 2020) -> tuple[float, float]:
    """KID between (N, D) generated and (M, D) reference features: (mean, std) over subsets.

    The subset size is at most the smaller set's size.
    """
    generated = np.asarray(generated, np.float64)
    reference = np.asarray(reference, np.float64)
    size = min(subset_size, len(generated), len(reference))
    if size < 2:
        raise ValueError("KID needs at least 2 images in each set")
    rng = np.random.RandomState(seed)
    values = np.empty(num_subsets)
    for i in range(num_subsets):
        x = generated[rng.choice(len(generated), size, replace=False)]
        y = reference[rng.choice(len(reference), size, replace=False)]
        values[i] = polynomial_mmd2(x, y)
    return float(values.mean()), float(values.std())
