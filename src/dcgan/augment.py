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


AUGMENTATIONS = {  # each operation in choices.AUGMENTS
    "color": [_brightness, _saturation, _contrast],
    "translation": [_translation],
    "cutout": [_cutout],
}


class Augmenter:
    """DiffAugment for D's inputs, applied to each image with probability `p`.

    `p` is fixed (1 by default: always on, as Zhao et al.), or adaptive as in ADA (Karras et al.
    2020, "Training Generative Adversarial Networks with Limited Data"): every `interval` D steps
    the overfitting heuristic r_t = E[sign(D(x_real))] moves p up when r_t > `target`, down when below,
    by batch * interval / (speed_kimg * 1000), so p can go from 0 to 1 in `speed_kimg` thousand
    images. Its state (p and the running sums) travels in the checkpoint.
    """

    def __init__(self, policy: list[str], *, p: float = 1.0, target: float = 0.0, interval: int = 4,
                 speed_kimg: float = 100.0):
        self.policy, self.p, self.target = list(policy), float(p), float(target)
        self.interval, self.speed_kimg = interval, speed_kimg
        self.sign_sum, self.count, self.steps = 0.0, 0, 0
        if self.target > 0:
            self.p = 0.0  # ADA starts with no augmentation and raises it as D overfits.

    @property
    def adaptive(self) -> bool:
        return self.target > 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.policy or self.p <= 0:
            return x
        augmented = diff_augment(x, self.policy)
        if self.p >= 1:
            return augmented
        keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device) >= self.p  # (B, 1, 1, 1)
        return torch.where(keep, x, augmented)

    def observe(self, real_logits: torch.Tensor, batch_size: int) -> None:
        """Accumulate sign(D(x_real)); every `interval` calls, move p toward the target r_t."""
        if not self.adaptive:
            return
        self.sign_sum += float(real_logits.detach().sign().sum())
        self.count += real_logits.numel()
        self.steps += 1
        if self.steps % self.interval == 0:
            r_t = self.sign_sum / max(self.count, 1)
            step = batch_size * self.interval / (self.speed_kimg * 1000)
            self.p = min(1.0, max(0.0, self.p + step * (1 if r_t > self.target else -1)))
            self.sign_sum, self.count = 0.0, 0

    def state_dict(self) -> dict:
        return {"p": self.p, "sign_sum": self.sign_sum, "count": self.count, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.p, self.sign_sum = float(state["p"]), float(state["sign_sum"])
        self.count, self.steps = int(state["count"]), int(state["steps"])
