"""`dcgan serve`: a web gallery, a live view of training runs and an HTTP API (waitress WSGI).

    dcgan serve                                           # every shipped generator (see `dcgan models`)
    dcgan serve --checkpoint runs/00007-cifar10-cpu-v1 --model cifar10-cars --runs runs/
    dcgan serve --checkpoint runs/00007-cifar10-cpu-v1 --nearest       # each sample's nearest training images
    dcgan serve --model cifar10-cars --nearest-ref cifar10/train --nearest-classes automobile
"""

from __future__ import annotations

import argparse

from dcgan.commands import add_generator_source, whole
from dcgan.errors import UserError

RESERVED_THREADS = 2  # server threads no generating request may take: /healthz and the pages always answer


def register(subparsers) -> None:
    parser = subparsers.add_parser("serve", help="serve a web gallery and HTTP API", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_generator_source(parser, repeatable=True)
    parser.add_argument("--runs", metavar="DIR", help="show the training runs in this folder (e.g. runs/)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    parser.add_argument("--allowed-hosts", metavar="NAMES", default="",
                        help="comma-separated host names requests may be addressed to besides --host and the "
                             "loopback names (a proxy's public name; * for any)")
    parser.add_argument("--max-images", type=whole(1, 10_000), default=64, help="most images one request may ask for")
    parser.add_argument("--threads", type=whole(1, 1024), default=10,
                        help="server worker threads (default 10): 2 are kept for /healthz and the pages, the "
                             "others take requests that generate; past them a request gets 503 at once")
    parser.add_argument("--torch-threads", type=whole(0, 1024), default=0,
                        help="torch CPU threads for generation (default: all cores, at most 4)")
    parser.add_argument("--nearest", action="store_true",
                        help="load each run's training images: the gallery links each sample to its nearest ones "
                             "(/api/nearest)")
    parser.add_argument("--nearest-ref", metavar="REF",
                        help="the training images of models without a run folder (a shipped model): a dataset "
                             "split or an image folder; implies --nearest")
    parser.add_argument("--nearest-classes", default="", help="comma-separated classes of --nearest-ref")
    parser.add_argument("--data-root", default="data", help="where torchvision datasets live (for --nearest-ref)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (default cpu)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    import torch

    from dcgan.devices import pick_device
    from dcgan.pretrained import trained_models
    from dcgan.server import allowed_host_names, create_app, serve

    shipped = args.model
    if not args.checkpoint and not args.model:
        shipped = [model.name for model in trained_models()]  # no arguments: every shipped generator
        if not shipped:
            raise UserError("this package ships no trained generator; pass --checkpoint (a run folder or "
                            "generator.safetensors)")
    if not 1 <= args.port <= 65535:
        raise UserError(f"--port must be between 1 and 65535, not {args.port}")
    if not 1 <= args.max_images <= 1024:
        raise UserError(f"--max-images must be between 1 and 1024, not {args.max_images}")
    if args.threads < RESERVED_THREADS + 1 or args.torch_threads < 0:
        raise UserError(f"--threads must be at least {RESERVED_THREADS + 1} ({RESERVED_THREADS} are kept for /healthz "
                        f"and the pages) and --torch-threads at least 0")
    if args.runs and not Path(args.runs).is_dir():
        raise UserError(f"--runs folder {args.runs} does not exist")
    nearest_reference = None
    if args.nearest_classes and not args.nearest_ref:
        raise UserError("--nearest-classes goes with --nearest-ref")
    if args.nearest_ref:
        from dcgan.metrics.reference import RealSource, parse_reference

        classes = [c.strip() for c in args.nearest_classes.split(",") if c.strip()]
        nearest_reference = parse_reference(args.nearest_ref, data_root=args.data_root, classes=classes,
                                            what="--nearest-ref")
        if not isinstance(nearest_reference, RealSource):
            raise UserError("--nearest-ref must be a dataset split or an image folder, not a statistics file")
        if len(shipped) + sum(1 for path in args.checkpoint if not (Path(path) / "config.json").is_file()
                              and not (Path(path).parent / "config.json").is_file()) > 1:
            raise UserError("--nearest-ref is one model's training data: serve that model alone (--model NAME), "
                            "or run folders, whose data --nearest finds itself")
    torch.set_num_threads(args.torch_threads or min(4, os.cpu_count() or 1))
    app = create_app(args.checkpoint, args.runs, shipped=shipped, max_images=args.max_images,
                     device=str(pick_device(args.device)), max_waiting=args.threads - RESERVED_THREADS - 1,
                     allowed_hosts=allowed_host_names(args.host, args.allowed_hosts.split(",")),
                     nearest=args.nearest or nearest_reference is not None, nearest_reference=nearest_reference)
    served = app.extensions["dcgan"]
    if (args.nearest or nearest_reference is not None) and len(served.without_nearest) == len(served.models):
        reasons = "; ".join(f"{name}: {why}" for name, why in served.without_nearest.items())
        raise UserError(f"--nearest found no training images for any model ({reasons[:300]})")
    print(f"serving {', '.join(app.extensions['dcgan'].models)} on http://{args.host}:{args.port}/", flush=True)
    serve(app, args.host, args.port, threads=args.threads)
    return 0
