"""Precision and recall (Kynkäänniemi et al. 2019) and density and coverage (Naeem et al. 2020).

FID mixes two failures in one number: images that look wrong (fidelity) and a model that makes
only some of the images it should (diversity, mode collapse). These four metrics separate them, on
the same features FID reads:

- precision: the share of generated samples inside the real manifold (the union of balls around
  each real sample, of radius its distance to its k-th nearest real neighbour);
- recall: the share of real samples inside the generated manifold, built the same way;
- density: how many real balls a generated sample falls in, on average, over k (about 1 when the
  two sets match; above 1 where samples crowd the dense parts of the real data);
- coverage: the share of real samples whose ball holds at least one generated sample (robust to
  real outliers, unlike recall).

Precision and recall follow torch-fidelity 0.4.0's `prc` exactly (float32 `torch.cdist`, the k-th
neighbour as `kthvalue(k + 1)` over distances that include the point itself, `<=` at the radius);
the tests hold them to it. Written here rather than called there because torch-fidelity is a dev
dependency only and because these run on features the toolkit has already extracted, in chunks,
so 50,000 x 50,000 distances never sit in memory at once.
"""

from __future__ import annotations

import numpy as np
import torch

PR_NEIGHBOURS = 3  # Kynkäänniemi et al. 2019 and torch-fidelity's default
DC_NEIGHBOURS = 5  # Naeem et al. 2020's recommendation
CHUNK = 4096


def _tensor(features: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(features, dtype=np.float32))


def neighbour_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """(N,) the distance of each row to its k-th nearest other row."""
    return torch.cat([torch.cdist(chunk, features).kthvalue(k + 1, dim=1).values for chunk in features.split(CHUNK)])


def ball_counts(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """(len(points),) how many of the balls (centres, radii) each point lies in."""
    return torch.cat([(torch.cdist(chunk, centres) <= radii).sum(dim=1) for chunk in points.split(CHUNK)])


def precision_recall(generated, real, k: int = PR_NEIGHBOURS) -> tuple[float, float]:
    generated, real = _tensor(generated), _tensor(real)
    precision = (ball_counts(generated, real, neighbour_radii(real, k)) > 0).float().mean().item()
    recall = (ball_counts(real, generated, neighbour_radii(generated, k)) > 0).float().mean().item()
    return precision, recall


def density_coverage(generated, real, k: int = DC_NEIGHBOURS) -> tuple[float, float]:
    generated, real = _tensor(generated), _tensor(real)
    radii = neighbour_radii(real, k)
    density = ball_counts(generated, real, radii).double().sum().item() / (k * len(generated))
    nearest_generated = torch.cat([torch.cdist(chunk, generated).min(dim=1).values for chunk in real.split(CHUNK)])
    coverage = (nearest_generated <= radii).float().mean().item()
    return density, coverage
