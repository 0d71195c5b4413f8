"""Datasets as one in-memory uint8 tensor, decoded once and cached on disk.

Every source (torchvision datasets, image folders) is turned into an `ImageData`: images
(N, C, H, W) uint8 at the training resolution, integer labels and class names. An epoch then
only indexes a tensor: no JPEG is decoded twice. `BatchStream` draws shuffled, flipped batches
from it with a state (epoch, position) that a checkpoint stores, so resume sees the same data.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import urllib.error
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from dcgan.errors import UserError
from dcgan.files import atomic_write, write_text

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".gif", ".tif", ".tiff")
TORCHVISION_CLASSES = {  # the torchvision class of each name in choices.DATASETS but folder
    "cifar10": "CIFAR10", "cifar100": "CIFAR100", "mnist": "MNIST",
                       "fashion-mnist": "FashionMNIST", "celeba": "CelebA"}
CACHE_VERSION = 2  # raised whenever decoding changes, so that older cache entries are not reused


@dataclass
class ImageData:
    images: torch.Tensor  # (N, C, H, W) uint8
    labels: torch.Tensor  # (N,) int64
    class_names: list[str]

    @property
    def resolution(self) -> int:
        return self.images.shape[-1]

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    def __len__(self) -> int:
        return self.images.shape[0]

    def with_present_classes(self) -> ImageData:
        """The same images, labels renumbered 0..K-1 over the classes present (a `--classes` subset
        in the dataset's order), and the names of those K classes: what a conditional model learns."""
        present = sorted(set(self.labels.tolist()))
        lookup = torch.full((max(len(self.class_names), max(present) + 1),), -1, dtype=torch.int64)
        lookup[present] = torch.arange(len(present))
        return ImageData(self.images, lookup[self.labels], [self.class_names[i] for i in present])


def cache_dir(kind: str = "data") -> Path:
    """~/.cache/dcgan/<kind> (or $DCGAN_CACHE/<kind>): decoded data, statistics, fast extractors."""
    return Path(os.environ.get("DCGAN_CACHE", Path.home() / ".cache" / "dcgan")) / kind


def load_dataset(name: str, root: str | Path, *, split: str = "train", classes: list[str] | None = None,
                 resolution: int = 0, channels: int = 0, download: bool = False,
                 use_cache: bool = True) -> ImageData:
    """Load a dataset as an `ImageData`, restricted to `classes` (names or indices).

    Args:
        name: cifar10, cifar100, mnist, fashion-mnist, celeba or folder.
        root: the data folder. For `folder`: root/<class>/*.png, with an optional train/ level.
        resolution: 32 or 64; 0 picks 64 for images of 64 px or more, else 32.
        channels: 1 or 3; 0 keeps the data's own (grayscale folders give 1).
    """
    root = Path(root).expanduser()
    if name == "folder":
        return _load_folder(root, split, classes, resolution, channels, use_cache)
    return _load_torchvision(name, root, split, classes, resolution, channels, download, use_cache)


# ----------------------------------------------------------------------------------------------
# Image folders.

def _folder_files(root: Path, split: str) -> tuple[Path, list[str], list[tuple[Path, int]]]:
    if not root.is_dir():
        raise UserError(f"data folder {root} does not exist; put images in {root}/<class>/*.png "
                        f"or pass --data-root")
    if (root / split).is_dir():
        root = root / split
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if class_dirs:
        class_names = [d.name for d in class_dirs]
    else:  # A flat folder of images is one class.
        class_dirs, class_names = [root], [root.name]
    files = []
    for label, class_dir in enumerate(class_dirs):
        for path in sorted(class_dir.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                files.append((path, label))
    if not files:
        raise UserError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {root}; "
                        f"put them in {root}/<class>/")
    return root, class_names, files


def test_folder_beside(root: str | Path) -> Path | None:
    """The test split of an image-folder dataset: root/test beside root/train, or a `test` folder
    next to a root named `train`; None if there is none."""
    root = Path(root).expanduser()
    if (root / "train").is_dir() and (root / "test").is_dir():
        return root / "test"
    if root.name == "train" and (root.parent / "test").is_dir():
        return root.parent / "test"
    return None


GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "F")
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I")
PROBE_SAMPLE = 256  # images of a folder read (headers only) to decide its resolution and channels
# The largest image decoded (a 40-megapixel photo; a JPEG is decoded at a reduced scale first):
# checked from the header, before any pixel is read, so that a small file declaring a huge image
# (a few-KB PNG of 500 megapixels) is refused instead of costing gigabytes.
MAX_PIXELS = 40_000_000
DECODE_THREADS = 4


def _check_size(path: Path, image: Image.Image) -> None:
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise UserError(f"cannot read image {path}: it is {width:,} x {height:,} pixels, more than "
                        f"{MAX_PIXELS // 1_000_000} megapixels; shrink it first")


def _probe(path: Path) -> tuple[int, int]:
    """(shorter side, channels) of an image, without decoding its pixels."""
    try:
        with Image.open(path) as image:
            _check_size(path, image)
            return min(image.size), 1 if image.mode in GREY_MODES else 3
    except UserError:
        raise
    except Exception as error:  # Pillow raises OSError, SyntaxError, EOFError, zlib.error, ... by format
        raise _image_error(path, error) from None


def _probe_folder(paths: list[Path]) -> tuple[int, int]:
    """(median shorter side, channels) of a folder from up to PROBE_SAMPLE images spread over it:
    colour if any of them is, so a grey first image does not make a colour folder grey."""
    sample = paths[::max(1, len(paths) // PROBE_SAMPLE)][:PROBE_SAMPLE]
    sizes, channels = zip(*map(_probe, sample))
    return sorted(sizes)[len(sizes) // 2], max(channels)


def _decode(path: Path, resolution: int, mode: str) -> tuple[np.ndarray, set[str]]:
    """An image as (resolution, resolution, C) uint8, upright by its EXIF orientation, 16-bit
    scaled (not clipped) to 8, transparency composited on white; and which of those it needed."""
    done = set()
    try:
        with Image.open(path) as image:
            _check_size(path, image)
            if image.format == "JPEG":  # decoded at 1/2, 1/4 or 1/8 scale where that still covers `resolution`
                image.draft(image.mode, (resolution, resolution))
            if image.getexif().get(EXIF_ORIENTATION, 1) not in (1, None):
                image, done = ImageOps.exif_transpose(image), done | {"rotated"}
            if image.mode in SIXTEEN_BIT_MODES:
                image, scaled = _to_8_bit(image)
                done |= {"16-bit"} if scaled else set()
            if image.mode in ("RGBA", "LA", "La", "RGBa", "PA") or (image.mode == "P" and "transparency" in image.info):
                image, done = _on_white(image), done | {"transparent"}
            image = image.convert(mode)
            if image.size != (resolution, resolution):
                image = _center_crop_resize(image, resolution)
            array = np.asarray(image, dtype=np.uint8)
    except UserError:
        raise
    except Exception as error:  # Pillow raises OSError, SyntaxError, EOFError, zlib.error, ... by format
        raise _image_error(path, error) from None
    return (array[:, :, None] if array.ndim == 2 else array), done


EXIF_ORIENTATION = 0x0112


def _to_8_bit(image: Image.Image) -> tuple[Image.Image, bool]:
    """A 16-bit (or 32-bit integer) grey image as 8-bit grey: 0-65535 scaled to 0-255 where its
    values exceed 255 (Pillow's convert("L") would clip them to white); whether it was scaled."""
    values = np.asarray(image)  # uint16 or int32: 2-4 bytes a pixel, converted a band of rows at a time
    scaled = values.size > 0 and values.max() > 255
    out = np.empty(values.shape, dtype=np.uint8)
    for top in range(0, values.shape[0], 256):
        band = values[top:top + 256].clip(0, 65535 if scaled else 255).astype(np.uint32)
        out[top:top + 256] = (band * 255 + 32767) // 65535 if scaled else band  # round(v / 257)
    return Image.fromarray(out, "L"), bool(scaled)


def _on_white(image: Image.Image) -> Image.Image:
    """Transparent pixels composited on white (convert("RGB") would drop alpha, showing what the
    transparent pixels happen to hold)."""
    background = Image.new("RGBA", image.size, (255, 255, 255, 255))
    background.alpha_composite(image.convert("RGBA"))
    return background.convert("RGB")


def _image_error(path: Path, error: Exception) -> UserError:
    """One line on an image file that does not decode."""
    try:
        empty = path.stat().st_size == 0
    except OSError:
        empty = False
    if empty:
        problem = "the file is empty (0 bytes)"
    elif isinstance(error, UnidentifiedImageError):  # its text repeats the path
        problem = f"it is not an image in a format Pillow reads ({', '.join(IMAGE_SUFFIXES)})"
    elif "truncated" in str(error) or isinstance(error, EOFError):
        problem = "the image is truncated"
    else:
        text = str(error).strip()
        problem = f"the image is corrupt ({(text.splitlines()[0] if text else type(error).__name__)[:120]})"
    return UserError(f"cannot read image {path}: {problem}; remove or replace it")


def _center_crop_resize(image: Image.Image, resolution: int) -> Image.Image:
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    return image.resize((resolution, resolution), Image.Resampling.BICUBIC, reducing_gap=2.0)


def _load_folder(root: Path, split: str, classes, resolution: int, channels: int, use_cache: bool) -> ImageData:
    root, class_names, files = _folder_files(root, split)
    keep = _class_indices(classes, class_names)
    files = [(p, label) for p, label in files if label in keep]
    if not files:
        raise UserError(f"no images in the class folder(s) {', '.join(class_names[i] for i in sorted(keep))} "
                        f"under {root}")
    detected_size, detected_channels = _probe_folder([p for p, _ in files])
    resolution = resolution or (64 if detected_size >= 64 else 32)
    channels = channels or detected_channels
    stats = [(str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p, _ in files]
    key = _cache_key("folder", str(root.resolve()), resolution, channels, sorted(keep), stats)

    def decode_all() -> ImageData:
        mode = "L" if channels == 1 else "RGB"
        with ThreadPoolExecutor(max_workers=min(DECODE_THREADS, os.cpu_count() or 1)) as pool:
            decoded = list(pool.map(lambda pl: _decode(pl[0], resolution, mode), files, chunksize=64))
        say_what_was_done(root, [done for _, done in decoded], channels, detected_channels)
        images = torch.from_numpy(np.stack([array for array, _ in decoded])).permute(0, 3, 1, 2).contiguous()
        labels = torch.tensor([label for _, label in files], dtype=torch.int64)
        return ImageData(images, labels, class_names)

    return _cached(key, decode_all, use_cache)


def say_what_was_done(root: Path, done: list[set[str]], channels: int, detected_channels: int) -> None:
    """One line on what decoding changed in a folder's images, if anything did."""
    counts = {what: sum(what in d for d in done) for what in ("rotated", "16-bit", "transparent")}
    words = {"rotated": "turned upright by their EXIF orientation", "16-bit": "16-bit, scaled to 8-bit",
             "transparent": "transparent, composited on white"}
    parts = [f"{count:,} {words[what]}" for what, count in counts.items() if count]
    if channels == 1 and detected_channels == 3:
        parts.append("colour images made grey (--channels 1)")
    if parts:
        print(f"{root}: {'; '.join(parts)}", flush=True)


# ----------------------------------------------------------------------------------------------
# torchvision datasets.



def _download_failed(name: str, root: Path, why, offline: bool) -> UserError:
    """The one line for a torchvision download that failed: why, and the folder to fill by hand."""
    return UserError(f"cannot download {name} ({why}); {'with no internet, ' if offline else ''}put the dataset in "
                     f"{root} (torchvision's layout: what `torchvision.datasets.{TORCHVISION_CLASSES[name]}"
                     f"(root='{root}', download=True)` fetches) and run again")


def _load_torchvision(name, root: Path, split, classes, resolution, channels, download, use_cache) -> ImageData:
    import torchvision.datasets as tvd

    if split not in ("train", "test") and name != "celeba":
        raise UserError(f"--split for {name} must be train or test, not {split!r}")
    resolution = resolution or (64 if name == "celeba" else 32)
    key = _cache_key(name, str(root.resolve()), split, resolution, channels, list(classes or []))

    def decode_all() -> ImageData:
        dataset_class = getattr(tvd, TORCHVISION_CLASSES[name])
        try:
            if name == "celeba":
                dataset = dataset_class(str(root), split=split, target_type=[], download=download)
            else:
                dataset = dataset_class(str(root), train=(split == "train"), download=download)
        except RuntimeError as error:  # torchvision: "Dataset not found or corrupted. ..." or "Error downloading ..."
            if download and "download" in str(error).lower():  # MNIST's mirrors all failed
                raise _download_failed(name, root, str(error).splitlines()[0].rstrip(":"), offline=True) from None
            hint = " (or drop --no-download to let torchvision fetch it)" if not download else ""
            raise UserError(f"{name} not found under {root} ({str(error).splitlines()[0]}); put it there "
                            f"in torchvision's layout or pass --data-root{hint}") from None
        except Exception as error:  # offline (URLError, a refused connection), a full disk, CelebA's Drive quota
            why = getattr(error, "reason", None) or getattr(error, "strerror", None) or \
                (str(error).splitlines() or [type(error).__name__])[0]
            if not download:
                if isinstance(error, OSError):
                    raise UserError(f"cannot read {name} under {root} ({why})") from None
                raise
            offline = isinstance(error, (urllib.error.URLError, ConnectionError, TimeoutError, socket.gaierror))
            raise _download_failed(name, root, why, offline) from None
        if name == "celeba":
            class_names = ["face"]
            labels = torch.zeros(len(dataset), dtype=torch.int64)
            keep = _class_indices(classes, class_names)
            paths = [Path(dataset.root) / dataset.base_folder / "img_align_celeba" / f for f in dataset.filename]
            mode = "L" if channels == 1 else "RGB"
            with ThreadPoolExecutor(max_workers=min(DECODE_THREADS, os.cpu_count() or 1)) as pool:
                arrays = [array for array, _ in pool.map(lambda p: _decode(p, resolution, mode), paths,
                                                         chunksize=64)]
            images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
            return ImageData(images, labels, class_names)
        class_names = list(dataset.classes)
        keep = _class_indices(classes, class_names)
        data = torch.as_tensor(np.asarray(dataset.data))
        labels = torch.as_tensor(np.asarray(dataset.targets), dtype=torch.int64)
        mask = torch.isin(labels, torch.tensor(sorted(keep)))
        data, labels = data[mask], labels[mask]
        images = data.unsqueeze(1) if data.ndim == 3 else data.permute(0, 3, 1, 2)  # (N, C, H, W)
        if images.shape[1] == 1 and channels == 3:
            images = images.expand(-1, 3, -1, -1)
        elif images.shape[1] == 3 and channels == 1:
            weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images.float() * weights).sum(1, keepdim=True).round().to(torch.uint8)
        if images.shape[-1] != resolution:
            images = resize_uint8(images, resolution)
        return ImageData(images.contiguous(), labels, class_names)

    return _cached(key, decode_all, use_cache)


def resize_uint8(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Antialiased bilinear resize of a uint8 batch, in chunks to bound memory."""
    out = []
    for chunk in images.split(4096):
        resized = F.interpolate(chunk.float(), size=(resolution, resolution), mode="bilinear",
                                antialias=True, align_corners=False)
        out.append(resized.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)


# ----------------------------------------------------------------------------------------------
# Class filter and cache.

def class_index(item, class_names: list[str], alternatives: str = "") -> int:
    """A class name or index (a string or an int) -> its index in `class_names`; anything else is a
    one-line UserError naming the valid classes (and `alternatives`, such as ", or all")."""
    item = str(item).strip()
    if item in class_names:
        return class_names.index(item)
    if item.isascii() and item.isdigit() and int(item) < len(class_names):  # not '²', which int() rejects
        return int(item)
    raise UserError(f"unknown class {item[:40]!r}; valid classes: {', '.join(class_names)} "
                    f"(or indices 0-{len(class_names) - 1}{alternatives})")


def _class_indices(classes, class_names: list[str]) -> set[int]:
    if not classes:
        return set(range(len(class_names)))
    return {class_index(item, class_names) for item in classes}


def _cache_key(*parts) -> str:
    blob = json.dumps([CACHE_VERSION, *parts], sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def _cached(key: str, build, use_cache: bool) -> ImageData:
    """Return the decoded data for `key` from the disk cache, building and saving it if absent."""
    from safetensors.torch import load_file, save_file

    path = cache_dir() / f"{key}.safetensors"
    if use_cache and path.is_file():
        try:
            tensors = load_file(str(path))
            meta = json.loads(path.with_suffix(".json").read_text())
            images, labels, class_names = tensors["images"], tensors["labels"], list(meta["class_names"])
            if (images.dtype == torch.uint8 and images.ndim == 4 and labels.shape == (len(images),)
                    and labels.dtype == torch.int64 and all(isinstance(name, str) for name in class_names)):
                return ImageData(images, labels, class_names)
        except Exception:  # A damaged cache entry (truncated, garbage, foreign) is rebuilt, never trusted.
            pass
    data = build()
    if use_cache:  # the metadata first: the tensors' file is what marks the entry as present
        tensors = {"images": data.images.contiguous(), "labels": data.labels.contiguous()}
        try:
            write_text(path.with_suffix(".json"), json.dumps({"class_names": data.class_names}))
            atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))
        except UserError as error:  # a full disk: train from memory, decode again next time
            print(f"note: the decoded data is not cached: {error}", flush=True)
    return data


# ----------------------------------------------------------------------------------------------
# Batches.

class BatchStream:
    """Endless shuffled batches in [-1, 1], reproducible from (seed, epoch, position).

    Each epoch's order and flips come from a generator seeded with (seed, epoch), so the
    stream's whole state is two integers. With `world_size > 1` each rank takes every
    world_size-th index of the shared permutation. The last incomplete batch is dropped.
    """

    def __init__(self, data: ImageData, batch_size: int, *, seed: int, device: torch.device,
                 hflip: bool = True, rank: int = 0, world_size: int = 1):
        per_rank = len(data) // world_size
        if per_rank < batch_size:
            raise UserError(f"the dataset has {len(data)} images, fewer than one batch of {batch_size} "
                            f"per process; lower --batch-size")
        self.images = data.images.to(device)
        self.labels = data.labels.to(device)
        self.batch_size, self.seed, self.hflip = batch_size, seed, hflip
        self.rank, self.world_size = rank, world_size
        self.batches_per_epoch = per_rank // batch_size
        self.epoch, self.position = 0, 0
        self._start_epoch()

    def _start_epoch(self) -> None:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(len(self.images), generator=generator)
        flips = torch.rand(len(self.images), generator=generator) < 0.5
        self.order = order[self.rank::self.world_size].to(self.images.device)
        self.flips = flips[self.rank::self.world_size].to(self.images.device)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._start_epoch()

    def __iter__(self):
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.position >= self.batches_per_epoch:
            self.epoch, self.position = self.epoch + 1, 0
            self._start_epoch()
        start = self.position * self.batch_size
        index = self.order[start:start + self.batch_size]
        self.position += 1
        images = self.images[index]  # (B, C, H, W) uint8
        if self.hflip:
            flip = self.flips[start:start + self.batch_size].view(-1, 1, 1, 1)
            images = torch.where(flip, images.flip(3), images)
        return images.float().div_(127.5).sub_(1.0), self.labels[index]
