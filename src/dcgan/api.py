"""The Python API: what the `dcgan` commands do, by the same code.

    import dcgan

    G = dcgan.load_generator("cifar10-cars")            # a shipped name, a run folder, a .safetensors or .pt
    images = dcgan.generate(G, seeds=range(16))          # (16, 3, 32, 32) uint8; image i from seed i
    pictures = dcgan.generate(G, seeds=[7], pil=True)    # [PIL.Image]: seed 7 is the CLI's seed 7
    frames = dcgan.walk(G, [0, 7, 42], frames=60, out="walk.mp4")  # a looping latent walk, as a video too
    result = dcgan.evaluate(G, "cifar10-test", metrics=["fid-fast", "kid-fast"], num_gen=5000)
    result.scores                                        # {"fid_fast": ..., "kid_fast": ..., ...}
    check = dcgan.nearest(G, "cifar10-train", classes=["automobile"])  # is it copying? (vs cifar10-test)
    check.scores()["nearest_pixels"]["share_closer"]     # about 0.01 when nothing is copied
    run = dcgan.train(dcgan.TrainConfig(dataset="folder", data_root="cars/", minutes=15))

Errors a user can fix (a missing file, an unknown class, a bad setting) raise `dcgan.UserError`
with the one-line message the CLI prints.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

import torch
from PIL import Image

from dcgan.config import LENGTHS, TrainConfig, resolve_config
from dcgan.errors import UserError
from dcgan.metrics import MetricOptions
from dcgan.metrics.evaluate import Evaluation
from dcgan.metrics.reference import RealSource, parse_reference
from dcgan.models.dcgan import Generator


def generator_path(source: str | Path) -> Path:
    """A shipped model's name (see `dcgan models`) -> its file; a path is itself."""
    from dcgan.pretrained import model_file, shipped_models

    if not Path(source).exists() and str(source) in shipped_models():
        return model_file(str(source))
    return Path(source)


def load_generator(source: str | Path, *, device: str | torch.device = "cpu", ema: bool = True) -> Generator:
    """A generator in eval mode from a shipped model's name, a run folder, a generator
    .safetensors or a checkpoint .pt (`ema=False`: a checkpoint's raw generator)."""
    from dcgan.checkpoint import load_generator as load

    generator, _ = load(generator_path(source), device, use_ema=ema)
    return generator


def generate(generator: Generator | str | Path, seeds: Iterable[int] | int = 16, *, label: str | int | None = None,
             truncation: float | None = None, pil: bool = False,
             batch_size: int = 64) -> torch.Tensor | list[Image.Image]:
    """Images of `seeds` (an int n: seeds 0..n-1) as a (N, C, H, W) uint8 tensor, or PIL images.

    Image i depends only on seeds[i] (and `label`, a class name or index of a conditional
    generator; without one, each image's class is drawn from its seed), as in `dcgan generate`.
    `truncation` T redraws latent components beyond +-T (less variety; on the shipped DCGANs, lower quality).
    """
    from dcgan.sampling import check_truncation, generate_images, image_to_pil, resolve_classes

    if not isinstance(generator, torch.nn.Module):
        generator = load_generator(generator)
    seeds = range(seeds) if isinstance(seeds, int) else list(seeds)
    if any(not 0 <= int(s) < 2**63 for s in seeds):
        raise UserError("seeds must be integers in [0, 2**63)")
    classes = resolve_classes(generator, [label])[0] if label is not None else None
    check_truncation(truncation)
    images = generate_images(generator, seeds, batch_size=batch_size, classes=classes, truncation=truncation)
    return [image_to_pil(image) for image in images] if pil else images


def walk(generator: Generator | str | Path, seeds: Iterable[int], *, frames: int = 60, label: str | int | None = None,
         truncation: float | None = None, out: str | Path | None = None, fps: float = 24.0,
         force: bool = False) -> torch.Tensor:
    """The looping latent walk of `dcgan generate --walk` through `seeds`: (frames, C, H, W) uint8,
    also written to `out` (.mp4, .gif or .webp) when given; an `out` that is a file of another kind
    or a link is refused unless `force` (dcgan.outputs). `label`: a conditional generator's class
    for the whole walk (None: from each seed's class to the next's)."""
    from dcgan.sampling import check_truncation, resolve_classes
    from dcgan.video import check_output, save_walk, walk_frames

    if out is not None:
        from dcgan.outputs import VIDEO, check_file_output

        check_output(out, fps)
        out = check_file_output(out, VIDEO, force=force, create_parent=True)
    if not isinstance(generator, torch.nn.Module):
        generator = load_generator(generator)
    check_truncation(truncation)
    classes = resolve_classes(generator, [label])[0] if label is not None else None
    result = walk_frames(generator, [int(s) for s in seeds], frames, label=classes, truncation=truncation)
    if out is not None:
        save_walk(result, out, fps=fps)
    return result


def evaluate(subject: Generator | str | Path | torch.Tensor, reference: str | Path | RealSource, *,
             metrics: Iterable[str] = ("fid",), features: str | None = None, num_gen: int = 10_000, seed: int = 0,
             classes: Iterable[str] = (), data_root: str = "data", download: bool = True,
             inception_weights: str | None = None, fast_extractor: str | None = None,
             per_class: bool = True, device: str | torch.device = "cpu", progress: bool = False,
             options: MetricOptions = MetricOptions()) -> Evaluation:
    """Score a generator (or a shipped name / run folder / file naming one), or a uint8 (N, C, H, W)
    tensor of images, against `reference`: a dataset split ("cifar10-test"), an image folder or a
    .npz statistics file, as `dcgan evaluate --ref` takes it (a missing torchvision dataset and
    Inception's weights are downloaded unless `download=False`, as the CLI's `--offline`).
    `metrics`: fid, kid, is, pr, dc on the standard Inception network, or fid-fast, kid-fast, ...
    on the fast extractor, as `dcgan evaluate --metrics` (`features="fast"` with plain names is the
    older spelling of the -fast names). Returns the scores and their protocol record (`.scores`, `.record`)."""
    from dcgan.metrics import older_spelling, parse_metrics
    from dcgan.metrics.evaluate import evaluate as run_evaluation

    given = list(metrics)
    note = older_spelling(given, features, "metrics")
    features, metrics = parse_metrics(given, "metrics", features)
    if isinstance(subject, (str, Path)):
        subject = load_generator(subject, device=device)
    if not isinstance(reference, RealSource):
        reference = parse_reference(str(reference), data_root=data_root, classes=list(classes), download=download,
                                    what="reference")
    result = run_evaluation(subject, reference, metrics=metrics, features=features, num_gen=num_gen, seed=seed,
                            inception_weights=inception_weights, allow_download=download,
                            fast_extractor=fast_extractor, per_class=per_class, device=device, options=options,
                            progress=progress)
    if note:
        print(note, file=sys.stderr)
    return result


def nearest(subject: Generator | str | Path | torch.Tensor, training: str | Path, test: str | Path | None = None, *,
            features: str = "fast", num_gen: int = 1000, k: int = 5, seed: int = 0, classes: Iterable[str] = (),
            data_root: str = "data", download: bool = True, inception_weights: str | None = None,
            fast_extractor: str | None = None, mirrored: bool = True, device: str | torch.device = "cpu",
            progress: bool = False):
    """The memorization check of `dcgan evaluate --nearest`: a generator's images (or a uint8
    (N, C, H, W) tensor) against `training` (a dataset split or image folder), with `test` (default:
    the test split beside it) setting the bar. Returns a `dcgan.metrics.nearest.Memorization`:
    `.scores()` (the share of images nearer the training set than 99% of test images, in features
    and in pixels: about 0.01 when nothing is copied), `.grid_images()`, `.record`. `mirrored`:
    search each training image's mirror image too (training flips images)."""
    from dcgan.metrics.evaluate import test_set_beside
    from dcgan.metrics.nearest import memorization_check

    if features not in ("inception", "fast"):
        raise UserError(f"features must be inception or fast, not {features!r}")
    if isinstance(subject, (str, Path)):
        subject = load_generator(subject, device=device)
    sources = []
    for what, spec in (("training", training), ("test", test)):
        if spec is not None:
            source = parse_reference(str(spec), data_root=data_root, classes=list(classes), download=download,
                                     what=what)
        elif (source := test_set_beside(sources[0])) is None:
            raise UserError(f"no test split beside {sources[0].name}: pass test= (held-out images)")
        if not isinstance(source, RealSource):
            raise UserError(f"{spec} is a statistics file; the check needs images (a dataset split or a folder)")
        sources.append(source)
    return memorization_check(subject, sources[0], sources[1], features=features, num_gen=num_gen, seed=seed, k=k,
                              inception_weights=inception_weights, allow_download=download,
                              fast_extractor=fast_extractor, mirrored=mirrored, device=device, progress=progress)


def train(config: TrainConfig | None = None, **settings) -> Path:
    """Train as `dcgan train` does and return the run folder. `config` (default: the default
    preset) with `settings` (TrainConfig field names: `minutes=15`, `preset="classic"`) on top."""
    from dcgan.training.loop import train as run_training

    base = config.to_dict() if config is not None else {}
    preset = settings.pop("preset", None) or base.pop("preset", None)
    base.pop("preset", None)
    if any(settings.get(length) for length in LENGTHS):  # a length given here replaces the config's
        base.update({length: 0 for length in LENGTHS})
    return run_training(resolve_config(preset, base, settings))
