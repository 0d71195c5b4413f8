"""What each speed option of a training step is worth on this machine, one process, same networks.

For each preset's networks (and a spectral-norm D, where the fused forward applies), one training
step (G forward, D step, G step; the project's `GANLoss`) is timed in float32 and bfloat16 autocast,
with contiguous and channels-last memory, and for a BatchNorm-free D with one fused real+fake
forward against two. Rounds alternate between the variants to share the machine's noise; medians.

    python benchmarks/step_speed.py [--rounds 3 --steps 15]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dcgan.augment import Augmenter
from dcgan.config import resolve_config
from dcgan.losses import GANLoss
from dcgan.models import build_discriminator, build_generator, discriminator_kwargs, generator_kwargs
from dcgan.training.precision import Precision, cpu_has_native_bf16


def images_per_second(config, *, precision: str, channels_last: bool, fused: bool, steps: int,
                      warmup: int = 3) -> float:
    torch.manual_seed(0)
    G = build_generator(**generator_kwargs(config, 32, 3))
    D = build_discriminator(**discriminator_kwargs(config, 32, 3))
    if channels_last:
        G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    opt_G = torch.optim.Adam(G.parameters(), config.lr_g, betas=(config.beta1, config.beta2))
    opt_D = torch.optim.Adam(D.parameters(), config.lr_d, betas=(config.beta1, config.beta2))
    mode = Precision(precision, "cpu", "")
    loss = GANLoss(generator=G, discriminator=D, loss=config.loss, r1_gamma=config.r1_gamma,
                   r1_interval=config.r1_interval, augment=Augmenter(config.augment_policy(50_000)), precision=mode)
    loss.fused = loss.fused and fused
    no_scaler = torch.amp.GradScaler("cpu", enabled=False)
    batch = config.batch_size
    real = torch.rand(batch, 3, 32, 32) * 2 - 1
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        D.requires_grad_(True)
        with mode.autocast():
            fake = G(torch.randn(batch, config.z_dim))
        opt_D.zero_grad(set_to_none=True)
        loss.discriminator_step(real, fake, step, no_scaler)
        opt_D.step()
        D.requires_grad_(False)
        opt_G.zero_grad(set_to_none=True)
        loss.generator_step(fake, no_scaler, real=real)
        opt_G.step()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=15)
    args = parser.parse_args()
    networks = {
        "classic": resolve_config("classic"),
        "cpu-v1": resolve_config("cpu-v1"),
        "spectral-norm D": resolve_config("cpu-v1", overrides=dict(d_norm="none", spectral_norm=True,
                                                                    r1_gamma=0.05)),
    }
    precisions = ["fp32", "bf16"] if cpu_has_native_bf16() else ["fp32"]
    print(f"{torch.get_num_threads()} threads; native bf16: {cpu_has_native_bf16()}")
    for name, config in networks.items():
        variants = {f"{p}{' channels-last' if cl else ''}": dict(precision=p, channels_last=cl, fused=True)
                    for p in precisions for cl in (False, True)}
        if config.d_norm == "none":
            best = f"{precisions[-1]} channels-last"
            variants[f"{best}, two D forwards"] = {**variants[best], "fused": False}
        speeds = {label: [] for label in variants}
        for _ in range(args.rounds):
            for label, options in variants.items():
                speeds[label].append(images_per_second(config, steps=args.steps, **options))
        base = statistics.median(speeds["fp32"])
        print(f"\n{name} networks, batch {config.batch_size}:")
        for label, values in speeds.items():
            median = statistics.median(values)
            print(f"  {label:<34} {median:7.1f} img/s  x{median / base:.2f}")


if __name__ == "__main__":
    main()
