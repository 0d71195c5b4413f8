"""Seeds -> latents -> images; grids, interpolation strips and GIFs.

Image i of a request with seeds [s0, s1, ...] comes from latent `randn(z_dim)` drawn from a
generator seeded with s_i alone, so an image depends only on its seed and the weights: the same
seed gives the same image in a grid of 64, on its own, from the CLI and from the web server.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dcgan.files import save_image

MAX_SEED = 2**63 - 1


def latents_from_seeds(seeds, z_dim: int) -> torch.Tensor:
    """(len(seeds), z_dim) standard normal latents, one independent generator per seed."""
    return torch.stack([torch.randn(z_dim, generator=torch.Generator().manual_seed(int(s))) for s in seeds])


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) in [-1, 1] -> uint8 in [0, 255], rounded."""
    return images.float().mul(127.5).add(127.5).round().clamp(0, 255).to(torch.uint8)


@torch.inference_mode()
def generate_from_latents(generator: torch.nn.Module, z: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """(N, z_dim) latents -> (N, C, H, W) uint8 on the CPU, in eval mode, batched."""
    device = next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    try:
        chunks = [to_uint8(generator(chunk.to(device))).cpu() for chunk in z.split(batch_size)]
    finally:
        generator.train(was_training)
    return torch.cat(chunks)


def generate_images(generator: torch.nn.Module, seeds, batch_size: int = 64) -> torch.Tensor:
    return generate_from_latents(generator, latents_from_seeds(seeds, generator.z_dim), batch_size)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between latents a, b: (z_dim,) each, t: (T,) -> (T, z_dim)."""
    a_unit, b_unit = a / a.norm(), b / b.norm()
    omega = torch.acos((a_unit * b_unit).sum().clamp(-1 + 1e-7, 1 - 1e-7))
    t = t[:, None]
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def interpolate(generator: torch.nn.Module, seed_from: int, seed_to: int, steps: int) -> torch.Tensor:
    """`steps` images along the slerp path between two seeds' latents: (steps, C, H, W) uint8."""
    a, b = latents_from_seeds([seed_from, seed_to], generator.z_dim)
    return generate_from_latents(generator, slerp(a, b, torch.linspace(0, 1, steps)))


def make_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2) -> np.ndarray:
    """(N, C, H, W) uint8 -> (H', W', C) uint8 grid with `nrow` images per row."""
    import torchvision.utils

    nrow = nrow or max(1, int(math.ceil(math.sqrt(images.shape[0]))))
    grid = torchvision.utils.make_grid(images, nrow=nrow, padding=padding, pad_value=255)
    grid = grid.permute(1, 2, 0).numpy()
    return grid[:, :, :1] if images.shape[1] == 1 else grid


def to_pil(array: np.ndarray) -> Image.Image:
    """(H, W, C) uint8 array -> PIL image (grayscale for one channel)."""
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)


def image_to_pil(image: torch.Tensor) -> Image.Image:
    """One (C, H, W) uint8 image -> PIL image."""
    return to_pil(image.permute(1, 2, 0).numpy())


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> None:
    save_image(to_pil(make_grid(images, nrow)), path)


def save_images(images: torch.Tensor, outdir: str | Path, seeds) -> list[Path]:
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for image, seed in zip(images, seeds):
        path = outdir / f"seed{int(seed):06d}.png"
        image_to_pil(image).save(path)
        paths.append(path)
    return paths


def save_gif(frames: list[Image.Image], path: str | Path, duration_ms: int = 200) -> None:
    options = dict(save_all=True, append_images=frames[1:], duration=duration_ms, loop=0)
    if isinstance(path, (str, Path)):
        save_image(frames[0], path, **options)  # a file: atomically
    else:
        frames[0].save(path, format="GIF", **options)  # a buffer (a web response)
