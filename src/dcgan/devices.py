"""Which device runs a command, how many CPU threads, and which CPU it is: shared by train, generate,
evaluate, features and serve."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from dcgan.errors import UserError


def pick_device(name: str) -> torch.device:
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


def physical_cores() -> int:
    """Physical CPU cores (hyper-threads share one core's arithmetic units), from /proc/cpuinfo on
    Linux; the logical count elsewhere."""
    try:
        pairs, physical_id = set(), "0"
        for line in open("/proc/cpuinfo"):
            key, _, value = line.partition(":")
            if key.strip() == "physical id":
                physical_id = value.strip()
            elif key.strip() == "core id":
                pairs.add((physical_id, value.strip()))
        if pairs:
            return len(pairs)
    except OSError:
        pass
    return os.cpu_count() or 1


def machine_name(device="cpu") -> str:
    """The machine a process computes on: the GPU's name for a CUDA device, else the CPU's model,
    vector width and cores (`cpu_name`); results files and evaluation records name it."""
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return cpu_name()


def cpu_name() -> str:
    """The CPU's model name and vector width, from /proc/cpuinfo where there is one."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")
    width = ("AVX-512 with bf16" if " avx512_bf16" in text else "AVX-512") if " avx512f" in text \
        else "AVX2" if " avx2" in text else "no AVX2"
    return f"{name or platform.machine()} ({width}, {os.cpu_count()} cores)"
