"""Is a generator copying its training images? Nearest training images, and a number that says.

For each generated image, its nearest training images in two spaces: the extractor's features
(Inception or fast; what the image shows) and pixels (uint8 scaled to [0, 1]; an exact or near
copy). Distance alone says little: how close is "too close" depends on the data. Real held-out
images set the bar, as in Meehan et al. 2020's data-copying test and StudioGAN's nearest-neighbour
check. Two numbers per space:

- `share_closer`: the share of generated images whose nearest training image is nearer than the
  1st percentile of the test images' nearest-training distances;
- `share_ratio`: the same with the ratio of the nearest to the second-nearest training distance
  (Lowe's ratio test). A copy is much nearer its original than any other training image (ratio
  near 0); an image that is merely central, such as a flat or blurred one, is about as near many
  training images (ratio near 1). In pixels, `share_closer` flags such images (an untrained
  generator's flat grey squares score 100 %), `share_ratio` does not.

A generator that makes new images scores about 0.01 on both: its images are no nearer the
training set than held-out real images are. One that copies scores far above it (1.0 when every
image is a training image).

The training set is searched with each image's mirror image too (`mirrored`, on by default):
training flips images, so a mirrored copy is a copy. The test images' distances are measured the
same way, so the bar moves with it.

The grid shows the generated images nearest to the training set in features (the most suspect),
each followed by its K nearest training images in features, then (after a blank) in pixels.

Written here rather than taken from a library: the distances are torch.cdist in chunks, and none
of torch-fidelity, clean-fid or StudioGAN exposes this check as a function.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

PERCENTILE = 1.0  # the bar: this percentile of held-out images' nearest-training distances
NEIGHBOURS = 5  # training images shown per generated image, in each space
ROWS = 8  # generated images in the grid
CHUNK = 512  # query rows per distance block


def nearest_training(queries: torch.Tensor, training: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances (N, k) and indices (N, k) of each query row's k nearest training rows (Euclidean),
    nearest first. queries (N, D), training (M, D), float32."""
    distances, indices = [], []
    for chunk in queries.split(CHUNK):
        block = torch.cdist(chunk, training, compute_mode="donot_use_mm_for_euclid_dist")  # (chunk, M)
        nearest = block.topk(k, dim=1, largest=False)
        distances.append(nearest.values)
        indices.append(nearest.indices)
    return torch.cat(distances), torch.cat(indices)


def nearest_in_pixels(image: torch.Tensor, training: torch.Tensor, k: int = NEIGHBOURS) -> torch.Tensor:
    """The k training images nearest to one uint8 (C, H, W) image in pixels, mirror images
    included: (k, C, H, W) uint8, nearest first. Mirrors are searched by mirroring the image
    (|x - flip(t)| = |flip(x) - t|), so the set is held once, as uint8."""
    queries = pixels(torch.stack([image, image.flip(-1)]))  # (2, D)
    distances = torch.cat([torch.cdist(queries, pixels(chunk), compute_mode="donot_use_mm_for_euclid_dist")
                           for chunk in training.split(4096)], dim=1)  # (2, M): as is, mirrored
    best = distances.flatten().topk(min(k, distances.numel()), largest=False).indices
    mirrored, index = best // len(training), best % len(training)
    return torch.stack([training[i].flip(-1) if m else training[i] for i, m in zip(index.tolist(), mirrored.tolist())])


def pixels(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) uint8 -> (N, C*H*W) float32 in [0, 1]."""
    return images.reshape(len(images), -1).float().div_(255)


@dataclass
class SpaceResult:
    """The check in one space (features or pixels)."""

    share_closer: float  # generated images nearer the training set than the bar
    bar: float  # the PERCENTILE-th percentile of the test images' nearest-training distances
    share_ratio: float  # generated images whose nearest / second-nearest distance is below the ratio bar
    ratio_bar: float  # the PERCENTILE-th percentile of the test images' nearest / second-nearest distances
    generated_median: float  # median nearest-training distance of generated images
    test_median: float  # ... of test images
    neighbours: torch.Tensor  # (N_generated, k) indices of each generated image's nearest training images
    nearest_distance: torch.Tensor  # (N_generated,) distance to the nearest one

    def scores(self) -> dict:
        return {"share_closer": self.share_closer, "bar": self.bar, "share_ratio": self.share_ratio,
                "ratio_bar": self.ratio_bar, "generated_median": self.generated_median,
                "test_median": self.test_median}


def distance_ratio(distances: torch.Tensor) -> torch.Tensor:
    """(N, >=2) sorted distances -> (N,) nearest / second nearest (1 where both are 0)."""
    return torch.where(distances[:, 1] > 0, distances[:, 0] / distances[:, 1].clamp_min(1e-30), 1.0)


def check_space(generated: torch.Tensor, training: torch.Tensor, test: torch.Tensor, k: int) -> SpaceResult:
    """The check on one kind of vector: (N, D) generated, (M, D) training (at least 2), (T, D) test rows."""
    generated_distance, neighbours = nearest_training(generated, training, max(k, 2))
    test_distance, _ = nearest_training(test, training, 2)
    bar = float(np.percentile(test_distance[:, 0].numpy(), PERCENTILE))
    ratio_bar = float(np.percentile(distance_ratio(test_distance).numpy(), PERCENTILE))
    nearest = generated_distance[:, 0]
    return SpaceResult(share_closer=float((nearest < bar).float().mean()), bar=bar,
                       share_ratio=float((distance_ratio(generated_distance) < ratio_bar).float().mean()),
                       ratio_bar=ratio_bar, generated_median=float(nearest.median()),
                       test_median=float(test_distance[:, 0].median()), neighbours=neighbours[:, :k],
                       nearest_distance=nearest)


@dataclass
class Memorization:
    """The check in both spaces, and the grid of the most suspect generated images."""

    features: SpaceResult
    pixels: SpaceResult
    generated: torch.Tensor  # (N, C, H, W) uint8
    training: torch.Tensor  # (M, C, H, W) uint8
    record: dict = field(default_factory=dict)  # scores and protocol, as `dcgan evaluate` records them
    extractor_label: str = "features"  # "fast" or "Inception"

    def scores(self) -> dict:
        return {"nearest_features": self.features.scores(), "nearest_pixels": self.pixels.scores()}

    def suspects(self, rows: int = ROWS) -> torch.Tensor:
        """Indices of the `rows` generated images nearest to the training set in features, relative
        to the bar (pixels break ties), nearest first."""
        closeness = self.features.nearest_distance / max(self.features.bar, 1e-12)
        return closeness.argsort()[:rows]

    def grid_images(self, rows: int = ROWS) -> tuple[torch.Tensor, int]:
        """(rows * (2k + 2), C, H, W) uint8 and the images per row: each suspect, its k nearest
        training images in features, a blank, its k nearest in pixels."""
        k = self.features.neighbours.shape[1]
        blank = torch.full_like(self.generated[:1], 255)
        parts = []
        for index in self.suspects(rows):
            parts += [self.generated[index:index + 1], self.training[self.features.neighbours[index]], blank,
                      self.training[self.pixels.neighbours[index]]]
        return torch.cat(parts), 2 * k + 2


def check_memorization(generated_images: torch.Tensor, generated_features: np.ndarray, training_images: torch.Tensor,
                       training_features: np.ndarray, test_images: torch.Tensor, test_features: np.ndarray,
                       k: int = NEIGHBOURS) -> Memorization:
    """The check on uint8 images and their features (rows in the same order)."""
    if len(training_images) < 2:
        raise ValueError("the check needs at least 2 training images")
    k = min(k, len(training_images))
    as_tensor = lambda array: torch.as_tensor(np.asarray(array, dtype=np.float32))  # noqa: E731
    in_features = check_space(as_tensor(generated_features), as_tensor(training_features), as_tensor(test_features), k)
    in_pixels = check_space(pixels(generated_images), pixels(training_images), pixels(test_images), k)
    return Memorization(in_features, in_pixels, generated_images, training_images)


def format_memorization(result: Memorization) -> list[str]:
    lines = []
    for space, entry in (("features", result.features), ("pixels", result.pixels)):
        name = f"{result.extractor_label} features" if space == "features" else "pixels"
        lines.append(f"{name}: {entry.share_closer:.1%} of generated images are nearer the training set than 99% "
                     f"of test images, {entry.share_ratio:.1%} by the nearest/second-nearest ratio (about 1% "
                     f"when nothing is copied); median nearest distance {entry.generated_median:.4g} generated, "
                     f"{entry.test_median:.4g} test")
    return lines


def memorization_check(scored, training, test, *, features: str = "fast", num_gen: int = 1000, seed: int = 0,
                       k: int = NEIGHBOURS, inception_weights: str | None = None, allow_download: bool = True,
                       fast_extractor: str | None = None, batch_size: int = 64, use_cache: bool = True,
                       mirrored: bool = True, device: str | torch.device = "cpu",
                       progress: bool = True) -> Memorization:
    """The check of a generator (images of seeds seed..seed+num_gen-1, as `dcgan generate` makes
    them) or of a uint8 (N, C, H, W) tensor, against `training` and `test` (RealSources), with its
    record (scores and protocol) and the extractor's label. The training set's features are
    cached like a reference's; the test side is `num_gen` of its images (all, if it has fewer).
    `mirrored`: search each training image's mirror image too."""
    import time

    from dcgan.data import ImageData
    from dcgan.metrics import MetricOptions
    from dcgan.metrics.evaluate import load_extractor, make_record, real_sample
    from dcgan.metrics.features import extract_features, image_batches
    from dcgan.metrics.reference import reference_features
    from dcgan.sampling import generate_images

    started = time.time()
    if isinstance(scored, torch.nn.Module):
        resolution, channels = scored.img_resolution, scored.img_channels
    else:
        resolution, channels = scored.shape[-1], scored.shape[1]
    extractor = load_extractor(features, inception_weights=inception_weights, allow_download=allow_download,
                               fast_extractor=fast_extractor, source=training, resolution=resolution,
                               channels=channels, device=device, progress=progress)
    training_data = training.load(resolution, channels)
    training_features = reference_features(extractor, training, training_data, batch_size=batch_size,
                                           use_cache=use_cache, progress=progress)
    training_images, training_vectors = training_data.images, training_features.features
    if mirrored:
        flipped = ImageData(training_data.images.flip(-1), training_data.labels, training_data.class_names)
        flipped_features = reference_features(extractor, training, flipped, batch_size=batch_size,
                                              use_cache=use_cache, progress=progress)  # cached apart: other pixels
        training_images = torch.cat([training_images, flipped.images])
        training_vectors = np.concatenate([training_vectors, flipped_features.features])
    test_data = test.load(resolution, channels)
    if len(test_data) > num_gen:
        test_data = real_sample(test_data, num_gen, seed)
    test_features = extract_features(extractor, image_batches(test_data.images, batch_size), len(test_data),
                                     desc=f"{extractor.label} features of {len(test_data):,} test images",
                                     progress=progress)
    if isinstance(scored, torch.nn.Module):
        images = generate_images(scored, range(seed, seed + num_gen), batch_size=batch_size)
        generated = {"kind": "generated", "num_images": num_gen, "seeds": f"{seed}-{seed + num_gen - 1}"}
    else:
        images = scored
        generated = {"kind": "images", "num_images": len(scored)}
    generated_features = extract_features(extractor, image_batches(images, batch_size), len(images),
                                          desc=f"{extractor.label} features of {len(images):,} generated images",
                                          progress=progress)
    result = check_memorization(images, generated_features.features, training_images, training_vectors,
                                test_data.images, test_features.features, k)
    record = make_record(result.scores(), extractor, metrics=["nearest"], generated=generated,
                         reference={"kind": "images", **training_features.metadata["data"], "name": training.name},
                         options=MetricOptions(), seconds=time.time() - started, device=str(device))
    record["protocol"]["nearest"] = {
        "test": {**test.describe(), "num_images": len(test_data), "sample_seed": seed},
        "distance": "Euclidean, on the extractor's features and on uint8 pixels / 255",
        "training_mirrored": mirrored,
        "bar": f"the {PERCENTILE:g}th percentile of the test images' distances to their nearest training image",
        "share_closer": "the share of generated images whose nearest training image is nearer than the bar",
        "share_ratio": "the share of generated images whose nearest / second-nearest training distance is below "
                       f"the {PERCENTILE:g}th percentile of the test images' ratios"}
    result.record, result.extractor_label = record, extractor.label
    return result
