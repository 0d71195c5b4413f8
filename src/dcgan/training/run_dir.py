"""The self-describing run folder: numbered, with config, environment and model summary, and the
numbered snapshots it keeps."""

from __future__ import annotations

import copy
import os
import platform
import re
import shutil
import sys
from pathlib import Path

import torch

from dcgan import __version__
from dcgan.devices import cpu_name
from dcgan.files import atomic_write


def new_run_dir(outdir: str | Path, dataset: str, preset: str) -> Path:
    """runs/NNNNN-<dataset>-<preset>, numbered one past the highest run already there."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    numbers = [int(m.group(1)) for p in outdir.iterdir() if (m := re.match(r"^(\d{5})-", p.name))]
    number = max(numbers, default=-1) + 1
    while True:  # Another process may take the same number: mkdir is the tie-breaker.
        path = outdir / f"{number:05d}-{dataset}-{preset}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            number += 1


def environment_info(device: torch.device) -> dict:
    import numpy
    import torchvision

    info = {
        "dcgan": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
        "torchvision": torchvision.__version__, "numpy": numpy.__version__,
        "platform": platform.platform(), "cpu": cpu_name(),
        "cpu_threads": torch.get_num_threads(), "device": str(device), "command": " ".join(sys.argv),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def model_summary(generator, discriminator, z_dim: int, resolution: int, channels: int) -> str:
    from torchinfo import summary

    parts = []
    labels = torch.zeros(2, dtype=torch.int64)  # a conditional network's inputs are (image or z, labels)
    g_input = [torch.zeros(2, z_dim), labels] if generator.num_classes else [torch.zeros(2, z_dim)]
    d_input = [torch.zeros(2, channels, resolution, resolution)]
    if getattr(discriminator, "embed", None) is not None:
        d_input.append(labels)
    d_options = {"return_classes": True} if getattr(discriminator, "classifier", None) is not None else {}
    for name, module, inputs, options in (("Generator", generator, g_input, {}),
                                          ("Discriminator", discriminator, d_input, d_options)):
        # A copy: a forward pass would move BatchNorm statistics and spectral-norm vectors.
        text = str(summary(copy.deepcopy(module).cpu(), input_data=inputs, verbose=0, device="cpu",
                           col_names=("output_size", "num_params"), depth=4, **options))
        parts.append(f"{name}: {count_parameters(module):,} parameters\n{text}\n")
    return "\n".join(parts)


def keep_snapshot(run_dir: Path, cur_nimg: int, keep: int) -> None:
    """checkpoint-last.pt also as checkpoint-kimgNNNNNN.pt (a hard link where the file system has
    them, else a copy), and only the newest `keep` of those kept."""
    path = run_dir / f"checkpoint-kimg{cur_nimg // 1000:06d}.pt"
    path.unlink(missing_ok=True)
    try:
        os.link(run_dir / "checkpoint-last.pt", path)
    except OSError:
        atomic_write(path, lambda tmp: shutil.copyfile(run_dir / "checkpoint-last.pt", tmp))
    for old in sorted(run_dir.glob("checkpoint-kimg*.pt"))[:-keep]:
        old.unlink(missing_ok=True)
