"""Multi-process training the nanoGPT way: `torchrun` sets RANK/WORLD_SIZE, we read them.

    torchrun --standalone --nproc_per_node=4 -m dcgan train ...

Only rank 0 writes files. No ports are chosen here and nothing is spawned.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from dcgan.devices import pick_device

# While rank 0 writes a snapshot or finishes scoring a metric (every rank makes a share of the
# samples, rank 0 alone computes the scores), the others wait in the next collective; with Inception
# on a slow machine that can outlast the default 10-minute timeout. $DCGAN_COLLECTIVE_TIMEOUT_S sets it.
COLLECTIVE_TIMEOUT = timedelta(seconds=float(os.environ.get("DCGAN_COLLECTIVE_TIMEOUT_S", 3600)))


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


def announce(key: str, message: str, info: ProcessInfo) -> None:
    """Rank 0 posts `message` ('' for success) under `key` in the process group's store."""
    if info.distributed:
        _default_store().set(f"dcgan/{key}", message.encode())


def wait_for_announcement(key: str, info: ProcessInfo, poll_s: float = 1.0) -> str:
    """Another rank waits for rank 0's `announce(key, ...)` by polling the store: not a collective,
    so rank 0 may take hours (Inception statistics of a large set on a CPU) without a timeout."""
    if not info.distributed:
        return ""
    store, name = _default_store(), f"dcgan/{key}"
    while not store.check([name]):
        time.sleep(poll_s)
    return store.get(name).decode()


def _default_store():
    from torch.distributed.distributed_c10d import _get_default_store

    return _get_default_store()


def gather_rows(part: np.ndarray | None, info: ProcessInfo) -> np.ndarray | None:
    """Rank r holds rows r, r + W, r + 2W, ... of an array (W processes); rank 0 gets the whole
    array in order, the others None. Without torchrun, the part is the whole."""
    if not info.distributed:
        return part
    parts = [None] * info.world_size if info.is_main else None
    dist.gather_object(part, parts, dst=0)
    if not info.is_main:
        return None
    whole = np.empty((sum(len(p) for p in parts), *parts[0].shape[1:]), dtype=parts[0].dtype)
    for rank, rows in enumerate(parts):
        whole[rank::info.world_size] = rows
    return whole


def same_everywhere(value: str, info: ProcessInfo) -> list[str] | None:
    """None if every process holds the same `value`, else every rank's value (gathered on all)."""
    if not info.distributed:
        return None
    values = [None] * info.world_size
    dist.all_gather_object(values, value)
    return None if len(set(values)) == 1 else values


def weights_identical(modules: list[torch.nn.Module], info: ProcessInfo) -> bool:
    """Whether every process holds bit-identical parameters in `modules` (SHA-256 of their bytes,
    gathered): averaged gradients keep replicas equal, and this checks that they did. Buffers are
    left out: each rank's BatchNorm running statistics come from its own share of the data."""
    if not info.distributed:
        return True
    digest = hashlib.sha256()
    for module in modules:
        for tensor in module.parameters():
            digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    digests = [None] * info.world_size
    dist.all_gather_object(digests, digest.hexdigest())
    return len(set(digests)) == 1


def shutdown(info: ProcessInfo) -> None:
    """Leave the process group together: rank 0 writes the final artifacts while the others would
    otherwise tear the group down under it."""
    if info.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_grads(module: torch.nn.Module, process: ProcessInfo) -> None:
    """Average gradients over processes (stylegan2-ada's way: it also works with R1's double backward)."""
    if not process.distributed:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if grads:
        flat = torch.cat([g.flatten() for g in grads])
        dist.all_reduce(flat)
        flat /= process.world_size
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()
