"""Model families by name: the one registry that training, `dcgan summary`, the generator loader
(and so generate, evaluate, serve and export) share. Each family supplies a generator and a
discriminator class that take explicit keyword arguments only; `build_generator` /
`build_discriminator` are the factory. Every generator file records its family, and a file of a
family this registry lacks is refused on load in one line."""

from __future__ import annotations

import unicodedata

import torch.nn as nn

from dcgan.errors import UserError
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


MAX_CLASS_NAME = 100  # characters


def check_class_names(names, what: str) -> None:
    """Class names become file names (seed000007-horse.png) and page text: each must be a string of
    1-100 characters without a path separator, `..` or a control character; else one line."""
    if not isinstance(names, list):
        raise UserError(f"{what}: class_names is a {type(names).__name__}, not a list")
    for name in names:
        problem = None
        if not isinstance(name, str):
            problem = f"is a {type(name).__name__}, not a string"
        elif not 1 <= len(name) <= MAX_CLASS_NAME:
            problem = f"has {len(name)} characters (1 to {MAX_CLASS_NAME})"
        elif "/" in name or "\\" in name or ".." in name:
            problem = "holds a path separator or '..'"
        elif any(unicodedata.category(c).startswith("C") for c in name):
            problem = "holds a control character"
        if problem:
            raise UserError(f"{what}: the class name {str(name)[:40]!r} {problem}; the file is damaged or was "
                            f"not written by dcgan")
