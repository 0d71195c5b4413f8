"""The DCGAN family (Radford et al. 2015), with the knobs of its modern descendants.

Generator: a latent vector becomes a 4x4 map through a transposed convolution, then each
stage doubles the resolution and halves the width; a last transposed convolution and tanh
give the image. Discriminator: the mirror image with strided convolutions. At 32 px the
widths are base*4 -> base*2 -> base, at 64 px base*8 -> ... -> base.

Optional: spectral normalization (Miyato et al. 2018) and no BatchNorm in D; a minibatch
standard-deviation channel before D's head (Karras et al. 2018); BatchNorm, InstanceNorm or no
norm in G; G's last layer as Radford's 4x4 transposed convolution or, as in SNGAN's and mimicry's
DCGAN, one more upsampling stage and a 3x3 convolution to RGB.

Class-conditional models (`num_classes > 0`): G concatenates a learned label embedding to z (the
conditional DCGAN of Mirza & Osindero 2014 and AC-GAN, Odena et al. 2017). D either adds a
projection term <embed(c), features> to its logit (Miyato & Koyama 2018, the SNGAN/BigGAN line)
or carries an auxiliary classifier head over the classes beside its real/fake head (AC-GAN).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm as apply_spectral_norm

from dcgan.choices import CONDITIONINGS, G_OUTPUTS


def _stage_count(img_resolution: int) -> int:
    if img_resolution not in (32, 64):
        raise ValueError(f"img_resolution must be 32 or 64, not {img_resolution}")
    return int(math.log2(img_resolution)) - 2  # 4 -> resolution in this many doublings


def _norm_2d(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}")


def init_dcgan_weights(module: nn.Module) -> None:
    """N(0, 0.02) for convolutions, N(1, 0.02) scale and zero shift for norms (Radford et al.)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
        # A spectral-norm layer's `weight` is computed on each access: initialize the stored original.
        parametrized = parametrize.is_parametrized(module, "weight")
        nn.init.normal_(module.parametrizations.weight.original if parametrized else module.weight, 0.0, 0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.InstanceNorm2d)) and module.affine:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)




class Generator(nn.Module):
    def __init__(self, *, z_dim: int = 100, img_resolution: int = 32, img_channels: int = 3,
                 base_channels: int = 64, norm: str = "batch", num_classes: int = 0, output: str = "deconv",
                 class_names: list[str] | None = None):
        super().__init__()
        if output not in G_OUTPUTS:
            raise ValueError(f"output must be one of {tuple(G_OUTPUTS)}, not {output!r}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        self.z_dim, self.img_resolution, self.img_channels = z_dim, img_resolution, img_channels
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        stages = _stage_count(img_resolution)
        if output == "conv3x3":  # Every stage upsamples; the full-resolution map has base_channels.
            stages += 1
        width = base_channels * 2 ** (stages - 1)
        self.embed = nn.Embedding(num_classes, z_dim) if num_classes else None  # (B,) -> (B, z_dim)
        in_dim = z_dim * 2 if num_classes else z_dim
        layers = [  # (B, in_dim, 1, 1) -> (B, width, 4, 4)
            nn.ConvTranspose2d(in_dim, width, 4, 1, 0, bias=norm == "none"),
            _norm_2d(norm, width), nn.ReLU(inplace=True),
        ]
        for _ in range(stages - 1):  # (B, w, r, r) -> (B, w/2, 2r, 2r)
            layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=norm == "none"),
                       _norm_2d(norm, width // 2), nn.ReLU(inplace=True)]
            width //= 2
        if output == "conv3x3":
            layers += [nn.Conv2d(width, img_channels, 3, 1, 1)]  # (B, base, res, res) -> (B, C, res, res)
        else:
            layers += [nn.ConvTranspose2d(width, img_channels, 4, 2, 1, bias=False)]  # (B, C, res, res)
        layers += [nn.Tanh()]
        self.main = nn.Sequential(*layers)
        self.apply(init_dcgan_weights)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """z: (B, z_dim) latents, c when conditional: (B,) class labels, or (B, num_classes) class
        weights (mixes of embeddings, to interpolate between classes) -> (B, C, res, res) in [-1, 1]."""
        if self.embed is not None:
            if c is None:
                raise ValueError("this generator is class-conditional: pass class labels c")
            embedding = c.to(self.embed.weight.dtype) @ self.embed.weight if c.is_floating_point() else self.embed(c)
            z = torch.cat([z, embedding.to(z.dtype)], dim=1)  # (B, 2 * z_dim)
        return self.main(z[:, :, None, None])


class MinibatchStd(nn.Module):
    """Karras et al. 2018: append the mean standard deviation of each feature over a group of
    `group_size` consecutive images as one more channel, so D can see a lack of variety. Groups are
    consecutive, so a batch of reals followed by fakes (a fused D forward) never mixes the two."""

    def __init__(self, group_size: int):
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        group = min(self.group_size, batch)
        if batch % group:
            group = math.gcd(batch, group)
        y = x.float().reshape(-1, group, channels, height, width)  # (B/g, g, C, H, W)
        y = (y - y.mean(dim=1, keepdim=True)).square().mean(dim=1).add(1e-8).sqrt()  # (B/g, C, H, W)
        y = y.mean(dim=[1, 2, 3]).to(x.dtype)  # (B/g,)
        y = y.repeat_interleave(group).view(batch, 1, 1, 1).expand(batch, 1, height, width)
        return torch.cat([x, y], dim=1)  # (B, C + 1, H, W)


class Discriminator(nn.Module):
    def __init__(self, *, img_resolution: int = 32, img_channels: int = 3, base_channels: int = 64,
                 norm: str = "batch", spectral_norm: bool = False, num_classes: int = 0, mbstd_group: int = 0,
                 conditioning: str = "projection"):
        super().__init__()
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {tuple(CONDITIONINGS)}, not {conditioning!r}")
        self.img_resolution, self.img_channels, self.num_classes = img_resolution, img_channels, num_classes
        self.conditioning = conditioning if num_classes else ""
        wrap = apply_spectral_norm if spectral_norm else (lambda m: m)
        stages = _stage_count(img_resolution)
        width = base_channels
        layers = [wrap(nn.Conv2d(img_channels, width, 4, 2, 1)),  # (B, base, res/2, res/2), no norm (Radford)
                  nn.LeakyReLU(0.2, inplace=True)]
        for _ in range(stages - 1):  # (B, w, r, r) -> (B, 2w, r/2, r/2)
            layers += [wrap(nn.Conv2d(width, width * 2, 4, 2, 1, bias=norm == "none")),
                       _norm_2d(norm, width * 2), nn.LeakyReLU(0.2, inplace=True)]
            width *= 2
        self.features = nn.Sequential(*layers)  # (B, width, 4, 4)
        self.mbstd = MinibatchStd(mbstd_group) if mbstd_group else None  # (B, width + 1, 4, 4)
        head_in = width + (1 if mbstd_group else 0)
        self.head = wrap(nn.Conv2d(head_in, 1, 4, 1, 0))  # (B, 1, 1, 1)
        # Projection: (B,) labels -> (B, width) embeddings; AC-GAN: (B, head_in, 4, 4) -> (B, K, 1, 1) class logits.
        self.embed = wrap(nn.Embedding(num_classes, width)) if self.conditioning == "projection" else None
        self.classifier = wrap(nn.Conv2d(head_in, num_classes, 4, 1, 0)) if self.conditioning == "acgan" else None
        self.apply(init_dcgan_weights)

    def blocks(self) -> list[list[nn.Module]]:
        """The feature blocks from the input on: each convolution with the norm and activation after it
        (what `--freeze-d N` keeps fixed, the first N of them)."""
        blocks: list[list[nn.Module]] = []
        for module in self.features:
            if isinstance(module, nn.Conv2d):
                blocks.append([])
            blocks[-1].append(module)
        return blocks

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None, return_classes: bool = False):
        """x: (B, C, res, res) in [-1, 1], c: (B,) labels (projection D) -> (B,) real/fake logits;
        with `return_classes` (AC-GAN D) also the (B, num_classes) class logits."""
        h = self.features(x)  # (B, width, 4, 4)
        head_input = self.mbstd(h) if self.mbstd is not None else h
        logits = self.head(head_input).flatten()  # (B,)
        if self.embed is not None:
            if c is None:
                raise ValueError("this discriminator is class-conditional: pass class labels c")
            logits = logits + (self.embed(c) * h.sum(dim=(2, 3))).sum(1)  # projection term
        if return_classes:
            if self.classifier is None:
                raise ValueError("this discriminator has no auxiliary classifier (it is not an AC-GAN D)")
            return logits, self.classifier(head_input).flatten(1)  # (B,), (B, num_classes)
        return logits
