"""Shared fixtures. The real-data tests use the CIFAR-10 image-folder archive in ../shared/data
(or $DCGAN_CIFAR10_ARCHIVE), unpacked once per session. Without it they are skipped, except
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
