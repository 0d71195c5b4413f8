"""Image-set metrics by name: FID, KID, IS, precision/recall (`pr`) and density/coverage (`dc`),
on one shared `FeatureSet` helper.

Each metric reads the features (or logits) of the generated set and, for the distances, of a
reference set. The extractor decides what a score is called: Inception scores are `fid`, `kid`,
`is`, `precision`, ...; scores on the toolkit's fast features are `fid_fast`, `kid_fast`, `is_fast`,
`precision_fast`, ..., so a fast score is never mistaken for FID.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dcgan.choices import EXTRACTORS, FAST, metric_vocabulary
from dcgan.metrics.features import FeatureSet
from dcgan.metrics.frechet import frechet_distance
from dcgan.metrics.inception_score import inception_score
from dcgan.metrics.kernel import kernel_distance
from dcgan.metrics.manifold import density_coverage, precision_recall


@dataclass(frozen=True)
class MetricOptions:
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    is_splits: int = 10
    seed: int = 2020  # KID subsets and IS shuffling, as torch-fidelity's default


@dataclass(frozen=True)
class Metric:
    title: str
    compute: Callable[[FeatureSet, FeatureSet | None, MetricOptions], dict[str, float]]  # {score name: value}
    needs_reference: bool
    needs_reference_features: bool
    lower_is_better: bool


def _fid(generated: FeatureSet, reference: FeatureSet, options: MetricOptions):
    """Fréchet Inception Distance (Heusel et al. 2017); matches torch-fidelity / pytorch-fid."""
    return {"fid": frechet_distance(generated.mu, generated.sigma, reference.mu, reference.sigma)}


def _kid(generated: FeatureSet, reference: FeatureSet, options: MetricOptions):
    """Kernel Inception Distance (Binkowski et al. 2018); matches torch-fidelity."""
    value, spread = kernel_distance(generated.features, reference.features, num_subsets=options.kid_subsets,
                                    subset_size=options.kid_subset_size, seed=options.seed)
    return {"kid": value, "kid_std": spread}


def _is(generated: FeatureSet, reference: FeatureSet | None, options: MetricOptions):
    """Inception Score (Salimans et al. 2016); matches torch-fidelity."""
    value, spread = inception_score(generated.logits, splits=options.is_splits, seed=options.seed)
    return {"is": value, "is_std": spread}


def _pr(generated: FeatureSet, reference: FeatureSet, options: MetricOptions):
    """Precision and recall (Kynkäänniemi et al. 2019, k = 3); matches torch-fidelity's prc."""
    precision, recall = precision_recall(generated.features, reference.features)
    return {"precision": precision, "recall": recall}


def _dc(generated: FeatureSet, reference: FeatureSet, options: MetricOptions):
    """Density and coverage (Naeem et al. 2020, k = 5)."""
    density, coverage = density_coverage(generated.features, reference.features)
    return {"density": density, "coverage": coverage}


METRICS: dict[str, Metric] = {
    "fid": Metric("FID", _fid, needs_reference=True, needs_reference_features=False, lower_is_better=True),
    "kid": Metric("KID", _kid, needs_reference=True, needs_reference_features=True, lower_is_better=True),
    "is": Metric("IS", _is, needs_reference=False, needs_reference_features=False, lower_is_better=False),
    "pr": Metric("precision/recall", _pr, needs_reference=True, needs_reference_features=True,
                 lower_is_better=False),
    "dc": Metric("density/coverage", _dc, needs_reference=True, needs_reference_features=True,
                 lower_is_better=False),
}
SCORE_TITLES = {"fid": "FID", "kid": "KID", "is": "IS", "precision": "precision", "recall": "recall",
                "density": "density", "coverage": "coverage"}


def parse_metrics(names, what: str = "--metrics", features: str | None = None) -> tuple[str, list[str]]:
    """(extractor kind, base metric names) of metric names in the one vocabulary: `fid,kid` ->
    ("inception", ["fid", "kid"]), `fid-fast,pr-fast` -> ("fast", ["fid", "pr"]). All names use one
    extractor. `features` is the older spelling (plain names with --features fast): it still works
    (`older_spelling` gives the note to print once the command runs). Anything else is a one-line
    UserError naming what `what` takes."""
    from dcgan.errors import UserError

    if isinstance(names, str):
        names = names.split(",")
    given = list(dict.fromkeys(str(m).strip().lower() for m in names if str(m).strip()))
    unknown = [m for m in given if m not in metric_vocabulary()]
    if unknown or not given:
        raise UserError(f"{what} takes {', '.join(metric_vocabulary())}; got {', '.join(map(str, names))!r}")
    fast = {m.endswith(FAST) for m in given}
    if len(fast) > 1:
        raise UserError(f"{what}: {', '.join(given)} mixes Inception and fast-extractor metrics; score them in two "
                        f"runs (e.g. fid,kid and fid-fast,kid-fast)")
    kind = "fast" if fast == {True} else "inception"
    if features not in (None, *EXTRACTORS):
        raise UserError(f"features must be inception or fast, not {features!r}")
    if features == "fast" and kind == "inception":
        kind = "fast"
    elif features == "inception" and kind == "fast":
        raise UserError(f"{what} {','.join(given)} are fast-extractor metrics; leave out --features inception")
    return kind, [m.removesuffix(FAST) for m in given]


def older_spelling(names, features: str | None, what: str = "--metrics") -> str | None:
    """The one-line note for plain metric names with --features fast, or None."""
    if isinstance(names, str):
        names = names.split(",")
    given = [str(m).strip().lower() for m in names if str(m).strip()]
    if features != "fast" or any(m.endswith(FAST) for m in given):
        return None
    return f"note: --features fast with {','.join(given)} is now written {what} {','.join(m + FAST for m in given)}"


def metric_names(names, what: str = "--metrics") -> list[str]:
    """Base metric names (fid, kid, is, pr, dc), checked; see `parse_metrics` for the -fast forms."""
    return parse_metrics(names, what)[1]


def score_key(name: str, extractor_kind: str) -> str:
    """`fid` for Inception features, `fid_fast` for the fast extractor's (`kid_std`: `kid_fast_std`)."""
    if extractor_kind == "inception":
        return name
    base, spread = (name[:-4], "_std") if name.endswith("_std") else (name, "")
    return f"{base}_{extractor_kind}{spread}"


def score_title(name: str, extractor_kind: str) -> str:
    title = SCORE_TITLES[name]
    return title if extractor_kind == "inception" else f"{title}-{extractor_kind}"


def score_names(metric: str) -> list[str]:
    """The scores one metric gives: `pr` -> precision, recall."""
    return {"pr": ["precision", "recall"], "dc": ["density", "coverage"]}.get(metric, [metric])


def compute_scores(names: list[str], generated: FeatureSet, reference: FeatureSet | None,
                   extractor_kind: str, options: MetricOptions = MetricOptions()) -> dict[str, float]:
    """{score key: value} (and `<key>_std` where the metric has a spread) for each metric name."""
    scores: dict[str, float] = {}
    for name in names:
        for score, value in METRICS[name].compute(generated, reference, options).items():
            scores[score_key(score, extractor_kind)] = value
    return scores
