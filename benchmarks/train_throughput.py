"""Training throughput: the project's loop against a minimal plain-PyTorch loop, same process.

For each preset (`--presets classic,cpu-v1`), both loops train that preset's networks (same widths,
batch, loss, optimizer) on the CIFAR-10 automobile class. The plain loop is the textbook step
(pytorch/examples' DCGAN, with the preset's loss and a separate D forward for real and
fake, in float32, contiguous memory): what a user writes without this toolkit. The project's loop
runs as users run it: data pipeline, augmentation, EMA, CSV logging and the progress bar on, with
its own defaults (`--precision auto`, channels-last, the fused D forward where D has no BatchNorm);
its speed is read from its metrics.csv (snapshots are periodic, not per step, and left out). Repeats
alternate between the two to share the machine's noise; medians are reported.

    python benchmarks/train_throughput.py --data-root /path/to/cifar10/train [--rounds 3 --steps 60]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from dcgan.config import resolve_config
from dcgan.data import load_dataset
from dcgan.models import build_discriminator, build_generator, discriminator_kwargs, generator_kwargs
from dcgan.training.loop import train


def plain_loop(config, data, steps: int, warmup: int) -> float:
    """Images/s of the textbook step of the same networks on a float tensor already in memory."""
    torch.manual_seed(0)
    G = build_generator(**generator_kwargs(config, 32, 3))
    D = build_discriminator(**discriminator_kwargs(config, 32, 3))
    opt_G = torch.optim.Adam(G.parameters(), lr=config.lr_g, betas=(config.beta1, config.beta2))
    opt_D = torch.optim.Adam(D.parameters(), lr=config.lr_d, betas=(config.beta1, config.beta2))
    images = data.images.float() / 127.5 - 1
    batch = config.batch_size
    ones, zeros = torch.ones(batch), torch.zeros(batch)
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        real = images[torch.randint(len(images), (batch,))]
        fake = G(torch.randn(batch, config.z_dim))
        opt_D.zero_grad()
        if config.loss == "hinge":
            loss_d = F.relu(1 - D(real)).mean() + F.relu(1 + D(fake.detach())).mean()
        else:
            loss_d = (F.binary_cross_entropy_with_logits(D(real), ones)
                      + F.binary_cross_entropy_with_logits(D(fake.detach()), zeros))
        loss_d.backward()
        opt_D.step()
        opt_G.zero_grad()
        if config.loss == "hinge":
            (-D(fake).mean()).backward()
        else:
            F.binary_cross_entropy_with_logits(D(fake), ones).backward()
        opt_G.step()
    return steps * batch / (time.perf_counter() - start)


def project_loop(config, data, steps: int, warmup: int, outdir: str) -> float:
    """Images/s of dcgan's own loop over the logged steps after warm-up."""
    log_every = 10
    run = config.__class__(**{**config.to_dict(), "kimg": (warmup + steps) * config.batch_size / 1000,
                              "log_every": log_every, "snapshot_kimg": 10**6, "outdir": outdir})
    run_dir = train(run, data=data, show_progress=True)
    with open(run_dir / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    # From the last row logged during warm-up to the last row: whole logging intervals only.
    first = max(i for i, row in enumerate(rows) if int(row["step"]) <= warmup)
    start, end = rows[first], rows[-1]
    images = (int(end["step"]) - int(start["step"])) * config.batch_size
    return images / (float(end["seconds"]) - float(start["seconds"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", required=True, help="CIFAR-10 image folder (train/ or its parent)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--presets", default="classic,cpu-v1")
    args = parser.parse_args()

    data = load_dataset("folder", args.data_root, classes=["automobile"])
    lines = []
    for preset in args.presets.split(","):
        config = resolve_config(preset, overrides=dict(dataset="folder", classes=["automobile"],
                                                       data_root=args.data_root, log=[]))
        plain, project = [], []
        with tempfile.TemporaryDirectory() as outdir:
            for round_index in range(args.rounds):
                plain.append(plain_loop(config, data, args.steps, args.warmup))
                project.append(project_loop(config, data, args.steps, args.warmup, outdir))
                print(f"{preset} round {round_index + 1}: plain {plain[-1]:.1f} img/s, dcgan {project[-1]:.1f} img/s")
        p, q = statistics.median(plain), statistics.median(project)
        lines.append(f"{preset:<8} batch {config.batch_size}: plain {p:7.1f} img/s, dcgan {q:7.1f} img/s, "
                     f"ratio {q / p:.2f} (medians of {args.rounds})")
    print(f"32x32, {torch.get_num_threads()} threads")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
