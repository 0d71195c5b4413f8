"""Exponential moving average of the generator, set by a half-life in images.

As in stylegan2-ada's training loop: with a half-life of `ema_kimg` thousand images, each step of
`batch_size` images uses beta = 0.5 ** (batch_size / ema_nimg), so after ema_nimg images the old
weights count half, whatever the batch size. The ramp-up caps the half-life at `rampup` times
the images seen so far, so early samples are not an average over random initial weights.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def ema_beta(batch_size: int, ema_kimg: float, cur_nimg: int, rampup: float = 0.0) -> float:
    ema_nimg = ema_kimg * 1000
    if rampup > 0:
        ema_nimg = min(ema_nimg, cur_nimg * rampup)
    return 0.5 ** (batch_size / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """Parameters move toward the model's by (1 - beta); buffers (BatchNorm statistics) are copied."""
    ema_params = list(ema.parameters())
    torch._foreach_lerp_(ema_params, [p.detach() for p in model.parameters()], 1.0 - beta)
    for ema_buffer, buffer in zip(ema.buffers(), model.buffers()):
        ema_buffer.copy_(buffer)
