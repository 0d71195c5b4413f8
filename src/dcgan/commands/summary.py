"""`dcgan summary`: print the architectures of a preset (or of a config) with parameter counts."""

from __future__ import annotations

import argparse

from dcgan.config import PRESETS


def register(subparsers) -> None:
    parser = subparsers.add_parser("summary", help="print a preset's architectures", description=__doc__)
    parser.add_argument("--preset", default="modern", choices=sorted(PRESETS))
    parser.add_argument("--resolution", type=int, default=32, choices=(32, 64))
    parser.add_argument("--channels", type=int, default=3, choices=(1, 3))
    parser.add_argument("--config", metavar="FILE", help="YAML or JSON file of settings")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dcgan.config import read_config_file, resolve_config
    from dcgan.models import build_discriminator, build_generator, discriminator_kwargs, generator_kwargs
    from dcgan.training.run_dir import model_summary

    file_values = read_config_file(args.config) if args.config else {}
    config = resolve_config(args.preset, file_values)
    G = build_generator(**generator_kwargs(config, args.resolution, args.channels))
    D = build_discriminator(**discriminator_kwargs(config, args.resolution, args.channels))
    print(f"preset {config.preset}, {args.resolution}x{args.resolution}x{args.channels}")
    print(model_summary(G, D, config.z_dim, args.resolution, args.channels))
    return 0
