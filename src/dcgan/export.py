"""Generators as ONNX, ExportedProgram (.pt2) or TorchScript files that make the same uint8 images
as `dcgan generate`.

`ImageGenerator` wraps a generator so that its output is what this toolkit's sampling gives:
latents (and labels) in, uint8 images out, the rounding included, so a user of the exported file
needs nothing of this package. The exporters are torch's own (`torch.onnx.export`,
`torch.export`, `torch.jit`); this module only fixes their inputs, names and batch dimension, and
checks an ONNX file against PyTorch in onnxruntime.

Which to use: ONNX to run outside Python or PyTorch (onnxruntime, a browser, C++, C#); .pt2
(`torch.export`, the exporter PyTorch develops, dynamic batch) to load in PyTorch without this
package (`torch.export.load(path).module()`); TorchScript only for code that already loads it:
`torch.jit` prints a deprecation warning in current PyTorch.

Truncation is not inside the file: it is how the latents `z` are drawn from seeds (components
beyond +-T redrawn from the seed's stream; `dcgan.sampling.latents_from_seeds`), so truncated
latents go in as `z`, and the web export draws them in the page.

ONNX goes through torch's TorchScript-based exporter (`dynamo=False`): a feed-forward
convolutional generator traces exactly, the batch is made dynamic by `dynamic_axes`, and it needs
only the `onnx` package. torch 2.14 marks that exporter deprecated, so its warning is silenced
here; the tests run every exported file in onnxruntime against PyTorch.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from dcgan.errors import UserError
from dcgan.files import atomic_write
from dcgan.sampling import is_conditional, labels_from_seeds, latents_from_seeds, to_uint8

OPSET = 17
EXTRA = 'pip install "dcgan[export]"'


class ImageGenerator(nn.Module):
    """z (B, z_dim) float32 [, labels (B,) int64] -> images (B, C, H, W) uint8, as `dcgan generate`."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator.eval()
        self.conditional = is_conditional(generator)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return to_uint8(self.generator(z, labels if self.conditional else None))  # (B, C, H, W) uint8


def example_inputs(generator: nn.Module, batch: int) -> tuple[torch.Tensor, ...]:
    """The latents (and labels) of seeds 0..batch-1: what the export traces and the check compares."""
    seeds = range(batch)
    z = latents_from_seeds(seeds, generator.z_dim)
    return (z, labels_from_seeds(seeds, generator.num_classes)) if is_conditional(generator) else (z,)


def input_names(generator: nn.Module) -> list[str]:
    return ["z", "labels"] if is_conditional(generator) else ["z"]


def model_metadata(kwargs: dict) -> dict[str, str]:
    """What the exported file says about itself: its inputs and the generator's arguments (for a
    conditional model, `class_names` maps each label to its class)."""
    inputs = "z (B, z_dim) float32 from torch.randn" + (", labels (B,) int64 class indices"
                                                         if kwargs.get("num_classes") else "")
    return {"dcgan.inputs": inputs, "dcgan.outputs": "images (B, C, H, W) uint8",
            "dcgan.generator_kwargs": json.dumps(kwargs)}


def export_onnx(generator: nn.Module, path: Path, batch: int = 0, kwargs: dict | None = None) -> None:
    """Write an ONNX file (opset 17); `batch` 0 makes the batch dimension dynamic; `kwargs` (the
    generator's arguments) go into its metadata."""
    try:
        import onnx
    except ImportError:
        raise UserError(f"ONNX export needs the onnx package: {EXTRA}") from None
    wrapper = ImageGenerator(generator)
    names = input_names(generator)
    dynamic = {name: {0: "batch"} for name in names + ["images"]} if batch == 0 else None
    inputs = example_inputs(generator, batch or 2)

    def write(tmp: Path) -> None:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation notice and tracer warnings
            torch.onnx.export(wrapper, inputs, str(tmp), input_names=names, output_names=["images"],
                              dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)
        if kwargs is not None:
            model = onnx.load(str(tmp))
            for key, value in model_metadata(kwargs).items():
                model.metadata_props.add(key=key, value=value)
            onnx.save(model, str(tmp))

    atomic_write(Path(path), write)


def check_onnx(generator: nn.Module, path: Path, batch: int = 8) -> str:
    """Run the ONNX file in onnxruntime on seeds 0..batch-1 and compare with PyTorch's images: a line
    for the user (or why the check was skipped)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return f"not checked: onnxruntime is not installed ({EXTRA})"
    difference = onnx_difference(generator, path, batch)
    if difference > 1:
        Path(path).unlink()
        raise UserError(f"onnxruntime's images differed from PyTorch's by {difference} uint8 levels (more than 1) "
                        f"on seeds 0-{batch - 1}, so {path} was removed; please report it")
    return f"onnxruntime's images differ from PyTorch's by at most {difference} uint8 level(s) on seeds 0-{batch - 1}"


def onnx_difference(generator: nn.Module, model: Path | bytes, batch: int = 8) -> int:
    """The largest |onnxruntime - PyTorch| over the uint8 images of seeds 0..batch-1; `model` is an
    ONNX file or its bytes."""
    import onnxruntime

    session = onnxruntime.InferenceSession(model if isinstance(model, bytes) else str(model),
                                           providers=["CPUExecutionProvider"])
    inputs = example_inputs(generator, batch)
    feeds = {name: tensor.numpy() for name, tensor in zip(input_names(generator), inputs)}
    (onnx_images,) = session.run(["images"], feeds)
    with torch.no_grad():
        torch_images = ImageGenerator(generator)(*inputs)
    return int((torch.from_numpy(onnx_images).int() - torch_images.int()).abs().max())


def export_pt2(generator: nn.Module, path: Path, kwargs: dict | None = None) -> None:
    """Write an ExportedProgram (`torch.export`, dynamic batch 1..65,536); `kwargs` go into its
    extra file `dcgan.json`. Load it with `torch.export.load(path).module()`."""
    wrapper = ImageGenerator(generator)
    inputs = example_inputs(generator, 2)
    batch = torch.export.Dim("batch", min=1, max=65536)
    with torch.no_grad():
        program = torch.export.export(wrapper, inputs, dynamic_shapes=tuple({0: batch} for _ in inputs))
    extra = {"dcgan.json": json.dumps(model_metadata(kwargs))} if kwargs is not None else None
    atomic_write(Path(path), lambda tmp: torch.export.save(program, str(tmp), extra_files=extra))


def export_torchscript(generator: nn.Module, path: Path, kwargs: dict | None = None) -> None:
    """Write a TorchScript file (traced; the traced graph takes any batch); `kwargs` go into its
    extra file `dcgan.json`."""
    wrapper = ImageGenerator(generator)
    inputs = example_inputs(generator, 2)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice
        traced = torch.jit.trace(wrapper, inputs, check_trace=False)
    extra = {"dcgan.json": json.dumps(model_metadata(kwargs))} if kwargs is not None else {}
    atomic_write(Path(path), lambda tmp: torch.jit.save(traced, str(tmp), _extra_files=extra))
