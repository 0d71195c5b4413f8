"""GAN objectives, phase by phase.

`GANLoss` owns the forward and backward of each phase, as in stylegan2-ada's `training/loss.py`:
`discriminator_step` (D main loss, plus lazy R1/R2 every `r1_interval` D steps with their weight
multiplied by the interval, WGAN-GP's gradient penalty, LeCam regularization) and `generator_step`.
The plain loss functions below are what the tests check against hand-computed values.

A discriminator without BatchNorm sees real and fake images in one forward (one batch of 2B): the
same logits and gradients as two forwards, in fewer, larger convolutions, and with spectral norm
one power iteration per step instead of two. With BatchNorm the two batches stay apart, as
Radford et al. train it (each batch normalized on its own statistics).

Conditional objectives: a projection D reads each batch's labels inside its logit, so the losses
above apply unchanged; an AC-GAN D adds `ac_loss` (cross-entropy of its class head) on real and
fake images to its loss, and G adds it on its fakes (Odena et al. 2017).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from dcgan.models import batch_norm_layers


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


def d_loss_relativistic(real_logits, fake_logits, label_smoothing: float = 0.0):
    """Relativistic pairing GAN (Jolicoeur-Martineau 2019; R3GAN, Huang et al. 2024): softplus(D(G(z)) - D(x))
    over pairs (x_i, G(z_i))."""
    return F.softplus(fake_logits - real_logits).mean()


def g_loss_relativistic(fake_logits, real_logits):
    """The generator's side of the pairing: softplus(D(x) - D(G(z)))."""
    return F.softplus(real_logits - fake_logits).mean()


def lecam_penalty(real_logits, fake_logits, ema_real: float, ema_fake: float):
    """Tseng et al. 2021 (LeCam regularization): keeps D's outputs on real images near the running
    mean of its outputs on fakes, and vice versa: mean(relu(D(x) - a_F)^2) + mean(relu(a_R - D(G(z)))^2)."""
    return (F.relu(real_logits - ema_fake).square().mean() + F.relu(ema_real - fake_logits).square().mean())


LOSS_FUNCTIONS = {  # (D loss, G loss) of each name in choices.LOSSES
    "bce": (d_loss_bce, g_loss_nonsaturating),
    "hinge": (d_loss_hinge, g_loss_mean),
    "wgan-gp": (d_loss_wasserstein, g_loss_mean),
    "rpgan": (d_loss_relativistic, g_loss_relativistic),
}
RELATIVISTIC = {"rpgan"}  # the generator's loss also reads D's logits of real images


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """Mescheder et al. 2018: E ||d D(x) / dx||^2 over real x (which must require grad). The same
    function on fake images is R2 (Roth et al. 2017; R3GAN uses R1 + R2)."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.square().sum(dim=[1, 2, 3]).mean()


def gradient_penalty(discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     augment=lambda x: x) -> torch.Tensor:
    """Gulrajani et al. 2017: E (||d D(x_hat) / d x_hat|| - 1)^2 on random interpolates."""
    alpha = torch.rand(real.size(0), 1, 1, 1, device=real.device, dtype=real.dtype)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(augment(mixed)).sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).square().mean()


def ac_loss(class_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """AC-GAN's auxiliary classification loss (Odena et al. 2017): cross-entropy of D's class logits."""
    return F.cross_entropy(class_logits, labels)


class GANLoss:
    """The objective of one training config, run phase by phase. A conditional objective takes the
    labels of each batch: a projection D reads them in its logit; an AC-GAN D is also trained to
    classify real and fake images (weight `ac_weight`), and G to make fakes it classifies right."""

    def __init__(self, *, generator, discriminator, loss: str = "bce", label_smoothing: float = 0.0,
                 r1_gamma: float = 0.0, r2_gamma: float = 0.0, r1_interval: int = 16, gp_weight: float = 10.0,
                 lecam_weight: float = 0.0, lecam_decay: float = 0.99, augment=None, precision=None,
                 compiled_discriminator=None, conditioning: str = "", ac_weight: float = 1.0):
        self.G, self.D = generator, discriminator
        # torch.compile'd D for plain steps; steps with a gradient penalty need double backward,
        # which compiled graphs do not support, and use the eager D (the same parameters).
        self.D_compiled = discriminator if compiled_discriminator is None else compiled_discriminator
        self.d_loss, self.g_loss = LOSS_FUNCTIONS[loss]
        self.relativistic = loss in RELATIVISTIC
        self.use_gp = loss == "wgan-gp"
        self.label_smoothing, self.gp_weight = label_smoothing, gp_weight
        self.r1_gamma, self.r2_gamma, self.r1_interval = r1_gamma, r2_gamma, r1_interval
        self.lecam_weight, self.lecam_decay = lecam_weight, lecam_decay
        self.lecam_ema = {"real": 0.0, "fake": 0.0}  # running means of D's logits, for LeCam
        self.conditioning, self.ac_weight = conditioning, ac_weight
        self.instance_noise = 0.0  # std of Gaussian noise on D's inputs; the loop anneals it
        self.augment = augment or (lambda x: x)
        self.autocast = precision.autocast if precision is not None else contextlib.nullcontext
        # float16 has too few exponent bits for the inner gradient of R1/R2 (it underflows without
        # a loss scale): steps with a gradient penalty run D in float32. bfloat16 keeps float32's range.
        self.penalty_autocast = (contextlib.nullcontext if precision is not None and precision.dtype == torch.float16
                                 else self.autocast)
        self.fused = not batch_norm_layers(discriminator)

    def d_input(self, images: torch.Tensor) -> torch.Tensor:
        """What D sees of a batch: augmented, plus instance noise while it lasts."""
        images = self.augment(images)
        if self.instance_noise > 0:
            images = images + self.instance_noise * torch.randn_like(images)
        return images

    def discriminate(self, batches: list[torch.Tensor], labels: list[torch.Tensor | None], *,
                     penalty: bool = False) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        """D's float32 outputs for each batch (with its labels): [(B,) logits], and for an AC-GAN D
        [(B, K) class logits] (else Nones). One forward over all batches where D has no BatchNorm,
        one forward each otherwise. `penalty`: a gradient penalty will differentiate the logits
        twice, so the eager D, and float32 where the training precision is float16."""
        D = self.D if penalty else self.D_compiled
        projection, acgan = self.conditioning == "projection", self.conditioning == "acgan"
        options = {"return_classes": True} if acgan else {}
        with self.penalty_autocast() if penalty else self.autocast():
            if self.fused and len(batches) > 1:
                sizes = [b.shape[0] for b in batches]
                output = D(self.d_input(torch.cat(batches)), torch.cat(labels) if projection else None, **options)
                logits, classes = output if acgan else (output, None)
                return (list(logits.float().split(sizes)),
                        list(classes.float().split(sizes)) if acgan else [None] * len(batches))
            outputs = [D(self.d_input(b), c if projection else None, **options) for b, c in zip(batches, labels)]
        if acgan:
            return [o[0].float() for o in outputs], [o[1].float() for o in outputs]
        return [o.float() for o in outputs], [None] * len(batches)

    def discriminator_step(self, real: torch.Tensor, fake: torch.Tensor, d_step: int, scaler,
                           real_labels: torch.Tensor | None = None, fake_labels: torch.Tensor | None = None) -> dict:
        """Backward of the D loss (and its regularizers) for one batch. `fake` is detached here."""
        lazy_step = d_step % self.r1_interval == 0
        do_r1 = self.r1_gamma > 0 and lazy_step
        do_r2 = self.r2_gamma > 0 and lazy_step
        real = real.detach().requires_grad_(do_r1)
        fake = fake.detach().requires_grad_(do_r2)
        (real_logits, fake_logits), (real_classes, fake_classes) = self.discriminate(
            [real, fake], [real_labels, fake_labels], penalty=do_r1 or do_r2)
        loss = self.d_loss(real_logits, fake_logits, self.label_smoothing)
        stats = {"loss_d": loss.detach(), "d_real": real_logits.detach().mean(),
                 "d_fake": fake_logits.detach().mean()}
        if real_classes is not None:
            ac = ac_loss(real_classes, real_labels) + ac_loss(fake_classes, fake_labels)
            loss = loss + ac * self.ac_weight
            stats["ac_d"] = ac.detach()
            stats["ac_accuracy"] = (real_classes.detach().argmax(1) == real_labels).float().mean()
        if getattr(self.augment, "adaptive", False):
            self.augment.observe(real_logits, real.shape[0])
            stats["augment_p"] = torch.tensor(self.augment.p)
        if do_r1:  # Lazy: every r1_interval D steps, its weight times the interval.
            r1 = r1_penalty(real_logits, real)
            loss = loss + r1 * (self.r1_gamma / 2 * self.r1_interval)
            stats["r1"] = r1.detach()
        if do_r2:
            r2 = r1_penalty(fake_logits, fake)
            loss = loss + r2 * (self.r2_gamma / 2 * self.r1_interval)
            stats["r2"] = r2.detach()
        if self.lecam_weight > 0:
            lecam = lecam_penalty(real_logits, fake_logits, self.lecam_ema["real"], self.lecam_ema["fake"])
            loss = loss + lecam * self.lecam_weight
            stats["lecam"] = lecam.detach()
            for key, logits in (("real", real_logits), ("fake", fake_logits)):
                self.lecam_ema[key] = (self.lecam_decay * self.lecam_ema[key]
                                       + (1 - self.lecam_decay) * logits.detach().mean().item())
        if self.use_gp:
            D = self.D
            if self.conditioning == "projection":  # interpolates are scored with the real images' labels
                D = lambda x: self.D(x, real_labels)  # noqa: E731
            gp = gradient_penalty(D, real.detach(), fake.detach(), self.d_input)
            loss = loss + gp * self.gp_weight
            stats["gp"] = gp.detach()
        scaler.scale(loss).backward()
        return stats

    def generator_step(self, fake: torch.Tensor, scaler, real: torch.Tensor | None = None,
                       fake_labels: torch.Tensor | None = None, real_labels: torch.Tensor | None = None) -> dict:
        """Backward of the G loss through D for images G just made (with grad); relativistic losses
        also read D's logits of a real batch."""
        if self.relativistic:
            (fake_logits, real_logits), (fake_classes, _) = self.discriminate(
                [fake, real.detach()], [fake_labels, real_labels])
            loss = self.g_loss(fake_logits, real_logits)
        else:
            (fake_logits,), (fake_classes,) = self.discriminate([fake], [fake_labels])
            loss = self.g_loss(fake_logits)
        stats = {"loss_g": loss.detach(), "d_fake_g": fake_logits.detach().mean()}
        if fake_classes is not None:
            ac = ac_loss(fake_classes, fake_labels)
            loss = loss + ac * self.ac_weight
            stats["ac_g"] = ac.detach()
        scaler.scale(loss).backward()
        return stats

    def state_dict(self) -> dict:
        return {"lecam_ema": dict(self.lecam_ema)}

    def load_state_dict(self, state: dict) -> None:
        self.lecam_ema = dict(state.get("lecam_ema", self.lecam_ema))
