"""Shared fixtures. The real-data tests use the CIFAR-10 image-folder archive in ../shared/data
(or $DCGAN_CIFAR10_ARCHIVE), unpacked once per test run. Without it they are skipped, except
under CI, where the archive must be there."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = Path(os.environ.get("DCGAN_CIFAR10_ARCHIVE", REPO.parent / "shared" / "data" / "cifar10-jpg.tar.gz"))


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Keep the decoded-dataset cache of the tests out of the user's home."""
    os.environ["DCGAN_CACHE"] = str(tmp_path_factory.mktemp("dcgan-cache"))
    torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory) -> Path:
    """The unpacked archive: <root>/train/<class>/NNNN.jpg and <root>/test/<class>/NNNN.jpg."""
    if not ARCHIVE.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the CIFAR-10 archive at {ARCHIVE}")
        pytest.skip(f"CIFAR-10 archive not found at {ARCHIVE}")
    root = tmp_path_factory.mktemp("cifar10")
    with tarfile.open(ARCHIVE) as archive:
        archive.extractall(root, filter="data")
    return root


@pytest.fixture(scope="session")
def cars(cifar_root):
    """The 5,000 training images of the automobile class as an ImageData."""
    from dcgan.data import load_dataset

    return load_dataset("folder", cifar_root / "train", classes=["automobile"])


def cifar_subset(cifar_root: Path, split: str, per_class: int):
    """The first `per_class` images of every class of a split, decoding only those files."""
    from dcgan.data import load_dataset

    subset = cifar_root.parent / f"{cifar_root.name}-{split}-{per_class}"
    if not subset.exists():
        for class_dir in sorted((cifar_root / split).iterdir()):
            (subset / class_dir.name).mkdir(parents=True)
            for path in sorted(class_dir.iterdir())[:per_class]:
                (subset / class_dir.name / path.name).symlink_to(path)
    return load_dataset("folder", subset)


@pytest.fixture(scope="session")
def fast_extractor_file(cifar_root, tmp_path_factory):
    """A quickly trained fast extractor (200 images a class, one epoch: weak, but a real one)."""
    from dcgan.metrics.fast import save_fast_extractor, train_fast_classifier

    train = cifar_subset(cifar_root, "train", 200)
    test = cifar_subset(cifar_root, "test", 20)
    model, report = train_fast_classifier(train, test, epochs=1, progress=False)
    path = tmp_path_factory.mktemp("fast") / "fast-cifar10.safetensors"
    save_fast_extractor(model, path, resolution=32, class_names=train.class_names,
                        trained_on={"dataset": "folder", "root": str(cifar_root), "resolution": 32, "channels": 3},
                        report=report)
    return path


@pytest.fixture(scope="session")
def stand_in_inception_weights(cifar_root, tmp_path_factory):
    """Inception weights of the real architecture and file layout, random, BatchNorm statistics set on
    20 CIFAR-10 test images (no pretrained weights can be downloaded here). Scores mean nothing."""
    from inception_stand_in import stand_in_state_dict

    calibration = cifar_subset(cifar_root, "test", 2).images
    path = tmp_path_factory.mktemp("inception") / "stand-in-inception.pth"
    torch.save(stand_in_state_dict(seed=0, calibration_images=calibration), path)
    return path


@pytest.fixture(scope="session")
def shipped_cars():
    """The shipped cifar10-cars generator: a real trained model that needs no dataset."""
    from dcgan.api import load_generator

    return load_generator("cifar10-cars")


@pytest.fixture(scope="session")
def generated_cars(shipped_cars):
    """64 images of the shipped car generator (seeds 1000-1063) as a one-class ImageData: training
    data and references for tests that need images but not CIFAR-10."""
    from dcgan.api import generate
    from dcgan.data import ImageData

    images = generate(shipped_cars, range(1000, 1064))
    return ImageData(images, torch.zeros(len(images), dtype=torch.int64), ["car"])


@pytest.fixture(scope="session")
def untrained_fast_extractor(tmp_path_factory):
    """A fast extractor file with untrained weights: its scores mean nothing, its code path is the real one."""
    from dcgan.metrics.fast import FastClassifier, save_fast_extractor

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("fast-untrained") / "fast.safetensors"
    save_fast_extractor(FastClassifier(num_classes=10).eval(), path, resolution=32,
                        class_names=[str(i) for i in range(10)], trained_on={"dataset": "folder", "root": "none"},
                        report={"test_accuracy": 0.1})
    return path
