"""A fast feature extractor for monitoring training on a CPU.

Inception features cost a tenth to a third of a second per image on a laptop CPU, so a FID-10k
takes most of an hour. This module trains, once per dataset, a compact CNN classifier (six 3x3
convolutions, 0.58M parameters for 10 classes) on the dataset's labelled training split and uses
its globally pooled last layer (256 features) and its logits in Inception's place: about 2,500
images/s on two CPU cores. Scores on these features are named `fid_fast`, `kid_fast`, `is_fast`:
they rank checkpoints of one run, they are not FID and are not comparable with published numbers.

The extractor is a safetensors file under ~/.cache/dcgan/features (or $DCGAN_CACHE/features), with
its architecture, the data it learned from and its held-out test accuracy in the metadata.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from dcgan import __version__
from dcgan.checkpoint import atomic_write, build_checked, load_state_checked, read_safetensors, reason
from dcgan.data import ImageData, cache_dir, load_dataset, resize_uint8, test_folder_beside
from dcgan.errors import UserError
from dcgan.files import file_sha256

NAME = "dcgan-fast-v1"
FORMAT = "dcgan-fast-extractor-v1"


class FastClassifier(nn.Module):
    """Images in [-1, 1] -> pooled features (B, 8 * base) and class logits (B, num_classes)."""

    def __init__(self, *, img_channels: int = 3, num_classes: int = 10, base_channels: int = 32):
        super().__init__()
        self.img_channels, self.num_classes = img_channels, num_classes
        widths = [base_channels, base_channels * 2, base_channels * 2, base_channels * 4, base_channels * 4,
                  base_channels * 8]
        strides = [1, 2, 1, 2, 1, 2]
        layers, in_channels = [], img_channels
        for width, stride in zip(widths, strides):  # at 32 px: (B, 32, 32, 32) -> ... -> (B, 256, 4, 4)
            layers += [nn.Conv2d(in_channels, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
            in_channels = width
        self.body = nn.Sequential(*layers)
        self.feature_dim = in_channels
        self.head = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x).mean(dim=(2, 3))  # (B, 8 * base)
        return features, self.head(features)  # (B, num_classes)


# ----------------------------------------------------------------------------------------------
# Training.

def labelled_splits(dataset: str, data_root: str, *, resolution: int = 0, channels: int = 0,
                    download: bool = False, seed: int = 0) -> tuple[ImageData, ImageData, str]:
    """All classes of a dataset's training split, and a held-out test set: (train, test, test name).

    The test set is the dataset's test split: torchvision's, `root/test` beside `root/train`, or
    a `test` folder next to a `train` folder given as the root. Without one, 10% of the training
    images are held out (seeded).
    """
    if dataset == "celeba":
        raise UserError("celeba has no class labels to train the fast extractor on; train one on a labelled "
                        "dataset (e.g. `dcgan features train --dataset cifar10`) and pass --fast-extractor")
    train = load_dataset(dataset, data_root, split="train", resolution=resolution, channels=channels,
                         download=download)
    if len(train.class_names) < 2:
        raise UserError(f"{data_root} holds one class ({train.class_names[0]}): the fast extractor learns from "
                        f"class labels; train it on a labelled dataset and pass --fast-extractor")
    test_root = data_root if dataset != "folder" else test_folder_beside(data_root)
    if test_root is not None:
        test = load_dataset(dataset, test_root, split="test", resolution=train.resolution,
                            channels=train.channels, download=download)
        if test.class_names != train.class_names:
            raise UserError(f"the test split's classes ({', '.join(test.class_names)}) differ from the "
                            f"training split's ({', '.join(train.class_names)})")
        return train, test, f"{dataset} test split ({len(test):,} images)"
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    held = len(train) // 10
    test = ImageData(train.images[order[:held]], train.labels[order[:held]], train.class_names)
    train = ImageData(train.images[order[held:]], train.labels[order[held:]], train.class_names)
    return train, test, f"10% of the training images held out ({held:,})"


def _augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random flips and a random crop after reflection padding (1/8 of the size), on uint8 tensors."""
    flip = torch.rand(len(images), generator=generator) < 0.5
    images = torch.where(flip.view(-1, 1, 1, 1), images.flip(3), images)
    pad = images.shape[-1] // 8
    padded = F.pad(images.float(), (pad, pad, pad, pad), mode="reflect")
    top, left = torch.randint(0, 2 * pad + 1, (2,), generator=generator).tolist()
    return padded[:, :, top:top + images.shape[-2], left:left + images.shape[-1]]


def _to_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (or float 0..255) images -> [-1, 1] channels-last floats on `device`."""
    x = images.to(device).float().div_(127.5).sub_(1.0)
    return x.contiguous(memory_format=torch.channels_last)


@torch.inference_mode()
def accuracy(model: FastClassifier, data: ImageData, device: torch.device, batch_size: int = 500) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(data), batch_size):
        _, logits = model(_to_input(data.images[start:start + batch_size], device))
        correct += int((logits.argmax(1).cpu() == data.labels[start:start + batch_size]).sum())
    return correct / len(data)


def train_fast_classifier(train: ImageData, test: ImageData, *, epochs: float = 4, batch_size: int = 128,
                          lr: float = 0.2, seed: int = 0, device: torch.device | str = "cpu",
                          progress: bool = True) -> tuple[FastClassifier, dict]:
    """SGD with Nesterov momentum and a one-cycle learning rate, flips and crops, label smoothing 0.1.

    Returns the model (eval mode) and a report: test accuracy, seconds, images seen.
    """
    device = torch.device(device)
    with torch.random.fork_rng(devices=[]):  # Seeded weights without touching the caller's generator.
        torch.manual_seed(seed)
        model = FastClassifier(img_channels=train.channels, num_classes=len(train.class_names))
    model.to(device).to(memory_format=torch.channels_last)
    batch_size = min(batch_size, len(train))  # a folder smaller than a batch would give no batch at all
    steps = max(8, int(epochs * len(train) / batch_size))  # the one-cycle schedule needs a warm-up step or more
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.25)
    generator = torch.Generator().manual_seed(seed)
    start_time = time.time()
    bar = tqdm(total=steps, desc="training the fast extractor", unit="step", disable=not progress,
               dynamic_ncols=True)
    step = 0
    while step < steps:
        order = torch.randperm(len(train), generator=generator)
        for start in range(0, len(train) - batch_size + 1, batch_size):
            if step >= steps:
                break
            index = order[start:start + batch_size]
            x = _to_input(_augment(train.images[index], generator), device)
            _, logits = model(x)
            loss = F.cross_entropy(logits, train.labels[index].to(device), label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            bar.update(1)
            if step % 50 == 0:
                bar.set_postfix_str(f"loss {loss.item():.3f}", refresh=False)
    bar.close()
    report = {"test_accuracy": round(accuracy(model, test, device), 4), "epochs": epochs, "steps": steps,
              "batch_size": batch_size, "train_images": len(train), "test_images": len(test),
              "seconds": round(time.time() - start_time, 1)}
    return model.eval(), report


# ----------------------------------------------------------------------------------------------
# Files.

def default_path(dataset: str, data_root: str, resolution: int = 0, channels: int = 0,
                 download: bool = False) -> Path:
    """Where the extractor of a dataset (all its classes) at a resolution lives in the cache.

    A resolution or channel count of 0 is read off the data (decoded once, then cached).
    """
    if not resolution or not channels:
        probe = load_dataset(dataset, data_root, split="train", resolution=resolution, channels=channels,
                             download=download)
        resolution, channels = probe.resolution, probe.channels
    root = str(Path(data_root).expanduser().resolve())
    if dataset == "folder" and Path(root).name in ("train", "test"):
        root = str(Path(root).parent)  # root/train and root itself are the same dataset
    key = hashlib.sha256(json.dumps([NAME, dataset, root, resolution, channels]).encode()).hexdigest()[:16]
    return cache_dir("features") / f"{dataset}-{resolution}px-{key}.safetensors"


def save_fast_extractor(model: FastClassifier, path: Path, *, resolution: int, class_names: list[str],
                        trained_on: dict, report: dict) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {"format": FORMAT, "name": NAME, "version": __version__,
                "kwargs": json.dumps({"img_channels": model.img_channels, "num_classes": model.num_classes}),
                "resolution": str(resolution), "class_names": json.dumps(class_names),
                "trained_on": json.dumps(trained_on), "report": json.dumps(report)}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


class FastExtractor:
    """Pooled features and logits of the fast classifier, for uint8 images of its data."""

    kind = "fast"
    label = "fast"
    has_logits = True

    def __init__(self, path: str | Path, device: str | torch.device = "cpu"):
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"fast extractor not found: {self.path}; make one with `dcgan features train`")
        expected = "a fast extractor (.safetensors) written by `dcgan features train`"
        tensors, metadata = read_safetensors(self.path, expected)
        if metadata.get("format") != FORMAT:
            raise UserError(f"{self.path} is not a dcgan fast extractor (no '{FORMAT}' metadata); expected {expected}")
        try:
            self.resolution = int(metadata["resolution"])
            self.class_names = json.loads(metadata["class_names"])
            self.trained_on = json.loads(metadata["trained_on"])
            self.report = json.loads(metadata["report"])
            float(self.report["test_accuracy"]), self.trained_on["dataset"], self.trained_on["root"]
            kwargs = json.loads(metadata["kwargs"])
            if not isinstance(kwargs, dict):
                raise TypeError(f"kwargs are a {type(kwargs).__name__}, not a mapping")
        except KeyError as error:
            raise UserError(f"{self.path} has no {error} in its metadata; expected {expected}") from None
        except (ValueError, TypeError, RuntimeError) as error:  # bad JSON, a non-number, foreign arguments
            raise UserError(f"{self.path} has damaged metadata ({reason(error)}); expected {expected}") from None
        self.model = build_checked(FastClassifier, kwargs, tensors, path=self.path, what="fast extractor")
        self.weights_sha256 = file_sha256(self.path)
        self.device = torch.device(device)
        load_state_checked(self.model, tensors, f"fast extractor {self.path}")
        self.model.to(self.device).to(memory_format=torch.channels_last).eval().requires_grad_(False)
        self.feature_dim = self.model.feature_dim
        self.channels = self.model.img_channels

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images.shape[1] != self.channels:
            raise UserError(f"the fast extractor takes {self.channels}-channel images, not {images.shape[1]}")
        if images.shape[-1] != self.resolution:
            images = resize_uint8(images, self.resolution)
        with torch.inference_mode():
            features, logits = self.model(_to_input(images, self.device))
        return features.float().cpu(), logits.float().cpu()

    @property
    def accuracy(self) -> float:
        return float(self.report["test_accuracy"])

    def describe(self) -> dict:
        return {"name": NAME, "kind": self.kind,
                "features": f"pooled last conv layer ({self.feature_dim}); logits ({len(self.class_names)} classes)",
                "trained_on": self.trained_on, "test_accuracy": self.accuracy, "weights": str(self.path),
                "weights_sha256": self.weights_sha256,
                "resize": f"uint8 input at {self.resolution}x{self.resolution} (antialiased bilinear otherwise), "
                          "scaled to [-1, 1]",
                "note": "not Inception: fast scores rank checkpoints of one run, they are not FID"}

    def identity(self) -> dict:
        return {"name": NAME, "weights_sha256": self.weights_sha256}

    def summary(self) -> str:
        on = self.trained_on
        return (f"fast features ({NAME}, trained on {on['dataset']} {on['root']}, "
                f"test accuracy {self.accuracy:.1%}); not Inception FID")


def ensure_fast_extractor(dataset: str, data_root: str, *, resolution: int, channels: int, download: bool = False,
                          epochs: float = 4, seed: int = 0, device: torch.device | str = "cpu",
                          retrain: bool = False, progress: bool = True, out: str | Path | None = None) -> Path:
    """The cached extractor of a dataset; trained (minutes on a CPU) and saved if there is none yet."""
    path = Path(out) if out else default_path(dataset, data_root, resolution, channels, download)
    if path.is_file() and not retrain:
        try:
            FastExtractor(path)
            return path
        except UserError as error:  # damaged (a killed copy, a bad disk): rebuilt like the other caches
            print(f"the cached fast extractor is not usable ({error}); training it again", flush=True)
    train, test, test_name = labelled_splits(dataset, data_root, resolution=resolution, channels=channels,
                                             download=download, seed=seed)
    seconds = len(train) * epochs / 700  # about 700 training images/s on two CPU cores
    print(f"training the fast feature extractor on {len(train):,} {dataset} images "
          f"({len(train.class_names)} classes, {epochs:g} epochs, about {math.ceil(seconds / 60)} min on a "
          f"2-core CPU); it is cached at {path}", flush=True)
    model, report = train_fast_classifier(train, test, epochs=epochs, seed=seed, device=device, progress=progress)
    report["test_set"] = test_name
    trained_on = {"dataset": dataset, "root": str(Path(data_root).expanduser().resolve()),
                  "resolution": train.resolution, "channels": train.channels}
    save_fast_extractor(model.cpu(), path, resolution=train.resolution, class_names=train.class_names,
                        trained_on=trained_on, report=report)
    print(f"fast extractor: test accuracy {report['test_accuracy']:.1%} on the {test_name}, "
          f"{report['seconds'] / 60:.1f} min; saved to {path}", flush=True)
    return path
