"""Image-set metrics by name: FID, KID and IS, on one shared `FeatureSet` helper.

Each metric reads the features (or logits) of the generated set and, for the distances, of a
reference set. The extractor decides what a score is called: Inception scores are `fid`, `kid`,
`is`; scores on the toolkit's fast features are `fid_fast`, `kid_fast`, `is_fast`, so a fast score
is never mistaken for FID.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from dcgan.metrics.features import FeatureSet
from dcgan.metrics.frechet import frechet_distance
from dcgan.metrics.inception_score import inception_score
from dcgan.metrics.kernel import kernel_distance


@dataclass(frozen=True)
class MetricOptions:
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    is_splits: int = 10
    seed: int = 2020  # KID subsets and IS shuffling, as torch-fidelity's default


@dataclass(frozen=True)
class Metric:
    title: str
    compute: Callable[[FeatureSet, FeatureSet | None, MetricOptions], tuple[float, float | None]]
    needs_reference: bool
    needs_reference_features: bool
    lower_is_better: bool


def _fid(generated: FeatureSet, reference: FeatureSet, options: MetricOptions):
    """Fréchet Inception Distance (Heusel et al. 2017); matches torch-fidelity / pytorch-fid."""
    return frechet_distance(generated.mu, generated.sigma, reference.mu, reference.sigma), None


def _kid(generated: FeatureSet, reference: FeatureSet, options: MetricOptions):
    """Kernel Inception Distance (Binkowski et al. 2018); matches torch-fidelity."""
    return kernel_distance(generated.features, reference.features, num_subsets=options.kid_subsets,
                           subset_size=options.kid_subset_size, seed=options.seed)


def _is(generated: FeatureSet, reference: FeatureSet | None, options: MetricOptions):
    """Inception Score (Salimans et al. 2016); matches torch-fidelity."""
    return inception_score(generated.logits, splits=options.is_splits, seed=options.seed)


METRICS: dict[str, Metric] = {
    "fid": Metric("FID", _fid, needs_reference=True, needs_reference_features=False, lower_is_better=True),
    "kid": Metric("KID", _kid, needs_reference=True, needs_reference_features=True, lower_is_better=True),
    "is": Metric("IS", _is, needs_reference=False, needs_reference_features=False, lower_is_better=False),
}


def score_key(metric: str, extractor_kind: str) -> str:
    """`fid` for Inception features, `fid_fast` for the fast extractor's."""
    return metric if extractor_kind == "inception" else f"{metric}_{extractor_kind}"


def score_title(metric: str, extractor_kind: str) -> str:
    title = METRICS[metric].title
    return title if extractor_kind == "inception" else f"{title}-{extractor_kind}"


def compute_scores(names: list[str], generated: FeatureSet, reference: FeatureSet | None,
                   extractor_kind: str, options: MetricOptions = MetricOptions()) -> dict[str, float]:
    """{score key: value} (and `<key>_std` where the metric has a spread) for each metric name."""
    scores: dict[str, float] = {}
    for name in names:
        value, spread = METRICS[name].compute(generated, reference, options)
        key = score_key(name, extractor_kind)
        scores[key] = value
        if spread is not None:
            scores[f"{key}_std"] = spread
    return scores
