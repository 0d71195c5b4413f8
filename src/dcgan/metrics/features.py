"""Features of image sets, streamed in batches, and the statistics every metric shares.

A `FeatureExtractor` maps uint8 images to (features, logits). `extract_features` runs one over a
stream of uint8 batches (generated on the fly or sliced from a dataset), so no image set ever
sits in memory as floats: only its features do. A `FeatureSet` holds the features, the logits
and their mean and covariance (float64), the one helper FID, KID and IS all read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from tqdm import tqdm

from dcgan.metrics.frechet import feature_statistics
from dcgan.sampling import class_labels, generate_from_latents, latents_from_seeds


class FeatureExtractor(Protocol):
    kind: str  # "inception" or "fast"
    label: str  # how scores made with it are named: "Inception" or "fast"
    feature_dim: int
    has_logits: bool  # False: the weights end at the features, so no IS

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) uint8 -> (features (B, D), logits (B, K)), float32 on the CPU."""

    def describe(self) -> dict:
        """The protocol record: name, weights file and its SHA-256, layers, resize."""

    def identity(self) -> dict:
        """What makes two feature sets comparable: the extractor's name and weights hash."""

    def summary(self) -> str:
        """One line for people: which features, which weights."""


@dataclass
class FeatureSet:
    """Features of one image set; `features`/`logits` may be None for a statistics-only file."""

    mu: np.ndarray  # (D,) float64
    sigma: np.ndarray  # (D, D) float64
    count: int
    features: np.ndarray | None = None  # (N, D) float32
    logits: np.ndarray | None = None  # (N, K) float32
    metadata: dict = field(default_factory=dict)

    @classmethod
    def from_features(cls, features: np.ndarray, logits: np.ndarray | None = None,
                      metadata: dict | None = None) -> FeatureSet:
        mu, sigma = feature_statistics(features)
        return cls(mu, sigma, len(features), features, logits, dict(metadata or {}))


def extract_features(extractor: FeatureExtractor, batches: Iterable[torch.Tensor], total: int, *,
                     keep_logits: bool = True, desc: str = "features", progress: bool = True) -> FeatureSet:
    """Run `extractor` over uint8 batches that hold `total` images in all."""
    features = np.empty((total, extractor.feature_dim), np.float32)
    logits_parts = []
    done = 0
    with tqdm(total=total, desc=desc, unit="img", disable=not progress, leave=False, dynamic_ncols=True) as bar:
        for batch in batches:
            batch_features, batch_logits = extractor(batch)
            features[done:done + len(batch)] = batch_features.numpy()
            if keep_logits:
                logits_parts.append(batch_logits.numpy())
            done += len(batch)
            bar.update(len(batch))
    if done != total:
        raise ValueError(f"the image stream held {done} images, not {total}")
    logits = np.concatenate(logits_parts) if keep_logits else None
    return FeatureSet.from_features(features, logits)


def image_batches(images: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """Slices of an in-memory (N, C, H, W) uint8 tensor."""
    for start in range(0, len(images), batch_size):
        yield images[start:start + batch_size]


def generated_batches(generator: torch.nn.Module, seeds: range, batch_size: int,
                      labels: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
    """uint8 images of `seeds` (image i from seed i alone, as `dcgan generate`), a batch at a time.
    A conditional generator: image i of class `labels[i]`, or of the class its seed draws (`labels` None)."""
    if labels is None:
        labels = class_labels(generator, seeds)
    for start in range(0, len(seeds), batch_size):
        chunk = seeds[start:start + batch_size]
        chunk_labels = labels[start:start + batch_size] if labels is not None else None
        yield generate_from_latents(generator, latents_from_seeds(chunk, generator.z_dim), batch_size,
                                    labels=chunk_labels)
