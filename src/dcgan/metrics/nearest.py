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
MAX_NEIGHBOURS = 32
# The check holds every generated image (uint8) and its features in memory: 20,000 images of 64 px
# are 250 MB, and a thousand already say whether a generator copies.
MAX_GENERATED = 20_000
MIN_TEST_IMAGES = 100  # a 1st percentile of fewer means little
ROWS = 8  # generated images in the grid
QUERY_CHUNK = 512  # query rows per distance block
TRAINING_CHUNK = 8192  # training rows per distance block: the training set is never converted whole


def identity(rows: torch.Tensor) -> torch.Tensor:
    return rows


def pixels(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) uint8 -> (N, C*H*W) float32 in [0, 1]."""
    return images.reshape(len(images), -1).float().div_(255)


@dataclass
class Neighbours:
    """Each query's k nearest training images, nearest first: one distance per training image, the
    smaller of its two orientations where mirror images are searched."""

    distances: torch.Tensor  # (N, k) float32
    indices: torch.Tensor  # (N, k) int64 into the training set
    mirrored: torch.Tensor  # (N, k) bool: the match is the training image's mirror image


def nearest_training(query_views: list[torch.Tensor], training_views: list[torch.Tensor], k: int,
                     convert=identity) -> Neighbours:
    """Nearest training rows (Euclidean) over views: a query's distance to training row j is the
    smallest over every (query view, training view) pair, a pair with one mirror view (index 1)
    counting as a mirrored match. Views are (N, ...) and (M, ...) tensors that `convert` turns
    into (rows, D) float32, a block at a time (so uint8 images stay uint8)."""
    num_queries, num_training = len(query_views[0]), len(training_views[0])
    k = min(k, num_training)
    parts = []
    for q in range(0, num_queries, QUERY_CHUNK):
        queries = [convert(view[q:q + QUERY_CHUNK]) for view in query_views]
        best = None
        for t in range(0, num_training, TRAINING_CHUNK):
            block, block_mirrored = None, None
            for qi, query in enumerate(queries):
                for ti, view in enumerate(training_views):
                    distance = torch.cdist(query, convert(view[t:t + TRAINING_CHUNK]),
                                           compute_mode="donot_use_mm_for_euclid_dist")  # (queries, chunk)
                    mirrored = (qi + ti) % 2 == 1
                    if block is None:
                        block, block_mirrored = distance, torch.full_like(distance, mirrored, dtype=torch.bool)
                    else:
                        nearer = distance < block
                        block = torch.where(nearer, distance, block)
                        block_mirrored = torch.where(nearer, mirrored, block_mirrored)
            indices = torch.arange(t, t + block.shape[1]).expand(block.shape[0], -1)
            if best is not None:
                block = torch.cat([best.distances, block], 1)
                indices = torch.cat([best.indices, indices], 1)
                block_mirrored = torch.cat([best.mirrored, block_mirrored], 1)
            top = block.topk(min(k, block.shape[1]), dim=1, largest=False)
            best = Neighbours(top.values, indices.gather(1, top.indices), block_mirrored.gather(1, top.indices))
        parts.append(best)
    return Neighbours(*(torch.cat([getattr(part, name) for part in parts])
                        for name in ("distances", "indices", "mirrored")))


def oriented(training: torch.Tensor, neighbours: Neighbours, row: int) -> torch.Tensor:
    """Query `row`'s nearest training images as they matched: (k, C, H, W) uint8."""
    images = training[neighbours.indices[row]]
    return torch.where(neighbours.mirrored[row][:, None, None, None], images.flip(-1), images)


def nearest_in_pixels(image: torch.Tensor, training: torch.Tensor, k: int = NEIGHBOURS) -> torch.Tensor:
    """The k training images nearest to one uint8 (C, H, W) image in pixels, mirror images
    included, as they matched: (k, C, H, W) uint8, nearest first, each training image once."""
    found = nearest_training([image[None], image[None].flip(-1)], [training], k, convert=pixels)
    return oriented(training, found, 0)


@dataclass
class SpaceResult:
    """The check in one space (features or pixels)."""

    share_closer: float  # generated images nearer the training set than the bar
    bar: float  # the PERCENTILE-th percentile of the test images' nearest-training distances
    share_ratio: float  # generated images whose nearest / second-nearest distance is below the ratio bar
    ratio_bar: float  # the PERCENTILE-th percentile of the test images' nearest / second-nearest distances
    generated_median: float  # median nearest-training distance of generated images
    test_median: float  # ... of test images
    neighbours: Neighbours  # each generated image's k nearest training images

    def scores(self) -> dict:
        return {"share_closer": self.share_closer, "bar": self.bar, "share_ratio": self.share_ratio,
                "ratio_bar": self.ratio_bar, "generated_median": self.generated_median,
                "test_median": self.test_median}


def distance_ratio(distances: torch.Tensor) -> torch.Tensor:
    """(N, >=2) sorted distances -> (N,) nearest / second nearest (1 where both are 0)."""
    return torch.where(distances[:, 1] > 0, distances[:, 0] / distances[:, 1].clamp_min(1e-30), 1.0)


def check_space(generated: list[torch.Tensor], training: list[torch.Tensor], test: list[torch.Tensor], k: int,
                convert=identity) -> SpaceResult:
    """The check on one kind of vector, each set given as its views (see `nearest_training`)."""
    found = nearest_training(generated, training, max(k, 2), convert)
    test_distance = nearest_training(test, training, 2, convert).distances
    bar = float(np.percentile(test_distance[:, 0].numpy(), PERCENTILE))
    ratio_bar = float(np.percentile(distance_ratio(test_distance).numpy(), PERCENTILE))
    nearest = found.distances[:, 0]
    kept = Neighbours(found.distances[:, :k], found.indices[:, :k], found.mirrored[:, :k])
    return SpaceResult(share_closer=float((nearest < bar).float().mean()), bar=bar,
                       share_ratio=float((distance_ratio(found.distances) < ratio_bar).float().mean()),
                       ratio_bar=ratio_bar, generated_median=float(nearest.median()),
                       test_median=float(test_distance[:, 0].median()), neighbours=kept)


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
        to the bar, nearest first."""
        closeness = self.features.neighbours.distances[:, 0] / max(self.features.bar, 1e-12)
        return closeness.argsort()[:rows]

    def grid_images(self, rows: int = ROWS) -> tuple[torch.Tensor, int]:
        """(rows * (2k + 2), C, H, W) uint8 and the images per row: each suspect, its k nearest
        training images in features, a blank, its k nearest in pixels (each as it matched)."""
        k = self.features.neighbours.indices.shape[1]
        blank = torch.full_like(self.generated[:1], 255)
        parts = []
        for index in self.suspects(rows).tolist():
            parts += [self.generated[index:index + 1], oriented(self.training, self.features.neighbours, index), blank,
                      oriented(self.training, self.pixels.neighbours, index)]
        return torch.cat(parts), 2 * k + 2


def check_memorization(generated_images: torch.Tensor, generated_features: np.ndarray, training_images: torch.Tensor,
                       training_features: np.ndarray, test_images: torch.Tensor, test_features: np.ndarray,
                       k: int = NEIGHBOURS, mirror_features: np.ndarray | None = None) -> Memorization:
    """The check on uint8 images and their features (rows in the same order). With
    `mirror_features` (the features of the training images' mirror images) mirror images are
    searched too: in features through them, in pixels by mirroring the generated and test images."""
    from dcgan.errors import UserError

    if len(training_images) < 2:
        raise UserError("the check needs at least 2 training images")
    k = min(k, len(training_images))
    as_tensor = lambda array: torch.as_tensor(np.asarray(array, dtype=np.float32))  # noqa: E731
    mirrored = mirror_features is not None
    training_views = [as_tensor(training_features)] + ([as_tensor(mirror_features)] if mirrored else [])
    in_features = check_space([as_tensor(generated_features)], training_views, [as_tensor(test_features)], k)
    with_mirror = (lambda images: [images, images.flip(-1)]) if mirrored else (lambda images: [images])  # noqa: E731
    in_pixels = check_space(with_mirror(generated_images), [training_images], with_mirror(test_images), k,
                            convert=pixels)
    return Memorization(in_features, in_pixels, generated_images, training_images)


def format_memorization(result: Memorization) -> list[str]:
    lines = []
    for space, entry in (("features", result.features), ("pixels", result.pixels)):
        name = f"{result.extractor_label} features" if space == "features" else "pixels"
        lines.append(f"{name}: {entry.share_closer:.1%} of generated images are nearer the training set than "
                     f"{100 - PERCENTILE:g}% of test images, {entry.share_ratio:.1%} by the nearest/second-nearest "
                     f"ratio (about {PERCENTILE:g}% "
                     f"when nothing is copied); median nearest distance {entry.generated_median:.4g} generated, "
                     f"{entry.test_median:.4g} test")
    return lines


def check_request(scored, training, test, num_gen: int, k: int) -> None:
    """One-line UserErrors for what the check cannot do."""
    from dcgan.errors import UserError

    if not 1 <= k <= MAX_NEIGHBOURS:
        raise UserError(f"k (training images shown per image) must be between 1 and {MAX_NEIGHBOURS}, not {k}")
    if isinstance(scored, torch.nn.Module):
        if not 2 <= num_gen <= MAX_GENERATED:
            raise UserError(f"num_gen must be between 2 and {MAX_GENERATED:,} for the memorization check (it keeps "
                            f"every image and its features in memory), not {num_gen:,}")
    elif not (isinstance(scored, torch.Tensor) and scored.dtype == torch.uint8 and scored.dim() == 4
              and scored.shape[1] in (1, 3) and len(scored) >= 2):
        raise UserError("images to check must be a uint8 (N, C, H, W) tensor of at least 2 images with 1 or 3 "
                        "channels" + (f", not {scored.dtype} of shape {tuple(scored.shape)}"
                                      if isinstance(scored, torch.Tensor) else ""))
    if test.describe() == training.describe():
        raise UserError(f"the held-out images must not be the training images ({training.name} both): pass the "
                        f"test split")


def memorization_check(scored, training, test, *, features: str = "fast", num_gen: int = 1000, seed: int = 0,
                       k: int = NEIGHBOURS, inception_weights: str | None = None, allow_download: bool = True,
                       fast_extractor: str | None = None, batch_size: int = 64, use_cache: bool = True,
                       mirrored: bool = True, device: str | torch.device = "cpu",
                       progress: bool = True) -> Memorization:
    """The check of a generator (images of seeds seed..seed+num_gen-1, as `dcgan generate` makes
    them) or of a uint8 (N, C, H, W) tensor, against `training` and `test` (RealSources), with its
    record (scores and protocol) and the extractor's label. The training set's features are
    cached like a reference's; the test side is max(num_gen, 1,000) of its images (all, if it has
    fewer; at least MIN_TEST_IMAGES). `mirrored`: search each training image's mirror image too."""
    import time

    from dcgan.data import ImageData
    from dcgan.errors import UserError
    from dcgan.metrics import MetricOptions
    from dcgan.metrics.evaluate import load_extractor, make_record, real_sample, subject_features, subject_shape
    from dcgan.metrics.features import extract_features, image_batches
    from dcgan.metrics.reference import reference_features

    started = time.time()
    check_request(scored, training, test, num_gen, k)
    resolution, channels = subject_shape(scored)
    extractor = load_extractor(features, inception_weights=inception_weights, allow_download=allow_download,
                               fast_extractor=fast_extractor, source=training, resolution=resolution,
                               channels=channels, device=device, progress=progress)
    training_data = training.load(resolution, channels)
    training_features = reference_features(extractor, training, training_data, batch_size=batch_size,
                                           use_cache=use_cache, progress=progress)
    mirror_features = None
    if mirrored:
        flipped = ImageData(training_data.images.flip(-1), training_data.labels, training_data.class_names)
        mirror_features = reference_features(extractor, training, flipped, batch_size=batch_size,
                                             use_cache=use_cache, progress=progress).features  # cached apart
        del flipped
    test_data = test.load(resolution, channels)
    if len(test_data) < MIN_TEST_IMAGES:
        raise UserError(f"the bar needs at least {MIN_TEST_IMAGES} test images; {test.name} holds {len(test_data)}")
    if len(test_data) > max(num_gen, 1000):
        test_data = real_sample(test_data, max(num_gen, 1000), seed)
    test_features = extract_features(extractor, image_batches(test_data.images, batch_size), len(test_data),
                                     desc=f"{extractor.label} features of {len(test_data):,} test images",
                                     progress=progress)
    subject = subject_features(scored, extractor, num_gen=num_gen, seed=seed, batch_size=batch_size,
                               keep_images=True, progress=progress)
    images, generated = subject.images, subject.info
    result = check_memorization(images, subject.features.features, training_data.images,
                                training_features.features, test_data.images, test_features.features, k,
                                mirror_features=mirror_features)
    if result.pixels.bar == 0 or result.features.bar == 0:
        raise UserError(f"some test images are also training images (distance 0): {test.name} and "
                        f"{training.name} overlap, so there is no bar to measure against")
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
