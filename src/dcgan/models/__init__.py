"""Model families by name. Each family supplies a generator and a discriminator class that take
explicit keyword arguments only; `build_generator`/`build_discriminator` are the factory."""

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


def generator_kwargs(config, resolution: int, channels: int) -> dict:
    """The generator's constructor arguments for a training config and the data's shape."""
    return dict(z_dim=config.z_dim, img_resolution=resolution, img_channels=channels,
                base_channels=config.g_channels, norm=config.g_norm, num_classes=0, output=config.g_output)


def discriminator_kwargs(config, resolution: int, channels: int) -> dict:
    return dict(img_resolution=resolution, img_channels=channels, base_channels=config.d_channels,
                norm=config.d_norm, spectral_norm=config.spectral_norm, num_classes=0,
                mbstd_group=config.d_mbstd)
