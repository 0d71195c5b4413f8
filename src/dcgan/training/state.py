"""What exact resume saves and restores, in one place.

`TrainingState` holds the parts of a run that change as it trains: the networks, the EMA
generator, both optimizers, the grad scaler, the augmentation probability (ADA), the loss's own
state (LeCam anchors) and the data order. `state_dict` and `load_state_dict` sit side by side, so
the exact-resume contract is one class to read; the loop's counters travel with them as a
`Progress`. Random-number states are per process: `state_dict` takes every rank's (gathered by the
caller, a collective), and `restore_rng` gives each rank its own back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from dcgan.checkpoint import load_state_checked
from dcgan.errors import UserError


@dataclass
class Progress:
    """The loop's counters: G steps, D steps, real images shown, training seconds, the summary so far."""

    step: int = 0
    d_step: int = 0
    cur_nimg: int = 0
    seconds: float = 0.0
    summary: dict = field(default_factory=dict)


@dataclass
class TrainingState:
    G: torch.nn.Module
    D: torch.nn.Module
    G_ema: torch.nn.Module | None
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    augmenter: object  # dcgan.augment.Augmenter
    loss: object  # dcgan.losses.GANLoss
    stream: object  # dcgan.data.BatchStream

    def state_dict(self, progress: Progress, rng_ranks: dict | None = None) -> dict:
        """Everything a resume needs. `rng_ranks`: {"cpu": [state of rank 0, 1, ...], "cuda": [...]}."""
        rng_ranks = rng_ranks or {}
        device = next(self.G.parameters()).device
        return {
            "G": self.G.state_dict(), "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict() if self.G_ema is not None else None,
            "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(), "scaler": self.scaler.state_dict(),
            "augment": self.augmenter.state_dict(), "loss": self.loss.state_dict(), "data": self.stream.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "rng_cpu_ranks": rng_ranks.get("cpu"), "rng_cuda_ranks": rng_ranks.get("cuda"),
            "step": progress.step, "d_step": progress.d_step, "cur_nimg": progress.cur_nimg,
            "seconds": progress.seconds, "summary": progress.summary,
        }

    def load_state_dict(self, state: dict) -> Progress:
        """Restore what `state_dict` saved (not the RNG: see `restore_rng`); return the counters."""
        load_state_checked(self.G, state["G"], "generator")
        load_state_checked(self.D, state["D"], "discriminator")
        if self.G_ema is not None:
            load_state_checked(self.G_ema, state.get("G_ema") or state["G"], "EMA generator")
        for name, optimizer in (("generator", self.opt_G), ("discriminator", self.opt_D)):
            try:
                optimizer.load_state_dict(state["opt_G" if name == "generator" else "opt_D"])
            except (ValueError, KeyError, TypeError) as error:  # another --freeze-d gives other parameter groups
                raise UserError(f"the {name}'s optimizer state in the checkpoint does not fit this run's settings "
                                f"({str(error).splitlines()[0][:100]}): resume with the settings the run had "
                                f"(its config.json; --freeze-d included)") from None
        self.scaler.load_state_dict(state["scaler"])
        self.augmenter.load_state_dict(state.get("augment", self.augmenter.state_dict()))
        self.loss.load_state_dict(state.get("loss", {}))
        self.stream.load_state_dict(state["data"])
        return Progress(state["step"], state["d_step"], state["cur_nimg"], state["seconds"],
                        dict(state.get("summary", {})))


def restore_rng(state: dict, rank: int, device: torch.device) -> None:
    """This rank's generator states from a checkpoint; a rank the checkpoint has none for (it was
    saved by fewer processes) keeps the seed it was given."""
    rng_cpu = state.get("rng_cpu_ranks") or [state["rng_cpu"]]
    rng_cuda = state.get("rng_cuda_ranks") or [state.get("rng_cuda")]
    if rank < len(rng_cpu):
        torch.set_rng_state(rng_cpu[rank])
    if device.type == "cuda" and rank < len(rng_cuda) and rng_cuda[rank] is not None:
        torch.cuda.set_rng_state(rng_cuda[rank], device)


RESUMED_STATE_KEYS = ("G", "D", "G_ema", "opt_G", "opt_D", "rng_cpu", "data")


def state_tensors(checkpoint: dict, keys=RESUMED_STATE_KEYS) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint's training state, flattened to {"G/main.0.weight": tensor, ...}:
    what two runs that should be bit-identical (a straight run, a resumed one) are compared by."""
    out: dict[str, torch.Tensor] = {}

    def walk(value, path: str) -> None:
        if torch.is_tensor(value):
            out[path] = value
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}/{key}")
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                walk(item, f"{path}/{index}")

    for key in keys:
        walk(checkpoint.get(key), key)
    return out
