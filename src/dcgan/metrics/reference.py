"""Reference image sets and their cached statistics.

`--ref` names a reference set:

    cifar10-train, cifar10-test, mnist-test, ...   a torchvision dataset split under --data-root
    path/to/folder                                  an image folder (root/<class>/*.png)
    path/to/stats.npz                               saved statistics: this toolkit's, or pytorch-fid's (mu, sigma)

The statistics of a real set are computed once per (data, split, classes, resolution, extractor,
weights) and cached under ~/.cache/dcgan/stats (or $DCGAN_CACHE/stats) as a plain `.npz` (no
pickle), written atomically. Each file carries its metadata, and a file is used only where its
metadata matches what is asked for.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from dcgan.checkpoint import atomic_write, describe_file, reason
from dcgan.choices import DATASETS
from dcgan.data import ImageData, cache_dir, load_dataset
from dcgan.errors import UserError
from dcgan.metrics.features import FeatureExtractor, FeatureSet, image_batches

STATS_FORMAT = "dcgan-stats-v1"
CHUNK = 2048  # images of features saved at a time while a large set is extracted


@dataclass
class RealSource:
    """A set of real images: a torchvision dataset split or an image folder, maybe some classes."""

    dataset: str  # cifar10, ..., or folder
    root: str
    split: str = "train"
    classes: list[str] = field(default_factory=list)
    download: bool = False

    @property
    def name(self) -> str:
        base = f"{self.dataset}-{self.split}" if self.dataset != "folder" else f"folder {self.root}"
        return base + (f" [{', '.join(self.classes)}]" if self.classes else "")

    def load(self, resolution: int = 0, channels: int = 0) -> ImageData:
        return load_dataset(self.dataset, self.root, split=self.split, classes=self.classes,
                            resolution=resolution, channels=channels, download=self.download)

    def describe(self) -> dict:
        root = str(Path(self.root).expanduser().resolve())
        return {"dataset": self.dataset, "root": root, "split": self.split, "classes": list(self.classes)}


def parse_reference(spec: str, *, data_root: str = "data", classes: list[str] | None = None,
                    download: bool = False, what: str = "reference") -> RealSource | Path:
    """A reference as every command and the API write it -> a RealSource, or the Path of a statistics
    file: a dataset split (`cifar10-train`, `cifar10-test`), an image folder, or a .npz statistics
    file. `what` names the argument in messages (`--ref`, `--real`, `training`)."""
    classes = list(classes or [])
    path = Path(spec).expanduser()
    if spec.endswith(".npz"):
        if not path.is_file():
            raise UserError(f"statistics file not found: {path}")
        if classes:
            raise UserError(f"{what} {spec}: classes do not apply to a statistics file (its classes are fixed)")
        return path
    if path.is_dir():
        return RealSource("folder", str(path), "train", classes)
    for name in sorted(DATASETS, key=len, reverse=True):  # fashion-mnist before mnist
        if name != "folder" and spec.startswith(name + "-"):
            return RealSource(name, data_root, spec[len(name) + 1:], classes, download)
    raise UserError(f"{what} {spec!r} is not a dataset split (e.g. cifar10-train, cifar10-test), an existing "
                    f"image folder or a .npz statistics file")


def stats_dir() -> Path:
    return cache_dir("stats")


def data_identity(source: RealSource, data: ImageData) -> dict:
    """What identifies a real set: where it came from and a hash of its uint8 pixels."""
    pixels = hashlib.sha256(memoryview(data.images.contiguous().numpy()).cast("B")).hexdigest()
    return {**source.describe(), "resolution": data.resolution, "channels": data.channels,
            "num_images": len(data), "images_sha256": pixels}


def reference_features(extractor: FeatureExtractor, source: RealSource, data: ImageData, *, batch_size: int = 64,
                       use_cache: bool = True, progress: bool = True) -> FeatureSet:
    """Features and statistics of a real set, from the cache or computed (and cached) now."""
    metadata = {"format": STATS_FORMAT, "extractor": extractor.identity(), "data": data_identity(source, data)}
    key = hashlib.sha256(json.dumps(metadata, sort_keys=True).encode()).hexdigest()[:24]
    path = stats_dir() / f"{key}.npz"
    if use_cache and path.is_file():
        try:
            return load_stats(path, metadata)
        except UserError:  # Damaged or foreign: recompute, never trust it.
            pass
    partial = stats_dir() / f"{key}.partial" if use_cache else None
    features = chunked_features(extractor, len(data),
                                lambda start, stop: image_batches(data.images[start:stop], batch_size), partial,
                                desc=f"{extractor.label} features of {source.name}", progress=progress)
    result = FeatureSet.from_features(features, metadata=metadata)
    if use_cache:
        save_stats(path, result)
        shutil.rmtree(partial, ignore_errors=True)
    return result


def chunked_features(extractor: FeatureExtractor, total: int,
                     batches: Callable[[int, int], Iterable[torch.Tensor]], partial: Path | None, *,
                     desc: str, progress: bool) -> np.ndarray:
    """(total, D) features of the images `batches(start, stop)` streams, CHUNK images at a time. With
    a `partial` folder, each chunk is saved there as it is done, and a chunk already there is read
    instead: a killed extraction of a large set goes on where it stopped (the folder's name is the
    hash of what is extracted and the weights, so it cannot mix sets)."""
    features = np.empty((total, extractor.feature_dim), np.float32)
    with tqdm(total=total, desc=desc, unit="img", disable=not progress, leave=False, dynamic_ncols=True) as bar:
        for start in range(0, total, CHUNK):
            stop = min(start + CHUNK, total)
            chunk_path = partial / f"{start:09d}-{stop:09d}.npy" if partial is not None else None
            chunk = read_chunk(chunk_path, (stop - start, extractor.feature_dim))
            if chunk is None:
                chunk = np.empty((stop - start, extractor.feature_dim), np.float32)
                done = 0
                for batch in batches(start, stop):
                    chunk[done:done + len(batch)] = extractor(batch)[0].numpy()
                    done += len(batch)
                    bar.update(len(batch))
                if done != stop - start:
                    raise ValueError(f"images {start}-{stop}: the stream held {done} images, not {stop - start}")
                if chunk_path is not None:
                    save_chunk(chunk_path, chunk)
            else:
                bar.update(stop - start)
            features[start:stop] = chunk
    return features


def save_chunk(path: Path, chunk: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # np.save would add `.npy` to the temporary name
            np.save(handle, chunk)

    atomic_write(path, write)


def declared_npy_bytes(handle) -> int | None:
    """The bytes the .npy array at `handle` declares (from its header alone), or None if it has no
    valid header: checked against the file before numpy allocates the declared shape."""
    try:
        version = np.lib.format.read_magic(handle)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}[version]
        shape, _, dtype = read_header(handle, max_header_size=10_000)
    except Exception:  # not a .npy header
        return None
    if dtype.hasobject:
        return None
    count = 1
    for extent in shape:
        count *= extent
    return count * dtype.itemsize


def npz_fits(path: Path, limit: int) -> bool:
    """Whether every array of an .npz declares no more bytes than its member holds, and all of them
    together at most `limit`: a small file that declares a huge array (a compressed member of
    zeros, a header with a giant shape) is refused before anything is allocated."""
    import zipfile

    total = 0
    with zipfile.ZipFile(path) as archive:
        for member in archive.infolist():
            if member.file_size > limit or member.file_size > 64 * member.compress_size + (1 << 20):
                return False
            with archive.open(member) as handle:
                declared = declared_npy_bytes(handle)
            if declared is None or declared > member.file_size:
                return False
            total += declared
    return total <= limit


# The largest statistics file read: a 100,000-image reference's Inception features (819 MB) and more.
MAX_STATS_BYTES = 1 << 30


def read_chunk(path: Path | None, shape: tuple[int, int]) -> np.ndarray | None:
    """A saved chunk of features, or None if there is none or it is damaged (then it is recomputed)."""
    if path is None or not path.is_file():
        return None
    try:
        with open(path, "rb") as handle:
            declared = declared_npy_bytes(handle)
        if declared is None or declared != shape[0] * shape[1] * 4 or declared > path.stat().st_size:
            return None
        chunk = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return chunk if chunk.shape == shape and chunk.dtype == np.float32 else None


def save_stats(path: Path, stats: FeatureSet) -> None:
    arrays = {"mu": stats.mu, "sigma": stats.sigma, "metadata": np.array(json.dumps(stats.metadata))}
    if stats.features is not None:
        arrays["features"] = stats.features

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)

    atomic_write(path, write)


def load_stats(path: Path, expected: dict | None = None) -> FeatureSet:
    """Read a statistics file; with `expected`, refuse it unless its metadata matches, naming the difference.

    Files without metadata (pytorch-fid's `mu`/`sigma` files) load with empty metadata when no
    `expected` is given.
    """
    path = Path(path)
    wanted = "a statistics .npz (mu, sigma) written by this toolkit or pytorch-fid"
    what = describe_file(path)
    if what == "empty (0 bytes)":
        raise UserError(f"{path} is empty (0 bytes); expected {wanted}")
    if what != "a zip archive":  # np.load would try pickle, or return one .npy array
        raise UserError(f"{path} is not a statistics file: it is {what}; expected {wanted}")
    try:
        fits = npz_fits(path, MAX_STATS_BYTES)
    except Exception:
        fits = None
    if fits is False:
        raise UserError(f"{path} declares arrays larger than it holds, or more than {MAX_STATS_BYTES >> 20} MB "
                        f"in all; expected {wanted}")
    try:
        if fits is None:
            raise ValueError("not a readable zip")
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except Exception:  # zipfile's and numpy's own text (allow_pickle, CRC) says nothing more to a user
        raise UserError(f"{path} is not a readable statistics file: it is truncated or corrupt; "
                        f"expected {wanted}") from None
    if not all(isinstance(arrays.get(name), np.ndarray) for name in ("mu", "sigma")):
        raise UserError(f"{path} holds no 'mu' and 'sigma' arrays: not a statistics file; expected {wanted}")
    try:
        metadata = json.loads(str(arrays["metadata"])) if "metadata" in arrays else {}
    except ValueError as error:
        raise UserError(f"{path}: its metadata is not valid JSON ({reason(error)}); expected {wanted}") from None
    if not isinstance(metadata, dict):
        raise UserError(f"{path}: its metadata is a {type(metadata).__name__}, not a mapping; expected {wanted}")
    if expected is not None:
        check_metadata(metadata, expected, path)
    try:
        mu, sigma = arrays["mu"].astype(np.float64), arrays["sigma"].astype(np.float64)
    except (TypeError, ValueError) as error:
        raise UserError(f"{path}: mu and sigma are not numbers ({reason(error)}); expected {wanted}") from None
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise UserError(f"{path}: mu {mu.shape} and sigma {sigma.shape} do not fit together")
    features = arrays.get("features")
    try:
        count = int(metadata.get("data", {}).get("num_images", len(features) if features is not None else 0))
    except (AttributeError, TypeError, ValueError):
        raise UserError(f"{path}: its metadata has no valid data.num_images; expected {wanted}") from None
    return FeatureSet(mu, sigma, count, features, None, metadata)


def check_metadata(found: dict, expected: dict, path: Path, prefix: str = "") -> None:
    """Raise a one-line UserError naming the first field where `found` differs from `expected`."""
    for key, value in expected.items():
        if isinstance(value, dict) and isinstance(found.get(key), dict):
            check_metadata(found[key], value, path, f"{prefix}{key}.")
        elif found.get(key) != value:
            raise UserError(f"statistics {path} were computed with {prefix}{key}={found.get(key)!r}, "
                            f"not {value!r}; refusing to compare them")
