"""Exponential moving average of the generator, set by a half-life in images.

As in stylegan2-ada's training loop: with a half-life of `ema_kimg` thousand images, each step of
`batch_size` images uses beta = 0.5 ** (batch_size / ema_nimg), so after ema_nimg images the old
weights count half, whatever the batch size. The ramp-up caps the half-life at `rampup` times
the images seen so far, so early samples are not an average over random initial weights.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from dcgan.models import batch_norm_layers


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


def step_ema(ema: nn.Module | None, model: nn.Module, batch_size: int, ema_kimg: float, cur_nimg: int,
             rampup: float = 0.0) -> float:
    """The EMA update after a step of `batch_size` images (all processes'); returns its beta (0 without EMA)."""
    if ema is None:
        return 0.0
    beta = ema_beta(batch_size, ema_kimg, cur_nimg, rampup)
    update_ema(ema, model, beta)
    return beta


@torch.no_grad()
def standing_statistics(generator: nn.Module, *, batches: int = 32, batch_size: int = 128, seed: int = 0) -> nn.Module:
    """A copy of `generator` whose BatchNorm running statistics are recomputed for its own weights.

    The EMA generator's weights are an average, but its BatchNorm statistics are the raw
    generator's (copied each step), measured on activations the averaged weights do not produce.
    As BigGAN's "standing statistics" (Brock et al. 2019), run the averaged weights in training
    mode on `batches` batches of fixed latents and keep the exact mean of the batch statistics.
    A generator without BatchNorm is returned as it is. Draws no numbers from torch's global RNG.
    """
    if not batch_norm_layers(generator):
        return generator
    copy_ = copy.deepcopy(generator)
    norms = batch_norm_layers(copy_)
    momenta = [module.momentum for module in norms]
    for module in norms:
        module.reset_running_stats()
        module.momentum = None  # cumulative average over the batches below
    device = next(copy_.parameters()).device
    latents = torch.Generator().manual_seed(seed)
    copy_.train()
    num_classes = getattr(copy_, "num_classes", 0)
    for _ in range(batches):
        z = torch.randn(batch_size, copy_.z_dim, generator=latents).to(device)
        c = torch.randint(num_classes, (batch_size,), generator=latents).to(device) if num_classes else None
        copy_(z, c)  # a conditional generator: classes drawn uniformly
    for module, momentum in zip(norms, momenta):
        module.momentum = momentum
    return copy_.eval().requires_grad_(False)
