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
from dcgan.errors import UserError
from dcgan.files import atomic_write


def check_run_folder(path: Path) -> tuple[Path, Path]:
    """(run folder, checkpoint) that `--resume PATH` names: a run folder (its checkpoint-last.pt) or a
    checkpoint-*.pt inside one. A folder that `dcgan train` did not make is refused: resuming writes
    config.json there and clears temporary files beneath it."""
    checkpoint = path / "checkpoint-last.pt" if path.is_dir() else path
    folder = checkpoint.parent
    if path.is_dir() and not checkpoint.is_file():
        raise UserError(f"{path} has no checkpoint-last.pt to resume from")
    if not checkpoint.is_file():
        raise UserError(f"checkpoint not found: {checkpoint}")
    if not (checkpoint.name.startswith("checkpoint-") and checkpoint.suffix == ".pt"
            and (folder / "config.json").is_file() and (folder / "samples").is_dir()):
        raise UserError(f"--resume {path}: {folder} is not a run folder of `dcgan train` (config.json, samples/ and "
                        f"checkpoint-*.pt); to start from these weights use --init-from {path}")
    return folder, checkpoint


def run_config(checkpoint: Path) -> dict | None:
    """The data settings of the run a checkpoint (or run folder) belongs to, from the config.json
    beside it: dataset, data_root, split, classes, download; None outside a run folder."""
    import json

    folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
    path = folder / "config.json"
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text())
        return {key: config[key] for key in ("dataset", "data_root", "split", "classes", "download")}
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{path} is not a readable run config") from None


def check_outdir(config) -> None:
    """A new run's --outdir is a folder (or new), and not inside the image folder it trains on (its
    sample grids would become training images of the next run)."""
    from dcgan.outputs import check_folder_output

    check_folder_output(config.outdir, inputs=[config.data_root] if config.dataset == "folder" else [],
                        option="--outdir")


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
    # Pruned by the images each holds, and only those this run has reached: a run resumed from an
    # older snapshot leaves the later snapshots of the line it abandoned alone (and so never counts
    # them as the newest and prunes the one it resumed from).
    reached = sorted((kimg, old) for old in run_dir.glob("checkpoint-kimg*.pt")
                     if (kimg := snapshot_kimg(old)) is not None and kimg <= cur_nimg // 1000)
    for _, old in reached[:-keep]:
        old.unlink(missing_ok=True)


def snapshot_kimg(path: Path) -> int | None:
    match = re.fullmatch(r"checkpoint-kimg(\d+)\.pt", path.name)
    return int(match.group(1)) if match else None
