"""A memory bound for every input a user can hand over: small hostile files cost a few hundred MB at most.

Each case runs in a fresh interpreter that imports what it needs, records its peak resident memory
(ru_maxrss), reads the hostile file, and reports how far the peak rose. A small file that declares a
huge image, tensor or array must be refused in one line (or, for an image under the size limit,
decoded) within the bound, never allocated whole.
"""

from __future__ import annotations

import collections
import io
import json
import pickle
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

BOUND_MB = 300  # "a few hundred MB above the process's baseline"

RUNNER = """
import json, resource, sys
import torch, numpy
import dcgan.data, dcgan.checkpoint, dcgan.metrics.reference, dcgan.metrics.inception_package
from dcgan.errors import UserError
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
outcome = "loaded"
try:
    exec(sys.argv[1])
except UserError as error:
    outcome = "refused: " + str(error)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"outcome": outcome, "rise_mb": (after - before) / 1024}))
"""


def peak_rise(code: str) -> dict:
    """Run `code` in a fresh interpreter; its outcome and how far its peak memory rose, in MB."""
    result = subprocess.run([sys.executable, "-c", RUNNER, code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def png_of(path: Path, width: int, height: int, *, sixteen_bit: bool = False) -> Path:
    """A grey PNG of width x height written a row at a time (a few KB for hundreds of megapixels)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    depth = 16 if sixteen_bit else 8
    header = struct.pack(">IIBBBBB", width, height, depth, 0, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = b"\x00" + (np.arange(width) * 13 % 65536).astype(">u2").tobytes() if sixteen_bit else b"\x00" * (width + 1)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def test_an_image_declaring_hundreds_of_megapixels_is_refused_from_its_header(tmp_path):
    folder = tmp_path / "data" / "bombs"
    folder.mkdir(parents=True)
    png_of(folder / "bomb.png", 10_000, 10_000)  # 100 megapixels in a few hundred KB (Pillow warns only past 179)
    assert (folder / "bomb.png").stat().st_size < 1_000_000
    result = peak_rise(f"dcgan.data.load_dataset('folder', {str(tmp_path / 'data')!r}, use_cache=False)")
    assert result["outcome"].startswith("refused") and "megapixels" in result["outcome"], result
    assert result["rise_mb"] < BOUND_MB, result


def test_a_large_16_bit_image_decodes_within_the_bound(tmp_path):
    folder = tmp_path / "data" / "scans"
    folder.mkdir(parents=True)
    png_of(folder / "scan.png", 5_000, 5_000, sixteen_bit=True)  # 25 megapixels of 16-bit grey
    result = peak_rise(f"data = dcgan.data.load_dataset('folder', {str(tmp_path / 'data')!r}, use_cache=False)\n"
                       f"assert data.images.shape == (1, 1, 64, 64), data.images.shape")
    assert result["outcome"] == "loaded", result
    assert result["rise_mb"] < BOUND_MB, result


def test_a_generator_file_declaring_a_huge_tensor_is_refused(tmp_path):
    header = json.dumps({"__metadata__": {"format": "dcgan-generator-v1", "generator_kwargs": "{}"},
                         "w": {"dtype": "F32", "shape": [1_000_000_000], "data_offsets": [0, 4_000_000_000]}})
    path = tmp_path / "generator.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header.encode() + b"\x00" * 16)
    result = peak_rise(f"dcgan.checkpoint.load_generator({str(path)!r})")
    assert result["outcome"].startswith("refused"), result
    assert result["rise_mb"] < BOUND_MB, result


def test_a_generator_file_asking_for_huge_networks_is_refused_before_building_them(tmp_path):
    from dcgan.checkpoint import save_module_file

    kwargs = dict(z_dim=4096, img_resolution=64, img_channels=3, base_channels=4096, norm="batch", num_classes=0)
    path = tmp_path / "generator.safetensors"
    save_module_file(torch.nn.Linear(2, 2), path, {"format": "dcgan-generator-v1",
                                                   "generator_kwargs": json.dumps(kwargs)}, None)
    result = peak_rise(f"dcgan.checkpoint.load_generator({str(path)!r})")
    assert result["outcome"].startswith("refused") and "another architecture" in result["outcome"], result
    assert result["rise_mb"] < BOUND_MB, result


class StorageRef:
    def __init__(self, numel: int):
        self.numel = numel


class TensorRecord:
    """Pickles as torch's own tensor record: a view (size, stride) of a storage."""

    def __init__(self, storage: StorageRef, size: tuple, stride: tuple):
        self.storage, self.size, self.stride = storage, size, stride

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, (self.storage, 0, self.size, self.stride, False,
                                                  collections.OrderedDict()))


class ArchivePickler(pickle.Pickler):
    def persistent_id(self, obj):
        return ("storage", torch.FloatStorage, "0", "cpu", obj.numel) if isinstance(obj, StorageRef) else None


def archive_with(path: Path, record: TensorRecord, storage_bytes: bytes, *, torchscript: bool) -> Path:
    """A zip in torch's layout whose one tensor is `record`: a TorchScript archive or a torch.save file."""
    buffer = io.BytesIO()
    value = {"w": record} if torchscript else {"format": "dcgan-checkpoint-v1", "generator_kwargs": {},
                                              "G": {"w": record}}
    ArchivePickler(buffer, protocol=2).dump(value)
    with __import__("zipfile").ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/data/0", storage_bytes)
        archive.writestr("archive/version", "3\n")
        archive.writestr("archive/byteorder", "little")
        if torchscript:
            archive.writestr("archive/constants.pkl", pickle.dumps((), protocol=2))
            archive.writestr("archive/code/__torch__/m.py", "")
    return path


HOSTILE_TENSORS = {
    "a stride-0 view of a huge size": (TensorRecord(StorageRef(4), (1_000_000_000,), (0,)), bytes(16)),
    "a storage declaring a billion elements": (TensorRecord(StorageRef(1_000_000_000), (4,), (1,)), bytes(16)),
    "a view past its storage": (TensorRecord(StorageRef(4), (4, 4), (4, 1)), bytes(16)),
}


READERS = {  # (file name, TorchScript layout?, the call that reads it)
    "Inception archive": ("default_1.pt", True, "dcgan.metrics.inception_package.read_torchscript_tensors"),
    "checkpoint": ("checkpoint-last.pt", False, "dcgan.checkpoint.load_generator"),
}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("case", HOSTILE_TENSORS)
def test_an_archive_with_hostile_sizes_is_refused_unallocated(case, reader, tmp_path):
    record, storage = HOSTILE_TENSORS[case]
    name, torchscript, call = READERS[reader]
    path = archive_with(tmp_path / name, record, storage, torchscript=torchscript)
    result = peak_rise(f"{call}({str(path)!r})")
    assert result["outcome"].startswith("refused"), result
    assert result["rise_mb"] < BOUND_MB, result


def test_the_package_file_is_checked_against_its_pinned_hash(tmp_path):
    from dcgan.errors import UserError
    from dcgan.metrics.inception_package import verified_package_weights

    fake = tmp_path / "default_1.pt"
    fake.write_bytes(b"not the package's file")
    with pytest.raises(UserError, match="SHA-256 differs"):
        verified_package_weights(fake)


def test_a_statistics_file_declaring_huge_arrays_is_refused(tmp_path):
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, mu=np.zeros(2048), sigma=np.zeros((20_000, 20_000), dtype=np.float32))  # 1.6 GB
    assert bomb.stat().st_size < 5_000_000
    result = peak_rise(f"dcgan.metrics.reference.load_stats({str(bomb)!r})")
    assert result["outcome"].startswith("refused") and "declares" in result["outcome"], result
    assert result["rise_mb"] < BOUND_MB, result
    honest = tmp_path / "stats.npz"
    np.savez(honest, mu=np.zeros(2048), sigma=np.eye(2048))
    result = peak_rise(f"dcgan.metrics.reference.load_stats({str(honest)!r})")
    assert result["outcome"] == "loaded", result
