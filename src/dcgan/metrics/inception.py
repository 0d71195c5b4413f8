"""The Inception feature extractor the metrics use: pool3 features and unbiased logits of uint8 images.

`InceptionExtractor` runs the FID Inception (`inception_net`, torch-fidelity-exact) on weights
found and read by `inception_weights`, and carries the weights' identity (file and SHA-256) that
cached reference statistics are checked against. `load_inception` finds the weights and builds it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dcgan.files import file_sha256
from dcgan.metrics.inception_net import INPUT_SIZE, InceptionV3
from dcgan.metrics.inception_weights import find_weights, read_state_dict

__all__ = ["NAME", "InceptionExtractor", "exact_float32", "find_weights", "load_inception"]

NAME = "inception-v3-tf-2015-12-05"


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
