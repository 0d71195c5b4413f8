"""Generation speed: PyTorch eager (what `dcgan generate` and the server run) against the exported
ONNX model in onnxruntime and the TorchScript file, images/s at batch 1 and 64, in one process,
alternating rounds.

    python benchmarks/generation_speed.py --model cifar10-cars --rounds 5 --threads 2

Each round times `--images` images per engine and batch size (latents made beforehand, uint8
images out, as exported); the table gives the median of the rounds and each engine's ratio to
eager PyTorch.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from dcgan.checkpoint import load_generator
from dcgan.export import ImageGenerator, example_inputs, export_onnx, export_torchscript
from dcgan.pretrained import model_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cifar10-cars")
    parser.add_argument("--checkpoint", help="a run folder or generator file instead of --model")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=512, help="images per engine, batch size and round")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator, _ = load_generator(args.checkpoint or model_file(args.model))
    eager = ImageGenerator(generator)

    import onnxruntime

    folder = Path(tempfile.mkdtemp())
    export_onnx(generator, folder / "g.onnx")
    export_torchscript(generator, folder / "g.pt")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = onnxruntime.InferenceSession(str(folder / "g.onnx"), options, providers=["CPUExecutionProvider"])
    scripted = torch.jit.load(str(folder / "g.pt"))
    names = [i.name for i in session.get_inputs()]

    engines = {
        "PyTorch eager": lambda inputs: eager(*inputs),
        "TorchScript": lambda inputs: scripted(*inputs),
        "onnxruntime": lambda inputs: session.run(["images"], dict(zip(names, (t.numpy() for t in inputs)))),
    }
    results = {(engine, batch): [] for engine in engines for batch in (1, 64)}
    for _ in range(args.rounds):
        for batch in (1, 64):
            inputs = example_inputs(generator, batch)
            for engine, run in engines.items():
                with torch.inference_mode():
                    run(inputs)  # warm-up
                    start = time.perf_counter()
                    for _ in range(max(1, args.images // batch)):
                        run(inputs)
                    seconds = time.perf_counter() - start
                results[(engine, batch)].append(max(1, args.images // batch) * batch / seconds)
    print("| engine | batch 1 (images/s) | batch 64 (images/s) |\n|---|---|---|")
    for engine in engines:
        cells = []
        for batch in (1, 64):
            median = statistics.median(results[(engine, batch)])
            base = statistics.median(results[("PyTorch eager", batch)])
            cells.append(f"{median:,.0f} (x{median / base:.2f})")
        print(f"| {engine} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
