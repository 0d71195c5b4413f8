"""Seeds -> latents -> images; grids, interpolation strips and GIFs.

Image i of a request with seeds [s0, s1, ...] comes from latent `randn(z_dim)` drawn from a
generator seeded with s_i alone, so an image depends only on its seed and the weights: the same
seed gives the same image in a grid of 64, on its own, from the CLI and from the web server.
A class-conditional generator's image i depends only on its seed and its class; asked for no
class, image i takes a class drawn uniformly from its seed alone (`labels_from_seeds`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dcgan.files import save_image

MAX_SEED = 2**63 - 1
CLASS_SEED_OFFSET = 0x5DEECE66D  # a class is drawn from its own stream, not from the latent's first numbers


MIN_TRUNCATION = 0.05  # below it, redrawing a component until it fits takes too many draws
MAX_TRUNCATION = 100.0  # beyond it, nothing a standard normal draws is truncated


def check_truncation(truncation: float | None) -> None:
    """A one-line UserError unless `truncation` is None or within MIN_TRUNCATION..MAX_TRUNCATION:
    the check of every place a user gives one (the CLI, the Python API, the server)."""
    from dcgan.errors import UserError

    if truncation is not None and not MIN_TRUNCATION <= truncation <= MAX_TRUNCATION:
        raise UserError(f"truncation must be between {MIN_TRUNCATION} and {MAX_TRUNCATION:g} (or none), "
                        f"not {truncation}")


def latents_from_seeds(seeds, z_dim: int, truncation: float | None = None) -> torch.Tensor:
    """(len(seeds), z_dim) standard normal latents, one independent generator per seed. With
    `truncation` T, each component beyond +-T is drawn again from the seed's generator until it
    falls within (BigGAN's truncation trick, Brock et al. 2019): a function of the seed alone, and
    the components already within +-T are those of the untruncated latent."""
    if truncation is not None and not truncation >= MIN_TRUNCATION:
        raise ValueError(f"truncation must be at least {MIN_TRUNCATION}, not {truncation}")
    return torch.stack([_latent(int(s), z_dim, truncation) for s in seeds])


def _latent(seed: int, z_dim: int, truncation: float | None) -> torch.Tensor:
    stream = torch.Generator().manual_seed(seed)
    z = torch.randn(z_dim, generator=stream)  # (z_dim,)
    outside = z.abs() > truncation if truncation is not None else None
    while outside is not None and outside.any():
        z[outside] = torch.randn(int(outside.sum()), generator=stream)
        outside = z.abs() > truncation
    return z


def labels_from_seeds(seeds, num_classes: int, weights: torch.Tensor | None = None) -> torch.Tensor:
    """(len(seeds),) int64 classes, each drawn from a generator seeded with its seed alone:
    uniformly, or in proportion to `weights` (K,) (classes "as in the data")."""
    def draw(seed: int) -> int:
        stream = torch.Generator().manual_seed((int(seed) + CLASS_SEED_OFFSET) % 2**63)
        if weights is None:
            return int(torch.randint(num_classes, (1,), generator=stream))
        return int(torch.multinomial(weights.double(), 1, generator=stream))

    return torch.tensor([draw(s) for s in seeds], dtype=torch.int64)


def is_conditional(generator: torch.nn.Module) -> bool:
    return getattr(generator, "num_classes", 0) > 0


def resolve_classes(generator: torch.nn.Module, requested) -> list[int]:
    """Class names or indices (strings or ints; "all" for every class) -> indices of `generator`'s
    classes. An unconditional generator, or a class it does not know, is a one-line UserError
    naming the valid classes."""
    from dcgan.data import class_index
    from dcgan.errors import UserError

    requested = [str(item).strip() for item in requested]
    if not is_conditional(generator):
        raise UserError(f"this model is not class-conditional (trained without --conditional); it takes no class, "
                        f"asked for {', '.join(requested)[:80]!r}")
    names = generator.class_names
    indices = []
    for item in requested:
        if item == "all":
            indices.extend(range(len(names)))
        else:
            indices.append(class_index(item, names, ", or all"))
    return list(dict.fromkeys(indices))


def class_labels(generator: torch.nn.Module, seeds, classes=None) -> torch.Tensor | None:
    """The labels of images `seeds` of a conditional generator (None for an unconditional one):
    `classes` None draws each from its seed, an int gives every image that class, a sequence one
    class per image."""
    if not is_conditional(generator):
        if classes is not None:
            raise ValueError("this generator is not class-conditional")
        return None
    if classes is None:
        return labels_from_seeds(seeds, generator.num_classes)
    if isinstance(classes, int):
        return torch.full((len(seeds),), classes, dtype=torch.int64)
    labels = torch.as_tensor(list(classes), dtype=torch.int64)
    if labels.shape != (len(seeds),):
        raise ValueError(f"{len(labels)} classes for {len(seeds)} seeds")
    return labels


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) in [-1, 1] -> uint8 in [0, 255], rounded."""
    return images.float().mul(127.5).add(127.5).round().clamp(0, 255).to(torch.uint8)


@torch.inference_mode()
def generate_from_latents(generator: torch.nn.Module, z: torch.Tensor, batch_size: int = 64,
                          labels: torch.Tensor | None = None) -> torch.Tensor:
    """(N, z_dim) latents (and (N,) labels, or (N, K) class weights, for a conditional generator)
    -> (N, C, H, W) uint8 on the CPU, in eval mode, batched."""
    if is_conditional(generator) and labels is None:
        raise ValueError("this generator is class-conditional: pass labels")
    device = next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    try:
        chunks = []
        for start in range(0, len(z), batch_size):
            c = labels[start:start + batch_size].to(device) if labels is not None else None
            chunks.append(to_uint8(generator(z[start:start + batch_size].to(device), c)).cpu())
    finally:
        generator.train(was_training)
    return torch.cat(chunks)


def generate_images(generator: torch.nn.Module, seeds, batch_size: int = 64, classes=None,
                    truncation: float | None = None) -> torch.Tensor:
    """Image i from seed i (and class i: see `class_labels`), its latent truncated at `truncation`."""
    return generate_from_latents(generator, latents_from_seeds(seeds, generator.z_dim, truncation), batch_size,
                                 labels=class_labels(generator, seeds, classes))


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between latents a, b: (z_dim,) each, t: (T,) -> (T, z_dim)."""
    a_unit, b_unit = a / a.norm(), b / b.norm()
    omega = torch.acos((a_unit * b_unit).sum().clamp(-1 + 1e-7, 1 - 1e-7))
    t = t[:, None]
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def interpolate(generator: torch.nn.Module, seed_from: int, seed_to: int, steps: int,
                class_from: int | None = None, class_to: int | None = None,
                truncation: float | None = None) -> torch.Tensor:
    """`steps` images along the slerp path between two seeds' latents: (steps, C, H, W) uint8.
    A conditional generator walks from class `class_from` to `class_to` too, by mixing the two
    class embeddings linearly (one class: within it; the same seed twice: from class to class).
    Classes left out are those seed_from would get."""
    a, b = latents_from_seeds([seed_from, seed_to], generator.z_dim, truncation)
    t = torch.linspace(0, 1, steps)
    weights = None
    if is_conditional(generator):
        if class_from is None:
            class_from = int(class_labels(generator, [seed_from])[0])
        class_to = class_from if class_to is None else class_to
        one_hot = torch.eye(generator.num_classes)
        weights = (1 - t)[:, None] * one_hot[class_from] + t[:, None] * one_hot[class_to]  # (steps, K)
    elif class_from is not None or class_to is not None:
        raise ValueError("this generator is not class-conditional")
    latents = slerp(a, b, t) if seed_from != seed_to else a.expand(steps, -1)
    return generate_from_latents(generator, latents, labels=weights)


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


def save_images(images: torch.Tensor, outdir: str | Path, seeds, class_names: list[str] | None = None,
                force: bool = False) -> list[Path]:
    """One PNG per image: seedNNNNNN.png, or seedNNNNNN-<class>.png with `class_names` (one per image).
    Into a folder that holds files of its own, only files dcgan wrote there are replaced
    (`dcgan.outputs.FolderOutput`); any other file in the way is refused before anything is written."""
    from dcgan.models import check_class_names
    from dcgan.outputs import FolderOutput

    if class_names:
        check_class_names(list(dict.fromkeys(class_names)), "the class names")
    names = [f"seed{int(seed):06d}{f'-{class_names[i]}' if class_names else ''}.png" for i, seed in enumerate(seeds)]
    output = FolderOutput(outdir, force=force).claim(names)
    paths = [output.write(name, lambda tmp, image=image: image_to_pil(image).save(tmp, format="PNG"))
             for name, image in zip(names, images)]
    output.finish()
    return paths


def save_gif(frames: list[Image.Image], path: str | Path, duration_ms: int = 200) -> None:
    options = dict(save_all=True, append_images=frames[1:], duration=duration_ms, loop=0)
    if isinstance(path, (str, Path)):
        save_image(frames[0], path, **options)  # a file: atomically
    else:
        frames[0].save(path, format="GIF", **options)  # a buffer (a web response)
