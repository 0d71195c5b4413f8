"""`--init-from`: a run that starts from another model's weights (fine-tuning) instead of random ones.

The source is a shipped model's name, a run folder (its `checkpoint-last.pt`), a checkpoint `.pt`
or a generator `.safetensors`. G and its EMA copy take the source's generator weights (the EMA
ones where it has them), D the source's discriminator where it has one (a checkpoint, or a shipped
model shipped with its `discriminator.safetensors`; otherwise D starts from random weights, and the
run says so). Optimizers, step counts and schedules start fresh, as stylegan2-ada's `--resume`
does on a new dataset. The networks must be the same: the source's constructor arguments are
compared with this run's (its flags, and the data's resolution and channels), and a difference is
one line naming it. A conditional model's class names may differ (new classes, same count).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from dcgan.checkpoint import load_checkpoint, load_state_checked, read_discriminator, read_generator_file
from dcgan.errors import UserError


@dataclass
class InitSource:
    """The weights a run starts from, and what they were built with."""

    origin: str  # what --init-from named, resolved: a file
    G: dict[str, torch.Tensor]
    G_ema: dict[str, torch.Tensor] | None
    D: dict[str, torch.Tensor] | None
    g_kwargs: dict
    d_kwargs: dict | None


def read_source(spec: str) -> InitSource:
    """The weights `spec` names: a shipped model, a run folder, a checkpoint or a generator file."""
    from dcgan.pretrained import shipped_models

    path = Path(spec).expanduser()
    is_run = path.is_file() or (path / "checkpoint-last.pt").is_file()  # a data folder may share a model's name
    if not is_run and (model := shipped_models().get(spec)) is not None:
        weights = model.weights()
        tensors, g_kwargs, _ = read_generator_file(weights)
        d_file = model.folder / "discriminator.safetensors"
        d_state, d_kwargs = read_discriminator(d_file) if d_file.is_file() else (None, None)
        return InitSource(f"{spec} ({weights.name})", tensors, tensors, d_state, g_kwargs, d_kwargs)
    if path.is_dir():
        if not (path / "checkpoint-last.pt").is_file():
            raise UserError(f"--init-from {spec}: the folder has no checkpoint-last.pt")
        path = path / "checkpoint-last.pt"
    if not path.is_file():
        raise UserError(f"--init-from {spec!r} is neither a shipped model (see `dcgan models`) nor an existing run "
                        f"folder, checkpoint or generator file")
    if path.suffix == ".safetensors":
        tensors, g_kwargs, _ = read_generator_file(path)
        return InitSource(str(path), tensors, tensors, None, g_kwargs, None)
    state = load_checkpoint(path)
    for key in ("G", "D", "generator_kwargs", "discriminator_kwargs"):
        if key not in state:
            raise UserError(f"--init-from {path}: the checkpoint has no {key}; pass a checkpoint of `dcgan train`")
    return InitSource(str(path), state["G"], state.get("G_ema"), state["D"], state["generator_kwargs"],
                      state["discriminator_kwargs"])


def check_same_network(what: str, source: dict, own: dict, origin: str) -> None:
    """One line naming the first constructor argument where the source's network differs from this run's."""
    keys = sorted((set(source) | set(own)) - {"class_names"})
    differences = [f"{key} {source.get(key)!r} there, {own.get(key)!r} here" for key in keys
                   if source.get(key) != own.get(key)]
    if differences:
        raise UserError(f"--init-from {origin}: its {what} is not this run's ({'; '.join(differences[:3])}); train "
                        f"with the same network flags on images of the same resolution and channels")


def initialize(nets, spec: str) -> dict:
    """Load `spec`'s weights into `nets` (a setup.Networks, before it moves to its device); return
    what the run's summary records about it."""
    source = read_source(spec)
    check_same_network("generator", source.g_kwargs, nets.g_kwargs, source.origin)
    load_state_checked(nets.G, source.G, f"generator of {source.origin}")
    if nets.G_ema is not None:
        load_state_checked(nets.G_ema, source.G_ema or source.G, f"EMA generator of {source.origin}")
    if source.D is not None:
        check_same_network("discriminator", source.d_kwargs, nets.d_kwargs, source.origin)
        load_state_checked(nets.D, source.D, f"discriminator of {source.origin}")
    else:
        print(f"--init-from {source.origin}: it holds no discriminator, so D starts from random weights", flush=True)
    return {"from": source.origin, "discriminator": source.D is not None}
