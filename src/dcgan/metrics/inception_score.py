"""Inception Score (Salimans et al. 2016, "Improved Techniques for Training GANs").

IS = exp(E_x KL(p(y|x) || p(y))), on `splits` equal parts of the set, reported as mean and std
over the parts. As torch-fidelity computes it: the logits are shuffled by a numpy RandomState
seeded with `seed`, softmax is taken in float64, part i is rows [i*N//splits, (i+1)*N//splits).
"""

from __future__ import annotations

import numpy as np
import torch


def inception_score(logits: np.ndarray, *, splits: int = 10, seed: int = 2020) -> tuple[float, float]:
    """(N, K) class logits -> (mean, std) of the Inception Score over `splits` parts."""
    logits = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    n = logits.shape[0]
    if n < splits:
        raise ValueError(f"IS with {splits} splits needs at least {splits} images, not {n}")
    logits = logits[torch.as_tensor(np.random.RandomState(seed).permutation(n))]
    log_p = logits.log_softmax(dim=1)
    scores = []
    for i in range(splits):
        part = log_p[i * n // splits:(i + 1) * n // splits]
        log_marginal = part.exp().mean(dim=0).log()
        kl = (part.exp() * (part - log_marginal)).sum(dim=1).mean()
        scores.append(float(kl.exp()))
    return float(np.mean(scores)), float(np.std(scores))
