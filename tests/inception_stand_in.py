"""Stand-in FID Inception weights for tests: the real architecture and file layout, random values.

No pretrained weights can be downloaded where the tests run, so the tests that hold the extractor
to torch-fidelity load these instead (`conftest.stand_in_inception_weights` writes them to a file).
"""

from __future__ import annotations

import numpy as np
import torch

from dcgan.metrics.inception_net import BN_EPS, Conv, InceptionV3, source_prefixes


def stand_in_state_dict(seed: int = 0, calibration_images: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Random weights of the real architecture, in the weights file's layout, for tests.

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
