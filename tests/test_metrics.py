"""FID, KID and IS on features: their defining properties, and agreement with torch-fidelity's
metric code on the same features (the extractor is tested in test_inception.py)."""

import numpy as np
import pytest
import torch

from dcgan.metrics import MetricOptions, compute_scores, score_key
from dcgan.metrics.features import FeatureSet
from dcgan.metrics.inception_score import inception_score
from dcgan.metrics.kernel import kernel_distance


def features(n, d=64, shift=0.0, seed=0):
    rng = np.random.default_rng(seed)
    return (np.abs(rng.standard_normal((n, d))) + shift).astype(np.float32)  # non-negative, like pool3


def test_kid_is_about_zero_for_identical_sets_and_grows_with_a_shift():
    x = features(600)
    same, _ = kernel_distance(x, x, num_subsets=20, subset_size=200)
    near, _ = kernel_distance(features(600, seed=1), x, num_subsets=20, subset_size=200)  # same distribution
    far, _ = kernel_distance(features(600, shift=0.5, seed=1), x, num_subsets=20, subset_size=200)
    # Zero up to the estimator's noise, which is tiny beside a real difference; k(x, x) is about 8 here.
    assert abs(same) < 0.005 * far and abs(near) < 0.005 * far
    assert far > 1


def test_kid_subset_size_is_capped_by_the_smaller_set():
    mean, std = kernel_distance(features(50), features(80, seed=1), num_subsets=5, subset_size=1000)
    assert np.isfinite(mean) and std >= 0


def test_is_is_one_for_identical_predictions():
    logits = np.tile(np.random.default_rng(0).standard_normal(10), (100, 1))
    mean, std = inception_score(logits, splits=10)
    assert mean == pytest.approx(1.0, abs=1e-9) and std == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("k", [1, 3, 7])
def test_is_is_k_for_k_equally_used_confident_classes(k):
    labels = np.arange(1000 * k) % k
    logits = np.full((1000 * k, 10), -50.0)
    logits[np.arange(len(labels)), labels] = 50.0  # one-hot, to float64 precision
    assert inception_score(logits, splits=1)[0] == pytest.approx(k, rel=1e-9)
    # In 10 shuffled splits the classes are used almost, not exactly, equally.
    assert inception_score(logits, splits=10)[0] == pytest.approx(k, rel=0.02)


def test_scores_are_named_after_the_extractor():
    a, b = FeatureSet.from_features(features(300)), FeatureSet.from_features(features(300, shift=0.2, seed=1))
    a.logits = features(300, d=10, seed=2)
    inception = compute_scores(["fid", "kid", "is"], a, b, "inception", MetricOptions(kid_subsets=5))
    fast = compute_scores(["fid", "kid", "is"], a, b, "fast", MetricOptions(kid_subsets=5))
    assert set(inception) == {"fid", "kid", "kid_std", "is", "is_std"}
    assert set(fast) == {"fid_fast", "kid_fast", "kid_fast_std", "is_fast", "is_fast_std"}
    assert fast["fid_fast"] == inception["fid"] > 0  # the same numbers, never the same name
    assert score_key("fid", "fast") == "fid_fast"


def test_metric_code_agrees_with_torch_fidelity_on_the_same_features():
    import torch_fidelity.metric_fid as tf_fid
    from torch_fidelity.metric_isc import isc_features_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric

    generated, reference = features(3000, d=128, seed=3), features(2500, d=128, shift=0.05, seed=4)
    logits = np.random.default_rng(5).standard_normal((3000, 100)).astype(np.float32) * 3
    gen_set = FeatureSet.from_features(generated, logits)
    ref_set = FeatureSet.from_features(reference)
    ours = compute_scores(["fid", "kid", "is"], gen_set, ref_set, "inception", MetricOptions())

    fid = tf_fid.fid_statistics_to_metric(tf_fid.fid_features_to_statistics(torch.from_numpy(generated)),
                                          tf_fid.fid_features_to_statistics(torch.from_numpy(reference)), False)
    kid = kid_features_to_metric(torch.from_numpy(generated), torch.from_numpy(reference), kid_subsets=100,
                                 kid_subset_size=1000, kid_kernel="poly", kid_kernel_poly_degree=3,
                                 kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1, rng_seed=2020, verbose=False)
    isc = isc_features_to_metric(torch.from_numpy(logits), splits=10, shuffle=True, rng_seed=2020)
    assert ours["fid"] == pytest.approx(fid["frechet_inception_distance"], rel=1e-4)
    assert ours["kid"] == pytest.approx(kid["kernel_inception_distance_mean"], rel=1e-4)
    assert ours["kid_std"] == pytest.approx(kid["kernel_inception_distance_std"], rel=1e-3)
    assert ours["is"] == pytest.approx(isc["inception_score_mean"], rel=1e-6)
    assert ours["is_std"] == pytest.approx(isc["inception_score_std"], rel=1e-5)


def test_one_metric_vocabulary_for_every_command(capsys):
    """fid, kid, is, pr, dc on Inception features; the same with -fast on the fast extractor's; the
    older spelling (--features fast with plain names) still works, with a one-line note."""
    from dcgan.errors import UserError
    from dcgan.metrics import metric_vocabulary, older_spelling, parse_metrics

    assert parse_metrics("fid,kid") == ("inception", ["fid", "kid"])
    assert parse_metrics("FID-fast, pr-fast") == ("fast", ["fid", "pr"])
    assert parse_metrics(["fid"], features="fast") == ("fast", ["fid"])
    assert "is now written --metrics fid-fast" in older_spelling("fid", "fast")
    assert older_spelling("fid-fast", "fast") is None and older_spelling("fid", None) is None
    assert {"fid", "kid-fast", "dc-fast"} <= set(metric_vocabulary())
    for bad, message in [("fid,kid-fast", "mixes Inception and fast"), ("fidd", "takes fid, kid"),
                         ("", "takes fid, kid")]:
        with pytest.raises(UserError, match=message):
            parse_metrics(bad)
    with pytest.raises(UserError, match="leave out --features inception"):
        parse_metrics("fid-fast", features="inception")
