"""Peers: dcgan's recipes and the recipes a user would install instead, each trained alone on this
machine for the same wall-clock budget, then all scored with one protocol.

Entries (`--only` picks some):

    dcgan-default   `dcgan train` with the default preset (cpu-v1)
    dcgan-classic   `dcgan train --preset classic` (Radford et al. 2015 as the toolkit implements it)
    mimicry-sngan   torch-mimicry 0.1.16's SNGAN-32 (ResNet, spectral norm, hinge loss) with its
                    CIFAR-10 baseline settings: Adam 2e-4, betas (0.0, 0.9), n_dis 5, batch 64,
                    linear rate decay over 100k steps
    mimicry-dcgan   torch-mimicry 0.1.16's DCGAN-32 (ResNet backbone, non-saturating loss) with the
                    same baseline settings
    examples-dcgan  pytorch/examples' `dcgan/main.py`, unchanged, run as its README says on an image
                    folder (64x64 output, `--workers 2`); pass the script with `--examples-main`
    lightweight-gan lucidrains' lightweight-gan: recorded as refusing to start without CUDA

The dcgan entries train in float32 (`--precision fp32`), as the peers do, also on a CPU where the
toolkit would pick bf16 by itself.

Every entry trains in its own process. The peers' own code runs as they ship it: the mimicry
networks and their `train_step` methods (loaded without the package's `__init__`, which imports
TensorFlow for its metrics; install it with `pip install --no-deps torch-mimicry==0.1.16`), driven
by a loop that does what mimicry's `Trainer.train` does (n_dis D steps, then one G step, then the
scheduler); the examples script as a subprocess, stopped when the budget runs out, its last epoch's
`netG_epoch_N.pth` kept. The budget counts from the process start for the examples script (its
start-up is its own), from the first step for the others.

An hour per entry is five hours of a 2-core CPU for the whole table. `--rates-from DIR` turns
the wall-clock budget into an image budget: DIR is an earlier, short run of the same entries on the
CPU whose budget is meant (e.g. `--minutes 3`), and each entry now trains for the images it made per
second there times `--minutes`, however long that takes on this machine, so the entries can be
trained one at a time on other days or machines and still have had the same CPU budget. (The
examples script saves only whole epochs: its rate from a timed run counts the finished ones, so it
reads low by up to an epoch's images, and it trains for the whole number of epochs nearest its
budget.) Run again on the same `--out`, the script keeps the entries trained there and resumes a
dcgan entry stopped mid-run from its last checkpoint. Scoring adds to `--out`'s results.json: the
entries scored there before under the same budget, seed, classes and `--num-gen` stay in the table,
so the entries can be trained and scored one or two at a time (copy results.json and grids/ into a
fresh `--out` to go on elsewhere).

    python benchmarks/peers.py --data-root /tmp/cifar10 --minutes 60 --only dcgan-default --train-only \\
        --rates-from docs/results/unverified/peers-cars-15min --out peers-cifar10-60min  # the 15-minute table's CPU
    python benchmarks/peers.py --data-root /tmp/cifar10 --minutes 60 --score-only --num-gen 10000 \\
        --rates-from docs/results/unverified/peers-cars-15min --out peers-cifar10-60min  # all entries, when trained

Scoring, the same for every entry: `--num-gen` samples (image i from seed i), 64x64 output box-
downsampled to the data's 32x32, against the test split of the same classes: Inception FID and KID
(the standard 2015-12-05 network), precision and recall (k=3) on Inception features, and FID-fast
and KID-fast on the toolkit's fast features; an 8x8 grid per entry. Results go to `results.md` and
`results.json` in `--out`; results.json records the machine each entry trained on and its precision
(from its run folder's environment.json or its trained.json), the command line and that protocol
(both extractors with their weights' SHA-256, the samples and their seeds, the reference and its split).

    python benchmarks/peers.py --data-root /tmp/cifar10 --classes automobile --minutes 15 \\
        --examples-main /path/to/examples/dcgan/main.py --num-gen 2000 --out docs/results/peers-cars-15min
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import types
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from dcgan.devices import cpu_name
from dcgan.files import atomic_write, write_json
from held_out import (
    HeldOut,
    check_results_folder,
    command_line,
    recorded_machine,
    recorded_precision,
    run_environment,
    write_results,
)

ENTRIES = ["dcgan-default", "dcgan-classic", "mimicry-sngan", "mimicry-dcgan", "examples-dcgan", "lightweight-gan"]
LIGHTWEIGHT_GAN_RESULT = ("does not start without CUDA: `lightweight_gan/lightweight_gan.py` asserts "
                          "`torch.cuda.is_available()` when it is imported (lucidrains/lightweight-gan efbec45)")


# ----------------------------------------------------------------------------------------------
# torch-mimicry: its networks and train steps, our loop.

def import_mimicry():
    """torch_mimicry.nets without running the package's __init__ (which imports TensorFlow)."""
    if "torch_mimicry" not in sys.modules:
        spec = importlib.util.find_spec("torch_mimicry")
        if spec is None:
            raise SystemExit("torch-mimicry is not installed: pip install --no-deps torch-mimicry==0.1.16")
        package = types.ModuleType("torch_mimicry")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["torch_mimicry"] = package
    from torch_mimicry.nets import dcgan, sngan

    return {"mimicry-sngan": (sngan.SNGANGenerator32, sngan.SNGANDiscriminator32),
            "mimicry-dcgan": (dcgan.DCGANGenerator32, dcgan.DCGANDiscriminator32)}


class MetricLog(dict):
    """What mimicry's train steps log into; the progress line prints it."""

    def add_metric(self, name, value, group=None, **kwargs):
        self[name] = torch.as_tensor(value).detach().item()


def train_mimicry(name: str, data_root: str, classes: list[str], minutes: float, kimg_budget: float, seed: int,
                  out: Path) -> None:
    from dcgan.data import load_dataset

    torch.manual_seed(seed)
    generator_class, discriminator_class = import_mimicry()[name]
    data = load_dataset("folder", data_root, classes=classes)
    images = data.images.float().div(127.5).sub(1)  # (N, 3, 32, 32) in [-1, 1], as mimicry normalizes
    netG, netD = generator_class(), discriminator_class()
    optG = torch.optim.Adam(netG.parameters(), 2e-4, betas=(0.0, 0.9))
    optD = torch.optim.Adam(netD.parameters(), 2e-4, betas=(0.0, 0.9))
    n_dis, num_steps, batch_size = 5, 100_000, 64
    schedules = [torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 - step / num_steps) for opt in (optG, optD)]
    order, cursor = torch.randperm(len(images)), 0

    def next_batch():  # a shuffled pass over the data, dropping the last partial batch, as their loader
        nonlocal order, cursor
        if cursor + batch_size > len(images):
            order, cursor = torch.randperm(len(images)), 0
        batch = images[order[cursor:cursor + batch_size]]
        cursor += batch_size
        return batch, torch.zeros(len(batch), dtype=torch.long)

    started, step, kimg = time.monotonic(), 0, 0.0
    while kimg < kimg_budget if kimg_budget else time.monotonic() - started < minutes * 60:
        log = MetricLog()
        for i in range(n_dis):
            real_batch = next_batch()
            netD.train_step(real_batch=real_batch, netG=netG, optD=optD, log_data=log, global_step=step,
                            device=torch.device("cpu"))
            if i == n_dis - 1:
                netG.train_step(real_batch=real_batch, netD=netD, optG=optG, global_step=step, log_data=log,
                                device=torch.device("cpu"))
        step += 1
        kimg += n_dis * batch_size / 1000
        for schedule in schedules:
            schedule.step()
        if step % 50 == 0:
            print(f"step {step} kimg {kimg:.1f} {time.monotonic() - started:.0f}s "
                  + " ".join(f"{k} {v:.3f}" for k, v in log.items()), flush=True)
    seconds = time.monotonic() - started
    atomic_write(out / "netG.pt", lambda tmp: torch.save(netG.state_dict(), tmp))
    write_json(out / "trained.json", {"steps": step, "kimg": round(kimg, 3), "seconds": seconds, "cpu": cpu_name(),
                                      "precision": "fp32"})  # mimicry's steps have no autocast


# ----------------------------------------------------------------------------------------------
# pytorch/examples' dcgan/main.py, as a subprocess with a wall-clock limit.

def train_examples(main_py: Path, data_root: str, classes: list[str], minutes: float, kimg_budget: float, seed: int,
                   out: Path) -> None:
    folder = out / "data"  # ImageFolder of the chosen classes only
    for name in classes or [p.name for p in Path(data_root).iterdir() if p.is_dir()]:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        if not (folder / name).exists():
            (folder / name).symlink_to(Path(data_root).resolve() / name)
    num_images = len(list(folder.glob("*/*")))
    command = [sys.executable, str(main_py), "--dataset", "folder", "--dataroot", str(folder), "--outf",
               str(out / "examples"), "--manualSeed", str(seed)]  # its own default: 25 epochs
    if kimg_budget:  # the whole number of epochs nearest the images it would have trained on in the budget
        epochs = round(kimg_budget * 1000 / num_images)
        if epochs == 0:
            raise SystemExit(f"examples-dcgan finishes no epoch in {kimg_budget:.1f} kimg")
        command += ["--niter", str(epochs)]
    (out / "examples").mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(out / "train.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            process.wait(timeout=None if kimg_budget else minutes * 60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    seconds = time.monotonic() - started
    epochs = sorted((out / "examples").glob("netG_epoch_*.pth"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    if not epochs:
        raise SystemExit(f"examples-dcgan finished no epoch in {minutes} minutes; see {out / 'train.log'}")
    last = epochs[-1]
    epoch = int(last.stem.rsplit("_", 1)[1])
    images = (epoch + 1) * num_images  # its loader keeps each epoch's last, partial batch
    atomic_write(out / "netG.pt", lambda tmp: tmp.write_bytes(last.read_bytes()))
    write_json(out / "trained.json", {"epochs": epoch + 1, "kimg": images / 1000, "seconds": seconds,
                                      "checkpoint": last.name, "cpu": cpu_name(),
                                      "precision": "fp32"})  # run without --cuda: float32 on the CPU


def radford_generator(state: dict) -> nn.Module:
    """The textbook DCGAN generator (Radford et al. 2015) that fits a `main.N.*` state dict:
    transposed 4x4 convolutions (the first 1 -> 4, then each x2), BatchNorm and ReLU between, tanh."""
    convs = sorted(int(k.split(".")[1]) for k, v in state.items() if k.endswith(".weight") and v.dim() == 4)
    layers: dict[str, nn.Module] = {}
    for position, index in enumerate(convs):
        in_channels, out_channels = state[f"main.{index}.weight"].shape[:2]
        stride, padding = (1, 0) if position == 0 else (2, 1)
        layers[str(index)] = nn.ConvTranspose2d(in_channels, out_channels, 4, stride, padding, bias=False)
        if position < len(convs) - 1:
            layers[str(index + 1)] = nn.BatchNorm2d(out_channels)
            layers[str(index + 2)] = nn.ReLU(True)
        else:
            layers[str(index + 1)] = nn.Tanh()
    model = RadfordGenerator(nn.Sequential(OrderedDict(layers)))
    model.load_state_dict(state)
    return model.eval()


class RadfordGenerator(nn.Module):
    def __init__(self, main: nn.Sequential):
        super().__init__()
        self.main = main

    def forward(self, latents):  # (B, z, 1, 1) -> (B, 3, 64, 64)
        return self.main(latents)


# ----------------------------------------------------------------------------------------------
# One sampler per entry: seeds -> uint8 images at the data's resolution.

def to_uint8(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """[-1, 1] images -> uint8 at `resolution`, box-downsampled where larger (64 -> 32: 2x2 means)."""
    if images.shape[-1] != resolution:
        images = F.interpolate(images, size=(resolution, resolution), mode="area")
    return (images.clamp(-1, 1).add(1).mul(127.5)).round().to(torch.uint8)


def sampler(name: str, out: Path, resolution: int):
    from dcgan.checkpoint import load_generator
    from dcgan.sampling import generate_images

    if name.startswith("dcgan-"):
        run = next(p for p in sorted((out / "runs").iterdir()) if (p / "summary.json").is_file())
        generator, _ = load_generator(run / "checkpoint-last.pt")
        return lambda seeds: generate_images(generator, seeds)
    state = torch.load(out / "netG.pt", map_location="cpu", weights_only=True)
    if name == "examples-dcgan":
        network, z_dim, shape = radford_generator(state), 100, (100, 1, 1)
    else:
        network = import_mimicry()[name][0]()
        network.load_state_dict(state)
        network.eval()
        z_dim, shape = network.nz, (network.nz,)

    def sample(seeds) -> torch.Tensor:
        latents = torch.stack([torch.randn(z_dim, generator=torch.Generator().manual_seed(s)) for s in seeds])
        with torch.no_grad():
            return torch.cat([to_uint8(network(chunk.view(-1, *shape)), resolution) for chunk in latents.split(64)])
    return sample


# ----------------------------------------------------------------------------------------------

def image_budget(name: str, args) -> float:
    """kimg for `name` under --rates-from (its images per second there x --minutes); 0: the wall clock.
    The rate comes from that run's results.json, or from its entry's training folder."""
    if not args.rates_from:
        return 0.0
    results = args.rates_from / "results.json"
    try:
        if results.is_file():
            trained = json.loads(results.read_text())["results"][name]
        else:
            trained = trained_summary(name, args.rates_from / name)
        return round(trained["kimg"] / trained["seconds"] * args.minutes * 60, 3)
    except (OSError, StopIteration, KeyError, TypeError, ValueError, ZeroDivisionError):
        raise SystemExit(f"--rates-from {args.rates_from} holds no rate (kimg and seconds) for {name}") from None


def train_entry(name: str, args, out: Path) -> None:
    """Train one entry in a child process of this script (or `dcgan train`), alone on the machine."""
    out.mkdir(parents=True, exist_ok=True)
    train_root = str(Path(args.data_root) / "train")
    kimg = image_budget(name, args)
    budget = ["--kimg", str(kimg)] if kimg else ["--minutes", str(args.minutes)]
    runs = sorted((out / "runs").glob("*/checkpoint-last.pt"))
    if (out / "trained.json").is_file() or runs and (runs[-1].parent / "summary.json").is_file():
        print(f"{name}: trained before, in {out}", flush=True)
        return
    if name.startswith("dcgan-") and runs:  # a run stopped by a kill or a reboot: go on from its checkpoint
        command = [sys.executable, "-m", "dcgan", "train", "--resume", str(runs[-1].parent)]
    elif name.startswith("dcgan-"):
        preset = "cpu-v1" if name == "dcgan-default" else "classic"
        command = [sys.executable, "-m", "dcgan", "train", "--preset", preset, "--dataset", "folder", "--data-root",
                   train_root, *budget, "--precision", "fp32", "--seed", str(args.seed), "--outdir", str(out / "runs")]
        if args.classes:
            command += ["--classes", ",".join(args.classes)]
    elif name == "examples-dcgan":
        if not args.examples_main:
            raise SystemExit("examples-dcgan needs --examples-main (pytorch/examples' dcgan/main.py)")
        train_examples(Path(args.examples_main), train_root, args.classes, args.minutes, kimg, args.seed, out)
        return
    else:
        command = [sys.executable, __file__, "--train-child", name, "--data-root", args.data_root, "--classes",
                   ",".join(args.classes), *budget, "--seed", str(args.seed), "--out", str(out)]
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {' '.join(command[1:])}", flush=True)
    with open(out / "train.log", "a") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if result.returncode != 0:
        raise SystemExit(f"{name} failed; see {out / 'train.log'}")


def trained_summary(name: str, out: Path) -> dict:
    """kimg, seconds, the machine (`cpu`, or `gpu` for a dcgan run on CUDA) and the arithmetic
    (`train_precision`: fp32, bf16; `precision` is a score) of an entry trained in `out`: a dcgan run
    folder's summary.json and environment.json, or the trained.json a peer's training wrote (mimicry's
    loop and the examples script train in float32 on the CPU, also before trained.json said so)."""
    if name.startswith("dcgan-"):
        run = next(p for p in sorted((out / "runs").iterdir()) if (p / "summary.json").is_file())
        summary = json.loads((run / "summary.json").read_text())
        environment = json.loads((run / "environment.json").read_text())
        where = {"gpu": environment["gpu"]} if environment.get("gpu") else {"cpu": environment.get("cpu", "")}
        return {"kimg": summary["kimg"], "seconds": summary["seconds"], **where,
                "train_precision": run_environment(run)["precision"]}
    trained = json.loads((out / "trained.json").read_text())
    precision = trained.pop("precision", "fp32")  # "precision" of an entry is the precision/recall score
    return {**trained, "train_precision": precision}


def score_entries(names: list[str], args) -> tuple[dict, dict]:
    """{entry: its training facts and scores}, and the scoring protocol."""
    from dcgan.sampling import save_grid

    held_out = HeldOut(args.data_root, args.classes)
    results = {}
    for name in names:
        out = args.out / name
        sample = sampler(name, out, held_out.data.resolution)
        save_grid(sample(range(64)), args.out / "grids" / f"{name}.png", nrow=8)
        result = {**trained_summary(name, out)}
        images = torch.cat([sample(range(start, min(start + 64, args.num_gen)))  # once, for both extractors
                            for start in range(0, args.num_gen, 64)])
        result.update(held_out.score(images, METRICS, name))
        print(name, {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}, flush=True)
        results[name] = result
    protocol = held_out.protocol(METRICS, args.num_gen, output="64x64 output box-downsampled (2x2 means) to the "
                                 "data's resolution; 32x32 used as it is",
                                 checkpoints="dcgan entries: the run's checkpoint-last.pt (its EMA generator where it "
                                             "has one); peers: their last saved generator")
    return results, protocol


PROTOCOL = ["classes", "minutes", "rates_from", "seed", "num_gen"]
METRICS = {"inception": ["fid", "kid", "pr"], "fast": ["fid", "kid"]}


def scored_before(args) -> dict:
    """The entries of `--out`'s results.json scored before under the same protocol: scoring other
    entries adds them to the table, so entries trained and scored on different days make one table."""
    path = args.out / "results.json"
    if not path.is_file():
        return {}
    try:
        document = json.loads(path.read_text())
        earlier, results = document["args"], document["results"]
    except (ValueError, KeyError, TypeError):
        raise SystemExit(f"{path} is not a results file of this script; use another --out") from None
    differ = [key for key in PROTOCOL if earlier.get(key) != str(getattr(args, key))]
    if differ:
        raise SystemExit(f"{path} was scored with other {', '.join(differ)}; use another --out")
    return results


def complete_earlier(earlier: dict, rescored: list[str], args) -> dict:
    """The entries scored before that stay in the table, each with the machine and precision it
    trained with: read again from its training folder in `--out` where results.json lacks one (it
    was written before they were recorded); where that folder does not say them either, one line and
    exit 1, before anything is scored."""
    kept = {}
    for name, entry in earlier.items():
        if name in rescored or "note" in entry:
            kept[name] = entry
            continue
        if not (entry.get("cpu") or entry.get("gpu")) or not entry.get("train_precision"):
            try:
                trained = trained_summary(name, args.out / name)
            except (OSError, StopIteration, KeyError, ValueError):
                raise SystemExit(f"{args.out / 'results.json'}: {name} records no machine or precision and "
                                 f"{args.out / name} does not say them; score it again (--only {name})") from None
            entry = {**entry, **{key: trained[key] for key in ("cpu", "gpu", "train_precision") if key in trained}}
        kept[name] = entry
    return kept


def results_table(results: dict, args) -> str:
    default_fid = results.get("dcgan-default", {}).get("fid")
    budget = (f"the images each entry trains in {args.minutes:g} minutes alone on {args.cpu} (its rate there: "
              f"{args.rates_from})" if args.rates_from else
              f"{args.minutes:g} minutes of training each, alone on the machine ({args.cpu})")
    lines = [f"{budget}; {args.num_gen:,} "
             f"samples against the {args.reference_name}. Inception: the 2015-12-05 FID network; precision / "
             f"recall: k = 3 on Inception features; fast: the toolkit's fast extractor.", "",
             "| entry | kimg | Inception FID | x default | KID | precision | recall | FID-fast | KID-fast |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        if "note" in r:
            lines.append(f"| {name} | - | {r['note']} | | | | | | |")
            continue
        ratio = f"{r['fid'] / default_fid:.2f}x" if default_fid else "-"
        lines.append(f"| {name} | {r['kimg']:.0f} | {r['fid']:.1f} | {ratio} | {r['kid']:.4f} | "
                     f"{r['precision']:.3f} | {r['recall']:.3f} | {r['fid_fast']:.3f} | {r['kid_fast']:.5f} |")
    machines = {}
    for name, r in results.items():
        if r.get("gpu") or r.get("cpu"):
            machines.setdefault(r.get("gpu") or r["cpu"], []).append(name)
    lines += [""] + [f"Trained on {cpu}: {', '.join(names)}." for cpu, names in machines.items()]
    lines += ["", "Grids (64 samples, seeds 0-63): " + ", ".join(f"[{n}](grids/{n}.png)" for n in results
                                                               if "note" not in results[n]), ""]
    return "\n".join(lines)


def rates_machine(args) -> str:
    """The machine whose rates set the image budgets (--rates-from): what its results.json or its
    entries recorded; empty without --rates-from or a record of it."""
    if not args.rates_from:
        return ""
    try:
        document = json.loads((args.rates_from / "results.json").read_text())
    except (OSError, ValueError):
        return ""
    machine = document.get("machine") if isinstance(document, dict) else None
    if isinstance(machine, dict):  # a role -> machine mapping
        machine = sorted(set(machine.values()))
    if not machine and isinstance(document, dict):
        machine = sorted({entry.get("gpu") or entry.get("cpu") for entry in document.get("results", {}).values()
                          if isinstance(entry, dict) and (entry.get("gpu") or entry.get("cpu"))})
    return machine if isinstance(machine, str) else " / ".join(machine or [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", required=True, help="image folder with train/ and test/ (the CIFAR-10 archive)")
    parser.add_argument("--classes", default="", help="comma-separated classes (e.g. automobile)")
    parser.add_argument("--minutes", type=float, default=0, help="wall-clock training budget of each entry")
    parser.add_argument("--rates-from", type=Path, help="an earlier run of the entries: train each for the images it "
                        "made per second there x --minutes")
    parser.add_argument("--kimg", type=float, default=0, help=argparse.SUPPRESS)  # a child's image budget
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-gen", type=int, default=5000)
    parser.add_argument("--only", default=",".join(ENTRIES), help="comma-separated entries")
    parser.add_argument("--examples-main", default="", help="pytorch/examples' dcgan/main.py")
    parser.add_argument("--score-only", action="store_true", help="score entries trained before")
    parser.add_argument("--train-only", action="store_true", help="train the entries and stop (score them later, "
                        "all together, with --score-only)")
    parser.add_argument("--cpu", default="", help="the machine, as the table names it (default: what --rates-from's "
                                                   "results or the entries recorded; results.json records the latter)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--train-child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    check_results_folder(args.out)
    args.classes = [c for c in args.classes.split(",") if c]
    if args.train_child:
        train_mimicry(args.train_child, str(Path(args.data_root) / "train"), args.classes, args.minutes, args.kimg,
                      args.seed, args.out)
        return
    if not args.minutes:
        parser.error("--minutes is required: the budget of each entry (of this CPU, or of --rates-from's)")
    if args.score_only and args.train_only:
        parser.error("--score-only and --train-only exclude each other")
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in ENTRIES]
    if unknown:
        parser.error(f"unknown entries {unknown}; choose from {ENTRIES}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "grids").mkdir(exist_ok=True)
    trainable = [n for n in names if n != "lightweight-gan"]
    if not args.score_only:
        for name in trainable:  # one at a time: each timed run alone on the machine
            train_entry(name, args, args.out / name)
        if args.train_only:
            print(f"trained {', '.join(trainable)}; score with --score-only", flush=True)
            return
    args.reference_name = "test images" + (f" of {', '.join(args.classes)}" if args.classes else "")
    earlier = complete_earlier(scored_before(args), trainable, args)
    results, protocol = score_entries(trainable, args)
    if "lightweight-gan" in names:
        results["lightweight-gan"] = {"note": LIGHTWEIGHT_GAN_RESULT}
    results = {name: results.get(name, earlier.get(name)) for name in ENTRIES if name in results or name in earlier}
    trained = [entry for entry in results.values() if "note" not in entry]
    machine = recorded_machine((entry.get("gpu") or entry.get("cpu") for entry in trained), "the entries")
    named = argparse.Namespace(**{**vars(args), "cpu": args.cpu or rates_machine(args) or (
        machine if isinstance(machine, str) else " / ".join(machine))})  # the table's name of the machine
    write_results(args.out, args, results_table(results, named), machine=machine,
                  precision=recorded_precision((entry.get("train_precision") for entry in trained), "the entries"),
                  command=command_line(), protocol=protocol, results=results)


if __name__ == "__main__":
    main()
