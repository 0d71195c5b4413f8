"""`dcgan summary`: print the architectures of a preset (or of a config) with parameter counts."""

from __future__ import annotations

import argparse

from dcgan.choices import CONDITIONINGS
from dcgan.config import DEFAULT_PRESET, PRESET_CHOICES
from dcgan.errors import UserError


def register(subparsers) -> None:
    parser = subparsers.add_parser("summary", help="print a preset's architectures", description=__doc__)
    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=PRESET_CHOICES)
    parser.add_argument("--resolution", type=int, default=32, choices=(32, 64))
    parser.add_argument("--channels", type=int, default=3, choices=(1, 3))
    parser.add_argument("--config", metavar="FILE", help="YAML or JSON file of settings")
    parser.add_argument("--conditional", choices=CONDITIONINGS,
                        help="the class-conditional networks (label embedding in G; projection or AC-GAN D)")
    parser.add_argument("--num-classes", type=int, default=10,
                        help="classes of a conditional model (default 10)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dcgan.config import read_config_file, resolve_config
    from dcgan.models import build_discriminator, build_generator, discriminator_kwargs, generator_kwargs
    from dcgan.training.run_dir import model_summary

    file_values = read_config_file(args.config) if args.config else {}
    if not 2 <= args.num_classes <= 10_000:
        raise UserError(f"--num-classes must be between 2 and 10,000, not {args.num_classes}")
    overrides = {"conditional": args.conditional} if args.conditional else {}
    config = resolve_config(args.preset, file_values, overrides)
    class_names = [f"class {i}" for i in range(args.num_classes)] if config.conditional else None
    G = build_generator(**generator_kwargs(config, args.resolution, args.channels, class_names))
    D = build_discriminator(**discriminator_kwargs(config, args.resolution, args.channels, args.num_classes))
    what = f", {config.conditional} over {args.num_classes} classes" if config.conditional else ""
    print(f"preset {config.preset}, {args.resolution}x{args.resolution}x{args.channels}{what}")
    print(model_summary(G, D, config.z_dim, args.resolution, args.channels))
    return 0
