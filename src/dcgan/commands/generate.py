"""`dcgan generate`: images from a trained generator (EMA weights), no dataset needed.

    dcgan generate --checkpoint runs/00002-cifar10-cpu-v1 --num 64 --out grid.png
    dcgan generate --model cifar10-cars --num 16                                    # a shipped generator
    dcgan generate --checkpoint runs/00004-cifar10-cpu-v1 --class horse --num 16     # a conditional model
    dcgan generate --checkpoint runs/00004-cifar10-cpu-v1 --class all --num 8        # a row per class
    dcgan generate --model cifar10-cars --num 16 --truncation 2.0                   # latents within +-2
    dcgan generate --model cifar10-cars --walk 0,7,42 --frames 60 --out walk.mp4     # a looping latent walk

Image i comes from seed + i alone (and its class): the same seed and class give the same image in
any grid. A conditional model asked for no class draws each image's class from its seed.

`--walk` writes a looping video through the seeds' latents (.mp4, .gif or .webp; see dcgan.video):
within --class, or, for a conditional model given none, from each seed's class to the next's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dcgan.commands import SEED_LIMIT, add_force, add_generator_source, generator_source, source_files, whole
from dcgan.errors import UserError

MAX_IMAGES = 100_000


def register(subparsers) -> None:
    parser = subparsers.add_parser("generate", help="generate images from a checkpoint", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_generator_source(parser)
    parser.add_argument("--num", type=int, help="number of images (default 64)")
    parser.add_argument("--seed", type=whole(0, SEED_LIMIT), help="first seed; image i uses seed + i (default 0)")
    parser.add_argument("--out", metavar="PNG", help="write one grid image here (default grid.png; with --walk: the "
                                                     "video, .mp4, .gif or .webp, default walk.mp4)")
    parser.add_argument("--outdir", metavar="DIR", help="write one PNG per image here instead of a grid")
    parser.add_argument("--nrow", type=whole(0, 100_000), default=0, help="images per grid row (default: square)")
    parser.add_argument("--class", dest="classes", action="append", metavar="CLASS",
                        help="conditional models: a class name or index (repeatable; 'all' for every class): "
                             "--num images of each, one grid row per class")
    parser.add_argument("--truncation", type=float, metavar="T",
                        help="redraw latent components beyond +-T (0.05-100): less variety; on the shipped models it "
                             "lowers quality (docs/benchmarks.md) (default: none)")
    parser.add_argument("--walk", metavar="SEEDS", help="a looping latent walk through these seeds (e.g. 0,7,42) "
                                                        "written as a video to --out")
    parser.add_argument("--frames", type=int, help="with --walk: frames in the loop (default 60)")
    parser.add_argument("--fps", type=float, help="with --walk: frames per second (default 24)")
    parser.add_argument("--no-ema", action="store_true", help="use the raw generator of a checkpoint .pt")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default cpu)")
    add_force(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from dcgan.api import generate
    from dcgan.checkpoint import load_generator
    from dcgan.devices import pick_device
    from dcgan.outputs import IMAGE, check_file_output, check_folder_output
    from dcgan.sampling import check_truncation, resolve_classes, save_grid, save_images

    if args.walk is not None:
        return run_walk(args)
    if args.frames is not None or args.fps is not None:
        raise UserError("--frames and --fps go with --walk")
    args.num = 64 if args.num is None else args.num
    args.seed = 0 if args.seed is None else args.seed
    if not 1 <= args.num <= MAX_IMAGES:
        raise UserError(f"--num must be between 1 and {MAX_IMAGES:,}, not {args.num}")
    if args.seed < 0 or args.seed + args.num > 2**63:
        raise UserError(f"--seed must be a non-negative integer below 2**63 - num, not {args.seed}")
    if args.out and args.outdir:
        raise UserError("pass --out (one grid) or --outdir (one file per image), not both")
    if args.nrow < 0:
        raise UserError(f"--nrow must be positive, not {args.nrow}")
    out = Path(args.out or "grid.png")
    if not args.outdir and out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise UserError(f"--out must end in .png, .jpg or .webp, not {out.name!r}")
    check_truncation(args.truncation)
    source = generator_source(args)
    if args.outdir:
        check_folder_output(args.outdir, force=args.force)  # FolderOutput replaces only its own files
    else:
        out = check_file_output(out, IMAGE, inputs=source_files(source), force=args.force, create_parent=True)
    generator, _ = load_generator(source, pick_device(args.device), use_ema=not args.no_ema)
    seeds = range(args.seed, args.seed + args.num)
    classes = resolve_classes(generator, [c for text in args.classes for c in text.split(",")]) \
        if args.classes else [None]
    if len(classes) * args.num > MAX_IMAGES:
        raise UserError(f"{len(classes)} classes x --num {args.num} is more than {MAX_IMAGES:,} images")
    images = torch.cat([generate(generator, seeds, label=c, truncation=args.truncation) for c in classes])
    all_seeds = list(seeds) * len(classes)
    if args.outdir:
        names = [generator.class_names[c] for c in classes for _ in seeds] if classes != [None] else None
        paths = save_images(images, args.outdir, all_seeds, names, force=args.force)
        print(f"wrote {len(paths)} images to {args.outdir}")
    else:
        nrow = args.nrow or (args.num if len(classes) > 1 else None)  # a row per class
        save_grid(images, out, nrow=nrow)
        what = f" of {', '.join(generator.class_names[c] for c in classes)}" if classes != [None] else ""
        print(f"wrote a grid of {len(images)} images{what} (seeds {args.seed}-{args.seed + args.num - 1}) to {out}")
    return 0


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--walk takes comma-separated seeds such as 0,7,42, not {text[:40]!r}") from None
    if not all(0 <= seed <= SEED_LIMIT for seed in seeds):
        raise UserError(f"--walk seeds must be whole numbers from 0 to 2**63 - 1, not {text[:40]!r}")
    return seeds


def run_walk(args: argparse.Namespace) -> int:
    """`--walk`: the looping video through the seeds."""
    from dcgan.checkpoint import load_generator
    from dcgan.devices import pick_device
    from dcgan.outputs import VIDEO, check_file_output
    from dcgan.sampling import check_truncation, resolve_classes
    from dcgan.video import check_output, save_walk, walk_frames

    if args.num is not None or args.seed is not None or args.outdir or args.nrow:
        raise UserError("--walk takes its seeds itself: leave out --num, --seed, --outdir and --nrow")
    seeds = parse_seeds(args.walk)
    fps = 24.0 if args.fps is None else args.fps
    out = Path(args.out or "walk.mp4")
    check_output(out, fps)
    check_truncation(args.truncation)
    source = generator_source(args)
    out = check_file_output(out, VIDEO, inputs=source_files(source), force=args.force, create_parent=True)
    generator, _ = load_generator(source, pick_device(args.device), use_ema=not args.no_ema)
    classes = resolve_classes(generator, [c for text in args.classes for c in text.split(",")]) \
        if args.classes else [None]
    if len(classes) > 1:
        raise UserError("--walk stays in one --class (or, given none, goes from each seed's class to the next's)")
    frames = walk_frames(generator, seeds, 60 if args.frames is None else args.frames, label=classes[0],
                         truncation=args.truncation)
    save_walk(frames, out, fps=fps)
    print(f"wrote {out}: {len(frames)} frames at {fps:g} fps ({len(frames) / fps:.1f} s, looping) through seeds "
          f"{', '.join(map(str, seeds))}")
    return 0
