"""GAN objectives, phase by phase.

`GANLoss` owns the forward and backward of each phase, as in stylegan2-ada's `training/loss.py`:
`discriminator_step` (D main loss, plus lazy R1 every `r1_interval` D steps with its weight
multiplied by the interval, or WGAN-GP's gradient penalty) and `generator_step`. The plain loss
functions below are what the tests check against hand-computed values.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from dcgan.augment import diff_augment


# Discriminator losses: logits of real and fake images -> scalar.
def d_loss_bce(real_logits, fake_logits, label_smoothing: float = 0.0):
    """Goodfellow et al. 2014, with one-sided label smoothing (Salimans et al. 2016)."""
    real_target = torch.full_like(real_logits, 1.0 - label_smoothing)
    return (F.binary_cross_entropy_with_logits(real_logits, real_target)
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def d_loss_hinge(real_logits, fake_logits, label_smoothing: float = 0.0):
    """Lim & Ye 2017; Miyato et al. 2018."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def d_loss_wasserstein(real_logits, fake_logits, label_smoothing: float = 0.0):
    """Arjovsky et al. 2017 critic loss (the gradient penalty is added separately)."""
    return fake_logits.mean() - real_logits.mean()


# Generator losses: logits of fake images -> scalar.
def g_loss_nonsaturating(fake_logits):
    """-log D(G(z)), the non-saturating loss of Goodfellow et al. 2014."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def g_loss_mean(fake_logits):
    """-D(G(z)), for hinge and Wasserstein losses."""
    return -fake_logits.mean()


LOSSES = {
    "bce": (d_loss_bce, g_loss_nonsaturating),
    "hinge": (d_loss_hinge, g_loss_mean),
    "wgan-gp": (d_loss_wasserstein, g_loss_mean),
}


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """Mescheder et al. 2018: E ||d D(x) / dx||^2 over real x (which must require grad)."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.square().sum(dim=[1, 2, 3]).mean()


def gradient_penalty(discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     augment=lambda x: x) -> torch.Tensor:
    """Gulrajani et al. 2017: E (||d D(x_hat) / d x_hat|| - 1)^2 on random interpolates."""
    alpha = torch.rand(real.size(0), 1, 1, 1, device=real.device, dtype=real.dtype)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(augment(mixed)).sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).square().mean()


class GANLoss:
    """The objective of one training config, run phase by phase."""

    def __init__(self, *, generator, discriminator, loss: str = "hinge", label_smoothing: float = 0.0,
                 r1_gamma: float = 0.0, r1_interval: int = 16, gp_weight: float = 10.0,
                 augment_policy: list[str] | None = None, autocast=None):
        self.G, self.D = generator, discriminator
        self.d_loss, self.g_loss = LOSSES[loss]
        self.use_gp = loss == "wgan-gp"
        self.label_smoothing, self.gp_weight = label_smoothing, gp_weight
        self.r1_gamma, self.r1_interval = r1_gamma, r1_interval
        self.policy = list(augment_policy or [])
        self.autocast = autocast or torch.autocast("cpu", enabled=False)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.policy) if self.policy else x

    def discriminator_step(self, real: torch.Tensor, fake: torch.Tensor, d_step: int, scaler) -> dict:
        """Backward of the D loss (and its regularizer) for one batch. `fake` is detached here."""
        do_r1 = self.r1_gamma > 0 and d_step % self.r1_interval == 0
        real = real.detach().requires_grad_(do_r1)
        with self.autocast:
            real_logits = self.D(self.augment(real)).float()
            fake_logits = self.D(self.augment(fake.detach())).float()
            loss = self.d_loss(real_logits, fake_logits, self.label_smoothing)
        stats = {"loss_d": loss.detach(), "d_real": real_logits.detach().mean(),
                 "d_fake": fake_logits.detach().mean()}
        if do_r1:
            r1 = r1_penalty(real_logits, real)
            loss = loss + r1 * (self.r1_gamma / 2 * self.r1_interval)
            stats["r1"] = r1.detach()
        if self.use_gp:
            gp = gradient_penalty(self.D, real.detach(), fake.detach(), self.augment)
            loss = loss + gp * self.gp_weight
            stats["gp"] = gp.detach()
        scaler.scale(loss).backward()
        return stats

    def generator_step(self, fake: torch.Tensor, scaler) -> dict:
        """Backward of the G loss through D for images G just made (with grad)."""
        with self.autocast:
            fake_logits = self.D(self.augment(fake)).float()
            loss = self.g_loss(fake_logits)
        scaler.scale(loss).backward()
        return {"loss_g": loss.detach()}
