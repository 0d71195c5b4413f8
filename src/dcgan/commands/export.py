"""`dcgan export`: a generator as ONNX, a PyTorch ExportedProgram, TorchScript or a static web page.

    dcgan export --model cifar10-cars --format onnx --out cars.onnx
    dcgan export --model cifar10-cars --format pt2 --out cars.pt2                 # torch.export.load(...).module()
    dcgan export --model cifar10-cars --format web --out site/                    # a page that generates in the browser
    dcgan export --checkpoint runs/00004-cifar10-cpu-v1 --format onnx --out generator.onnx --batch 16

The exported network takes latents `z` (B, z_dim) float32, and for a conditional model class
labels `labels` (B,) int64, and returns `images` (B, C, H, W) uint8: the images `dcgan generate`
makes from the same latents (image i of seed s uses torch.randn(z_dim) from a generator seeded
with s). The batch is dynamic unless `--batch N` fixes it (ONNX; the others take any batch). The file's metadata (ONNX
metadata_props; the extra file dcgan.json of .pt2 and TorchScript) holds the generator's arguments, with the
class names of a conditional model: its `labels` input takes their indices. ONNX needs `pip install "dcgan[export]"`
(onnx; onnxruntime to check the file): after writing it, the command runs the file
in onnxruntime where it is installed and reports the largest difference from PyTorch's images.
`--format web` writes a folder any static host serves (`python -m http.server -d site`): index.html,
the generator as ONNX and onnxruntime-web's WebAssembly runtime (a pinned npm package, downloaded
once and cached, or --runtime FILE); the page makes seed s's image as `dcgan generate` does.

Use ONNX outside PyTorch, pt2 (torch.export) inside it; TorchScript (torch.jit, deprecated in
current PyTorch) only where code already loads it. Truncation is in how z is drawn, not in the file
(see dcgan.export).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dcgan.choices import WEB_PRECISIONS
from dcgan.commands import add_force, add_generator_source, generator_source, source_files, whole
from dcgan.errors import UserError

FORMATS = ("onnx", "pt2", "torchscript", "web")


def register(subparsers) -> None:
    parser = subparsers.add_parser("export", help="export a generator as ONNX, .pt2, TorchScript or a web page",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_generator_source(parser)
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--out", required=True, metavar="PATH",
                        help="the file to write (.onnx, .pt2 or .pt; web: a folder)")
    parser.add_argument("--batch", type=whole(0, 65536), default=0, help="a fixed batch size; 0 (default): dynamic")
    parser.add_argument("--no-ema", action="store_true", help="the raw generator of a checkpoint .pt")
    parser.add_argument("--precision", default="auto", choices=WEB_PRECISIONS,
                        help="web: the ONNX weights; auto takes float16 where its images stay within one uint8 "
                             "level of PyTorch's (default auto)")
    parser.add_argument("--runtime", metavar="TGZ",
                        help="web: the onnxruntime-web npm tarball to take the runtime from (default: the cache, "
                             "else a download from the npm registry)")
    parser.add_argument("--offline", action="store_true", help="web: download nothing")
    add_force(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from dcgan.checkpoint import load_generator
    from dcgan.export import OPSET, check_onnx, export_onnx, export_pt2, export_torchscript
    from dcgan.outputs import ONNX, TORCH_EXPORT, check_file_output

    if not 0 <= args.batch <= 65536:
        raise UserError(f"--batch must be between 0 (dynamic) and 65,536, not {args.batch}")
    if args.format != "web" and (args.runtime or args.offline or args.precision != "auto"):
        raise UserError("--precision, --runtime and --offline go with --format web")
    if args.batch and args.format != "onnx":
        kind = {"pt2": "a .pt2 file", "torchscript": "a TorchScript file", "web": "the web page"}[args.format]
        raise UserError(f"--batch fixes an ONNX file's batch; {kind} takes any batch (leave --batch out)")
    out = Path(args.out)
    if args.format == "web":
        return run_web(args, out)
    suffixes = {"onnx": (".onnx",), "pt2": (".pt2",), "torchscript": (".pt", ".pth")}[args.format]
    if out.suffix.lower() not in suffixes:
        raise UserError(f"--format {args.format} writes a {' or '.join(suffixes)} file, not {out.name!r}")
    source = generator_source(args)
    out = check_file_output(out, ONNX if args.format == "onnx" else TORCH_EXPORT, inputs=source_files(source),
                            force=args.force)
    generator, kwargs = load_generator(source, "cpu", use_ema=not args.no_ema)
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


def run_web(args: argparse.Namespace, out: Path) -> int:
    from dcgan.checkpoint import load_generator, model_name
    from dcgan.outputs import check_folder_output
    from dcgan.web import PAGE_FILES, export_web, folder_size

    source = generator_source(args)
    check_folder_output(out, force=args.force, option="--out")
    generator, kwargs = load_generator(source, "cpu", use_ema=not args.no_ema)
    name = args.model or model_name(source)
    metadata = export_web(generator, kwargs, out, name=name, precision=args.precision, runtime=args.runtime,
                          allow_download=not args.offline, force=args.force)
    difference = metadata["largest_difference_from_pytorch"]
    check = (f"onnxruntime's images differ from PyTorch's by at most {difference} uint8 level(s) on seeds "
             f"{metadata['checked_seeds']}" if difference is not None else "not checked: onnxruntime is not installed")
    print(f"wrote {out}/ ({folder_size(out) / 1e6:.1f} MB: {', '.join(PAGE_FILES)}, generator.onnx "
          f"{metadata['onnx_bytes'] / 1e6:.1f} MB in {metadata['precision']}, onnxruntime-web "
          f"{metadata['onnxruntime_web']}); {check}")
    print(f"serve it from any static host, or try it here: python -m http.server -d {out} 8000")
    return 0
