"""Model families by name: the one registry that training, `dcgan summary`, the generator loader
(and so generate, evaluate, serve and export) share. Each family supplies a generator and a
discriminator class that take explicit keyword arguments only; `build_generator` /
`build_discriminator` are the factory. Every generator file records its family, and a file of a
family this registry lacks is refused on load in one line."""

from __future__ import annotations

import torch.nn as nn

from dcgan.models import dcgan

MODEL_FAMILIES = {
    "dcgan": (dcgan.Generator, dcgan.Discriminator),
}


def build_generator(family: str = "dcgan", **kwargs) -> nn.Module:
    return MODEL_FAMILIES[family][0](**kwargs)


def build_discriminator(family: str = "dcgan", **kwargs) -> nn.Module:
    return MODEL_FAMILIES[family][1](**kwargs)


def batch_norm_layers(module: nn.Module) -> list[nn.Module]:
    """The BatchNorm layers of a network (what decides a fused D forward and standing statistics)."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def generator_kwargs(config, resolution: int, channels: int, class_names: list[str] | None = None) -> dict:
    """The generator's constructor arguments for a training config and the data's shape; a
    conditional config (`--conditional`) gets one class per name in `class_names`."""
    conditional = bool(config.conditional and class_names)
    kwargs = dict(z_dim=config.z_dim, img_resolution=resolution, img_channels=channels,
                  base_channels=config.g_channels, norm=config.g_norm,
                  num_classes=len(class_names) if conditional else 0, output=config.g_output)
    if conditional:
        kwargs["class_names"] = list(class_names)
    return kwargs


def discriminator_kwargs(config, resolution: int, channels: int, num_classes: int = 0) -> dict:
    kwargs = dict(img_resolution=resolution, img_channels=channels, base_channels=config.d_channels,
                  norm=config.d_norm, spectral_norm=config.spectral_norm,
                  num_classes=num_classes if config.conditional else 0, mbstd_group=config.d_mbstd)
    if config.conditional and num_classes:
        kwargs["conditioning"] = config.conditional
    return kwargs
