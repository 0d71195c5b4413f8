"""Checkpoints: state dicts + model arguments + step, written atomically, read with weights_only.

`checkpoint-*.pt` holds the complete training state (models, EMA, optimizers, scaler, RNG and
data-order state). `generator.safetensors` holds only the EMA generator's weights, with its
constructor arguments in the file's metadata, so it loads with nothing else beside it.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import torch
import torch.nn as nn

from dcgan import __version__
from dcgan.errors import UserError
from dcgan.models import build_generator

FORMAT = "dcgan-checkpoint-v1"


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), then rename over `path`: readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_checkpoint(state: dict, path: Path) -> None:
    state = {"format": FORMAT, "version": __version__, **state}
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError, OSError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{path} is not a readable dcgan checkpoint ({first[:200]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path} is not a dcgan checkpoint (no '{FORMAT}' marker)")
    return state


def load_state_checked(module: nn.Module, state_dict: dict, what: str) -> None:
    """load_state_dict, but a mismatch names the parameter and both shapes in one line."""
    own = module.state_dict()
    for name, tensor in own.items():
        if name not in state_dict:
            raise UserError(f"{what}: the checkpoint has no {name}; it was saved from another architecture")
        if tuple(state_dict[name].shape) != tuple(tensor.shape):
            raise UserError(f"{what}: {name} has shape {tuple(state_dict[name].shape)} in the checkpoint "
                            f"but {tuple(tensor.shape)} in the model; it was saved from another architecture")
    extra = sorted(set(state_dict) - set(own))
    if extra:
        raise UserError(f"{what}: the checkpoint has {extra[0]}, which the model lacks; "
                        f"it was saved from another architecture")
    module.load_state_dict(state_dict)


def save_generator(generator: nn.Module, kwargs: dict, path: Path, extra: dict | None = None) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    metadata = {"format": "dcgan-generator-v1", "family": "dcgan", "version": __version__,
                "generator_kwargs": json.dumps(kwargs), **{k: json.dumps(v) for k, v in (extra or {}).items()}}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file; an unreadable one is a UserError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        return load_file(str(path)), metadata
    except (SafetensorError, OSError, ValueError) as error:
        raise UserError(f"{path} is not a readable safetensors file ({error})") from None


def resolve_generator_path(path: str | Path) -> Path:
    """A run folder means its generator.safetensors (or checkpoint-last.pt); a file is itself."""
    path = Path(path)
    if path.is_dir():
        for name in ("generator.safetensors", "checkpoint-last.pt"):
            if (path / name).is_file():
                return path / name
        raise UserError(f"{path} holds no generator.safetensors or checkpoint-last.pt")
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    return path


def load_generator(path: str | Path, device: str | torch.device = "cpu", use_ema: bool = True):
    """Load the (EMA) generator from a run folder, generator.safetensors or a checkpoint .pt.

    Returns (generator in eval mode, its constructor kwargs).
    """
    path = resolve_generator_path(path)
    if path.suffix == ".safetensors":
        tensors, metadata = read_safetensors(path)
        if metadata.get("format") != "dcgan-generator-v1":
            raise UserError(f"{path} is not a dcgan generator (no 'dcgan-generator-v1' metadata)")
        kwargs = json.loads(metadata["generator_kwargs"])
        state_dict = tensors
        standing = False
    else:
        state = load_checkpoint(path)
        kwargs = state["generator_kwargs"]
        key = "G_ema" if use_ema and state.get("G_ema") is not None else "G"
        state_dict = state[key]
        standing = key == "G_ema"  # generator files hold the EMA weights with standing statistics
    generator = build_generator(**kwargs)
    load_state_checked(generator, state_dict, f"generator from {path}")
    generator = generator.to(device).eval()
    if standing:
        from dcgan.training.ema import standing_statistics

        generator = standing_statistics(generator)
    return generator, kwargs
