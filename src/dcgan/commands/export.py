"""`dcgan export`: a generator as ONNX, a PyTorch ExportedProgram or TorchScript, to run without this toolkit.

    dcgan export --model cifar10-cars --format onnx --out cars.onnx
    dcgan export --model cifar10-cars --format pt2 --out cars.pt2                 # torch.export.load(...).module()
    dcgan export --checkpoint runs/00004-cifar10-cpu-v1 --format onnx --out generator.onnx --batch 16

The exported network takes latents `z` (B, z_dim) float32, and for a conditional model class
labels `labels` (B,) int64, and returns `images` (B, C, H, W) uint8: the images `dcgan generate`
makes from the same latents (image i of seed s uses torch.randn(z_dim) from a generator seeded
with s). The batch is dynamic unless `--batch N` fixes it (ONNX; the others take any batch). The file's metadata (ONNX
metadata_props; the extra file dcgan.json of .pt2 and TorchScript) holds the generator's arguments, with the
class names of a conditional model: its `labels` input takes their indices. ONNX needs `pip install "dcgan[export]"`
(onnx; onnxruntime to check the file): after writing it, the command runs the file
in onnxruntime where it is installed and reports the largest difference from PyTorch's images.
Use ONNX outside PyTorch, pt2 (torch.export) inside it; TorchScript (torch.jit, deprecated in
current PyTorch) only where code already loads it. Truncation is in how z is drawn, not in the file
(see dcgan.export).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dcgan.commands import add_generator_source, generator_source
from dcgan.errors import UserError

FORMATS = ("onnx", "pt2", "torchscript")


def register(subparsers) -> None:
    parser = subparsers.add_parser("export", help="export a generator as ONNX, .pt2 or TorchScript",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_generator_source(parser)
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--out", required=True, metavar="FILE", help="the file to write (.onnx, .pt2 or .pt)")
    parser.add_argument("--batch", type=int, default=0, help="a fixed batch size; 0 (default): dynamic")
    parser.add_argument("--no-ema", action="store_true", help="the raw generator of a checkpoint .pt")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from dcgan.checkpoint import load_generator
    from dcgan.export import OPSET, check_onnx, export_onnx, export_pt2, export_torchscript

    if not 0 <= args.batch <= 65536:
        raise UserError(f"--batch must be between 0 (dynamic) and 65,536, not {args.batch}")
    if args.batch and args.format != "onnx":
        kind = {"pt2": ".pt2", "torchscript": "TorchScript"}[args.format]
        raise UserError(f"--batch fixes an ONNX file's batch; a {kind} file takes any batch (leave --batch out)")
    out = Path(args.out)
    if out.parent and not out.parent.is_dir():
        raise UserError(f"folder {out.parent} does not exist")
    generator, kwargs = load_generator(generator_source(args), "cpu", use_ema=not args.no_ema)
    torch.set_num_threads(min(4, torch.get_num_threads()))
    if args.format == "onnx":
        export_onnx(generator, out, batch=args.batch, kwargs=kwargs)
        check = check_onnx(generator, out, batch=args.batch or 8)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, ONNX opset {OPSET}, batch "
              f"{args.batch or 'dynamic'}); {check}")
    elif args.format == "pt2":
        export_pt2(generator, out, kwargs=kwargs)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, torch.export ExportedProgram, batch 1-65,536); "
              f"load it with torch.export.load(path).module()")
    else:
        export_torchscript(generator, out, kwargs=kwargs)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, TorchScript, any batch); load it with torch.jit.load")
    return 0
