"""Multi-process training the nanoGPT way: `torchrun` sets RANK/WORLD_SIZE, we read them.

    torchrun --standalone --nproc_per_node=4 -m dcgan train ...

Only rank 0 writes files. No ports are chosen here and nothing is spawned.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


# While rank 0 scores a metric or writes a snapshot, the other ranks wait in the next collective;
# an Inception FID of 50,000 samples can outlast the default 10-minute NCCL timeout.
COLLECTIVE_TIMEOUT = timedelta(minutes=60)


@dataclass
class ProcessInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_process(device_name: str) -> tuple[ProcessInfo, torch.device]:
    """Join the process group if launched by torchrun; return the process info and its device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return ProcessInfo(), pick_device(device_name)
    from dcgan.errors import UserError

    info = ProcessInfo(int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"]))
    if device_name.startswith("cuda:"):
        raise UserError(f"under torchrun each process uses the GPU of its LOCAL_RANK: pass --device cuda, "
                        f"not {device_name} (CUDA_VISIBLE_DEVICES picks the GPUs)")
    if device_name == "mps":
        raise UserError("torchrun runs on CUDA or CPU processes, not --device mps")
    if device_name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for, but CUDA is not available on this machine")
    if torch.cuda.is_available() and device_name in ("auto", "cuda"):
        device = torch.device(f"cuda:{info.local_rank}")
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", timeout=COLLECTIVE_TIMEOUT)
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo", timeout=COLLECTIVE_TIMEOUT)
    return info, device


def pick_device(name: str) -> torch.device:
    from dcgan.errors import UserError

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device must be auto, cpu, cuda, cuda:N or mps, not {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for, but CUDA is not available on this machine")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError("--device mps was asked for, but MPS is not available on this machine")
    return device


def all_reduce_mean(tensor: torch.Tensor, info: ProcessInfo) -> torch.Tensor:
    if info.distributed:
        dist.all_reduce(tensor)
        tensor /= info.world_size
    return tensor


def shutdown(info: ProcessInfo) -> None:
    """Leave the process group together: rank 0 writes the final artifacts while the others would
    otherwise tear the group down under it."""
    if info.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
