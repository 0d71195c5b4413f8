"""Precision, recall, density and coverage: held to torch-fidelity's prc, and to hand-worked cases."""

import numpy as np
import pytest
import torch

from dcgan.metrics import MetricOptions, compute_scores
from dcgan.metrics.features import FeatureSet
from dcgan.metrics.manifold import density_coverage, precision_recall


def clouds(seed: int, shift: float, spread: float = 1.0, n_generated: int = 300, n_real: int = 250, dim: int = 16):
    generator = np.random.default_rng(seed)
    real = generator.normal(size=(n_real, dim)).astype(np.float32)
    generated = (generator.normal(size=(n_generated, dim)) * spread + shift).astype(np.float32)
    return generated, real


@pytest.mark.parametrize("shift, spread", [(0.0, 1.0), (0.5, 1.0), (0.0, 0.4), (0.0, 2.0)])
def test_precision_recall_match_torch_fidelity(shift, spread):
    from torch_fidelity.metric_prc import prc_features_to_metric

    generated, real = clouds(7, shift, spread)
    want = prc_features_to_metric(torch.from_numpy(generated), torch.from_numpy(real), prc_neighborhood=3,
                                  prc_batch_size=10000, save_cpu_ram=False, verbose=False)
    precision, recall = precision_recall(generated, real)
    assert 0.0 < want["precision"] < 1.0 or 0.0 < want["recall"] < 1.0  # a case where the balls decide
    assert precision == pytest.approx(want["precision"], abs=1e-6)
    assert recall == pytest.approx(want["recall"], abs=1e-6)


def test_precision_and_recall_separate_fidelity_from_diversity():
    # A generator that makes only the middle of the real data (collapsed): high precision, low recall.
    collapsed, real = clouds(1, 0.0, spread=0.3)
    precision, recall = precision_recall(collapsed, real)
    assert precision > 0.9 and recall < 0.4
    # One that makes everything, badly (too spread out): recall holds, precision falls.
    spread_out, real = clouds(1, 0.0, spread=2.5)
    precision, recall = precision_recall(spread_out, real)
    assert precision < 0.5 and recall > 0.7


def test_density_and_coverage_by_hand():
    # Real points on a line at 0, 1, 2, 3: with k = 1 each one's radius is 1.
    real = np.array([[0.0], [1.0], [2.0], [3.0]], np.float32)
    generated = np.array([[0.5], [0.5], [10.0]], np.float32)
    density, coverage = density_coverage(generated, real, k=1)
    # 0.5 lies in the balls of 0 and 1 (twice each), 10 in none: (2 + 2 + 0) / (1 * 3).
    assert density == pytest.approx(4 / 3)
    # The nearest generated point is 0.5 away from 0 and 1 (covered), 1.5 from 2, 2.5 from 3 (not).
    assert coverage == pytest.approx(0.5)


def test_pr_and_dc_as_named_metrics_with_the_extractor_suffix():
    generated, real = clouds(3, 0.2)
    sets = [FeatureSet.from_features(x) for x in (generated, real)]
    scores = compute_scores(["pr", "dc"], *sets, "fast", MetricOptions())
    assert set(scores) == {"precision_fast", "recall_fast", "density_fast", "coverage_fast"}
    assert (scores["precision_fast"], scores["recall_fast"]) == precision_recall(generated, real)
    inception = compute_scores(["pr"], *sets, "inception", MetricOptions())
    assert set(inception) == {"precision", "recall"}
