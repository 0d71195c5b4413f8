"""Scores of a class-conditional generator: per-class (intra-class) scores and class accuracy.

Per class c, `num_per_class` images of class c (seeds seed..seed+n-1) are scored against the
reference's own images of class c (its statistics cached like any reference's), as the intra-class
FID of the conditional-GAN literature (Miyato & Koyama 2018). Class accuracy is how often the fast
extractor's classifier, trained on the labelled dataset, gives a generated image the class it was
asked for: a generator that ignores its label scores about 1/K. Inception's logits are ImageNet's
1,000 classes, so with Inception features there is no class accuracy (the record says so).
"""

from __future__ import annotations

import numpy as np
import torch

from dcgan.data import ImageData
from dcgan.errors import UserError
from dcgan.metrics import MetricOptions, compute_scores
from dcgan.metrics.features import FeatureExtractor, extract_features, generated_batches
from dcgan.metrics.reference import RealSource, reference_features


def class_frequencies(class_names: list[str], data: ImageData) -> torch.Tensor | None:
    """How often each of a generator's classes occurs in real data (weights to draw classes "as
    in the data"); None when the data holds none of them."""
    counts = torch.bincount(data.labels, minlength=len(data.class_names)).double()
    weights = torch.tensor([float(counts[data.class_names.index(name)]) if name in data.class_names else 0.0
                            for name in class_names], dtype=torch.float64)
    return weights if weights.sum() > 0 else None


def classifier_classes(extractor: FeatureExtractor, class_names: list[str]) -> list[int] | None:
    """The index of each of the generator's classes among the extractor classifier's classes, or
    None when the extractor has no classifier over them (Inception, another dataset's extractor)."""
    names = getattr(extractor, "class_names", None)
    if extractor.kind == "inception" or not names or any(name not in names for name in class_names):
        return None
    return [names.index(name) for name in class_names]


def per_class_scores(generator: torch.nn.Module, extractor: FeatureExtractor, reference: RealSource,
                     metrics: list[str], *, num_per_class: int, seed: int = 0, batch_size: int = 64,
                     options: MetricOptions = MetricOptions(), use_cache: bool = True,
                     progress: bool = True) -> dict:
    """{"per_class": {class: {scores..., "accuracy", "num_images", "reference_images"}},
    "class_accuracy": mean accuracy or None, "classifier": why accuracy is absent, if it is}."""
    class_names = generator.class_names
    target = classifier_classes(extractor, class_names)
    resolution, channels = generator.img_resolution, generator.img_channels
    distances = [m for m in metrics if m != "is"]  # IS of one class says little; FID/KID per class
    per_class, correct = {}, 0
    for index, name in enumerate(class_names):
        source = RealSource(reference.dataset, reference.root, reference.split, [name], reference.download)
        try:
            data = source.load(resolution, channels)
        except UserError as error:
            raise UserError(f"per-class scores need the reference's images of every class of the model: "
                            f"{error}") from None
        real = reference_features(extractor, source, data, batch_size=batch_size, use_cache=use_cache,
                                  progress=progress)
        seeds = range(seed, seed + num_per_class)
        labels = torch.full((num_per_class,), index, dtype=torch.int64)
        fake = extract_features(extractor, generated_batches(generator, seeds, batch_size, labels), num_per_class,
                                desc=f"{extractor.label} features of {num_per_class:,} generated {name}",
                                progress=progress)
        kid_options = MetricOptions(kid_subsets=options.kid_subsets, seed=options.seed, is_splits=options.is_splits,
                                    kid_subset_size=min(options.kid_subset_size, num_per_class, real.count))
        scores = compute_scores(distances, fake, real, extractor.kind, kid_options)
        entry = {key: value for key, value in scores.items() if not key.endswith("_std")}
        entry.update(num_images=num_per_class, reference_images=real.count)
        if target is not None:
            hits = int((np.argmax(fake.logits, axis=1) == target[index]).sum())
            entry["accuracy"] = hits / num_per_class
            correct += hits
        per_class[name] = entry
    result = {"per_class": per_class,
              "class_accuracy": correct / (num_per_class * len(class_names)) if target is not None else None}
    if target is None:
        result["classifier"] = ("none: Inception's logits are ImageNet classes" if extractor.kind == "inception"
                                else "none: the fast extractor was trained on other classes")
    return result
