"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

The same random, differentiable transforms are applied to real and fake images before D, so D
cannot memorize a small dataset and G still gets gradients. Matches the authors' reference
`DiffAugment_pytorch.py`: color (brightness, saturation, contrast), translation by up to 1/8 of
the image with zero padding, cutout of a square half the image size. Randomness comes from
torch's global generator, whose state a checkpoint stores.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def diff_augment(x: torch.Tensor, policy: list[str]) -> torch.Tensor:
    """x: (B, C, H, W) in [-1, 1] -> augmented (B, C, H, W)."""
    for name in policy:
        for transform in AUGMENTATIONS[name]:
            x = transform(x)
    return x.contiguous()


def _brightness(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device) - 0.5)


def _saturation(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device) * 2) + mean


def _contrast(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device) + 0.5) + mean


def _translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    batch, _, height, width = x.shape
    shift_y, shift_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    ty = torch.randint(-shift_y, shift_y + 1, (batch, 1, 1), device=x.device)
    tx = torch.randint(-shift_x, shift_x + 1, (batch, 1, 1), device=x.device)
    grid_y = torch.arange(height, device=x.device).view(1, -1, 1)
    grid_x = torch.arange(width, device=x.device).view(1, 1, -1)
    # Index into a zero-padded copy: pixel (y, x) reads (y + ty, x + tx), zeros outside.
    src_y = (grid_y + ty + 1).clamp(0, height + 1)  # (B, H, 1)
    src_x = (grid_x + tx + 1).clamp(0, width + 1)  # (B, 1, W)
    padded = F.pad(x, [1, 1, 1, 1])  # (B, C, H+2, W+2)
    batch_index = torch.arange(batch, device=x.device).view(-1, 1, 1)
    return padded.permute(0, 2, 3, 1)[batch_index, src_y, src_x].permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    batch, _, height, width = x.shape
    size_y, size_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    offset_y = torch.randint(0, height + (1 - size_y % 2), (batch, 1, 1), device=x.device)
    offset_x = torch.randint(0, width + (1 - size_x % 2), (batch, 1, 1), device=x.device)
    grid_y = torch.arange(size_y, device=x.device).view(1, -1, 1)
    grid_x = torch.arange(size_x, device=x.device).view(1, 1, -1)
    cut_y = (grid_y + offset_y - size_y // 2).clamp(0, height - 1)  # (B, sy, 1)
    cut_x = (grid_x + offset_x - size_x // 2).clamp(0, width - 1)  # (B, 1, sx)
    mask = torch.ones(batch, height, width, dtype=x.dtype, device=x.device)
    batch_index = torch.arange(batch, device=x.device).view(-1, 1, 1)
    mask[batch_index, cut_y, cut_x] = 0
    return x * mask.unsqueeze(1)


AUGMENTATIONS = {
    "color": [_brightness, _saturation, _contrast],
    "translation": [_translation],
    "cutout": [_cutout],
}
