"""The arithmetic of a training run: `--precision auto|fp32|bf16`, and fp16 `--amp` on CUDA.

bfloat16 autocast pays on CPUs that multiply bf16 natively (AVX512-BF16, AMX): convolutions and
matrix products run in bf16 while weights, optimizer moments, losses and EMA stay in float32.
Without native support bf16 is emulated and slower than float32, so `auto` picks bf16 only where
the CPU has it. bf16 keeps float32's exponent range, so it needs no gradient scaler.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch

from dcgan.choices import PRECISIONS
from dcgan.errors import UserError


@dataclass
class Precision:
    name: str  # fp32, bf16 or fp16
    device_type: str
    reason: str  # one line saying why this precision runs

    @property
    def dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)

    def autocast(self):
        """A fresh autocast context for one forward (a no-op context for fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    @property
    def needs_scaler(self) -> bool:
        return self.name == "fp16"


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 natively (x86 AVX512-BF16 or AMX-BF16, Arm BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    if flags:
        words = set(flags.split())
        return bool(words & {"avx512_bf16", "amx_bf16", "bf16"})
    try:  # Not Linux: ask oneDNN (a private but long-standing torch helper).
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(requested: str, device: torch.device, amp: bool = False) -> Precision:
    """The precision a run uses for `--precision requested` (and `--amp`) on `device`."""
    if requested not in PRECISIONS:
        raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}, not {requested!r}")
    if device.type == "cuda":
        if amp:
            return Precision("fp16", "cuda", "float16 autocast with a gradient scaler (--amp on CUDA)")
        if requested == "bf16":
            return Precision("bf16", "cuda", "bfloat16 autocast on CUDA (--precision bf16)")
        return Precision("fp32", "cuda", "float32 (pass --amp or --precision bf16 for mixed precision on CUDA)")
    if device.type != "cpu":
        return Precision("fp32", device.type, f"float32 (mixed precision is not used on {device.type})")
    native = cpu_has_native_bf16()
    if requested == "fp32":
        return Precision("fp32", "cpu", "float32 (--precision fp32)")
    if requested == "bf16" and not native:
        return Precision("fp32", "cpu", "float32: this CPU has no native bfloat16 (AVX512-BF16/AMX), "
                                        "so --precision bf16 falls back to fp32")
    if native:
        return Precision("bf16", "cpu", "bfloat16 autocast: this CPU computes bf16 natively (AVX512-BF16/AMX)")
    return Precision("fp32", "cpu", "float32: this CPU has no native bfloat16 (AVX512-BF16/AMX)")
