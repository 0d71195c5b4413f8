"""`dcgan features`: the fast feature extractor behind FID-fast (`--features fast`, `--metric fid-fast`).

    dcgan features train --dataset cifar10              # once per dataset: minutes on a CPU; cached
    dcgan features train --dataset folder --data-root cifar10/train
    dcgan features show --dataset cifar10               # its test accuracy and where it lives

The extractor is a compact CNN classifier trained on the dataset's labelled training split and
tested on its test split (or 10% held out). Its scores rank checkpoints; they are not Inception FID.
"""

from __future__ import annotations

import argparse
import json

from dcgan.choices import DATASETS
from dcgan.commands import SEED_LIMIT, add_force, whole
from dcgan.errors import UserError


def register(subparsers) -> None:
    parser = subparsers.add_parser("features", help="train or show the fast feature extractor", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("train", "show"))
    parser.add_argument("--dataset", default="cifar10", help=f"{', '.join(DATASETS)} (default cifar10)")
    parser.add_argument("--data-root", default="data", help="where the dataset lives (default data)")
    parser.add_argument("--download", action=argparse.BooleanOptionalAction, default=True,
                        help="download a missing torchvision dataset (default; --no-download forbids it)")
    parser.add_argument("--resolution", type=int, default=0, choices=(0, 32, 64), help="0 follows the data")
    parser.add_argument("--channels", type=int, default=0, choices=(0, 1, 3), help="0 follows the data")
    parser.add_argument("--epochs", type=float, default=4, help="training epochs (default 4)")
    parser.add_argument("--seed", type=whole(0, SEED_LIMIT), default=0)
    parser.add_argument("--retrain", action="store_true", help="train again even if one is cached")
    parser.add_argument("--out", metavar="FILE", help="save here instead of the cache")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default cpu)")
    add_force(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dcgan.devices import pick_device
    from dcgan.metrics.fast import FastExtractor, default_path, ensure_fast_extractor

    if args.dataset not in DATASETS:
        raise UserError(f"--dataset must be one of {', '.join(DATASETS)}, not {args.dataset!r}")
    if not 0 < args.epochs <= 1000:
        raise UserError(f"--epochs must be in (0, 1000], not {args.epochs}")
    if args.action == "show":
        path = args.out or default_path(args.dataset, args.data_root, args.resolution, args.channels, args.download)
        extractor = FastExtractor(path)
        print(json.dumps(extractor.describe() | {"report": extractor.report}, indent=2))
        return 0
    if args.out:
        from dcgan.metrics.fast import FORMAT
        from dcgan.outputs import check_file_output, extractor_kind

        check_file_output(args.out, extractor_kind(FORMAT), inputs=[args.data_root], force=args.force)
    if not 0 <= args.seed < 2**63:
        raise UserError(f"--seed must be a whole number from 0 to 2**63 - 1, not {args.seed}")
    path = ensure_fast_extractor(args.dataset, args.data_root, resolution=args.resolution, channels=args.channels,
                                 download=args.download, epochs=args.epochs, seed=args.seed,
                                 device=pick_device(args.device), retrain=args.retrain, out=args.out)
    extractor = FastExtractor(path)
    print(f"{extractor.summary()}\n{path}")
    return 0
