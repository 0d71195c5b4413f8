"""Training throughput: the project's loop against a minimal plain-PyTorch loop, same process.

For each preset (`--presets classic,cpu-v1`), both loops train that preset's networks (same widths,
batch, loss, optimizer) on the CIFAR-10 automobile class. The plain loop is the textbook step
(pytorch/examples' DCGAN, with the preset's loss and a separate D forward for real and
fake, in float32, contiguous memory): what a user writes without this toolkit. The project's loop
runs as users run it: data pipeline, augmentation, EMA, CSV logging and the progress bar on, with
its own defaults (`--precision auto`, channels-last, the fused D forward where D has no BatchNorm);
its speed is read from its metrics.csv (snapshots are periodic, not per step, and left out). Repeats
alternate between the two to share the machine's noise; medians are reported.

    python benchmarks/train_throughput.py --data-root /path/to/cifar10/train [--rounds 3 --steps 60] \\
        [--out docs/results/train-throughput]

With `--out`, results.json (the machine, the precisions: float32 for the plain loop and what
`--precision auto` resolved to for the project's, as its runs recorded in environment.json; the
command line, the protocol, every round's rates and each preset's medians and ratio) and results.md
go there.
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
from dcgan.devices import machine_name
from dcgan.models import build_discriminator, build_generator, discriminator_kwargs, generator_kwargs
from dcgan.training.loop import train
from held_out import (
    check_results_folder,
    command_line,
    recorded_machine,
    recorded_precision,
    run_environment,
    write_results,
)


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


def project_loop(config, data, steps: int, warmup: int, outdir: str) -> tuple[float, dict]:
    """Images/s of dcgan's own loop over the logged steps after warm-up, and where and how the run
    trained as its environment.json records (`machine`, `precision`, `command`)."""
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
    return images / (float(end["seconds"]) - float(start["seconds"])), run_environment(run_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", required=True, help="CIFAR-10 image folder (train/ or its parent)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--presets", default="classic,cpu-v1")
    parser.add_argument("--out", help="write results.json and results.md to this folder (default: print only)")
    args = parser.parse_args()
    out = check_results_folder(args.out) if args.out else None

    data = load_dataset("folder", args.data_root, classes=["automobile"])
    lines, rows, trained = [], [], []
    for preset in args.presets.split(","):
        config = resolve_config(preset, overrides=dict(dataset="folder", classes=["automobile"],
                                                       data_root=args.data_root, log=[]))
        plain, project = [], []
        with tempfile.TemporaryDirectory() as outdir:
            for round_index in range(args.rounds):
                plain.append(plain_loop(config, data, args.steps, args.warmup))
                rate, environment = project_loop(config, data, args.steps, args.warmup, outdir)
                project.append(rate)
                trained.append(environment)
                print(f"{preset} round {round_index + 1}: plain {plain[-1]:.1f} img/s, dcgan {project[-1]:.1f} img/s")
        p, q = statistics.median(plain), statistics.median(project)
        lines.append(f"{preset:<8} batch {config.batch_size}: plain {p:7.1f} img/s, dcgan {q:7.1f} img/s, "
                     f"ratio {q / p:.2f} (medians of {args.rounds})")
        rows.append({"preset": preset, "batch_size": config.batch_size, "plain_img_per_s": round(p, 2),
                     "dcgan_img_per_s": round(q, 2), "ratio": round(q / p, 4), "rounds": args.rounds,
                     "dcgan_precision": sorted({e["precision"] for e in trained[-args.rounds:]}),
                     "per_round": [{"plain_img_per_s": round(a, 2), "dcgan_img_per_s": round(b, 2)}
                                   for a, b in zip(plain, project)]})
    print(f"32x32, {torch.get_num_threads()} threads")
    print("\n".join(lines))
    if out is not None:
        write_report(out, args, rows, trained)


def write_report(out, args, rows: list[dict], trained: list[dict]) -> None:
    """results.json and results.md in `out`: every rate and ratio printed."""
    threads = torch.get_num_threads()
    machine = recorded_machine([machine_name(), *(e["machine"] for e in trained)], "the runs")
    where = machine if isinstance(machine, str) else " and ".join(machine)
    table = [f"Training throughput at 32x32, {threads} threads, on {where}: medians of {args.rounds} rounds of "
             f"{args.steps} timed steps after {args.warmup} of warm-up.", "",
             "| preset | batch | plain loop img/s | dcgan img/s | ratio | dcgan precision |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        table.append(f"| {r['preset']} | {r['batch_size']} | {r['plain_img_per_s']:.1f} | {r['dcgan_img_per_s']:.1f} | "
                     f"{r['ratio']:.2f} | {', '.join(r['dcgan_precision'])} |")
    protocol = {
        "measured": "training images/s of dcgan's own loop against a minimal plain-PyTorch loop of the same networks, "
                    "in the same process, and their ratio (dcgan / plain)",
        "data": f"the automobile class of the CIFAR-10 image folder {args.data_root}, 32x32",
        "plain_loop": "the textbook DCGAN step (pytorch/examples) with the preset's loss, separate D forwards for real "
                      "and fake, float32, contiguous memory, on the CPU, images already a float tensor in memory; "
                      "timed with perf_counter over the steps after warm-up",
        "dcgan_loop": "dcgan.training.loop.train with the preset's defaults (--precision auto, channels-last, the "
                      "fused D forward where D has no BatchNorm, --device auto) and the data pipeline, augmentation, "
                      "EMA, CSV logging and the progress bar on; rate from metrics.csv (log every 10 steps) between "
                      "the last row logged in warm-up and the last row, no snapshot during the run",
        "rounds": f"{args.rounds} rounds alternating plain and dcgan; medians reported",
        "steps": args.steps, "warmup_steps": args.warmup, "torch_threads": threads}
    write_results(out, args, "\n".join(table) + "\n", machine=machine,
                  precision=recorded_precision(["fp32", *(e["precision"] for e in trained)]),
                  command=command_line(), protocol=protocol, presets=rows)


if __name__ == "__main__":
    main()
