"""Budget harness: train each config of a YAML list for the same budget, score every run the same way.

Each run is `dcgan train` in its own process (as a user runs it), for a fixed number of images
(`--kimg`, to rank configs: quality at equal work) or a fixed wall-clock budget (`--minutes`, to
confirm a winner: quality per CPU-minute; run those with `--jobs 1`, alone on the machine).
Every run is then scored on held-out data: FID-fast and KID-fast of `--num-gen` samples of the raw
and of the EMA generator against the dataset's *test* split (the 1,000 test cars for the car
class), never against the training images the run saw. With `--metric` in a config, the run's
own tracked curve is summarised too (best and last tracked score).

The result is a markdown table (`results.md`, one row per config: mean over seeds and each seed),
`results.json` (the machine and precision each run recorded in its environment.json, the command
line, the scoring protocol: the fast extractor and its weights' SHA-256, the samples and their
seeds, the reference and its split; every run's figures), one EMA sample grid per config (seed of
the first run) and, where runs track a metric, their tracked curves side by side (`curves.png`) in
`--out`.

    python benchmarks/budget_sweep.py benchmarks/sweeps/example.yaml \\
        --data-root /path/to/cifar10 --classes automobile --kimg 100 --seeds 0,1 --jobs 2 --out sweep-out

The YAML file: `configs:` a list of mappings, each with a `name` and any `dcgan train` settings
(`preset: classic`, `g_channels: 64`, ...); an optional `common:` mapping applies to every config.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import yaml

from dcgan.checkpoint import load_generator
from dcgan.data import test_folder_beside
from dcgan.errors import UserError
from dcgan.metrics import compute_scores
from dcgan.metrics.conditional import per_class_scores
from dcgan.metrics.evaluate import generated_features, load_extractor
from dcgan.metrics.reference import RealSource, data_identity, reference_features
from dcgan.sampling import generate_images, is_conditional, save_grid
from held_out import (
    check_results_folder,
    command_line,
    extractor_protocol,
    recorded_machine,
    recorded_precision,
    run_environment,
    write_results,
)


def read_sweep(path: Path) -> list[dict]:
    if not path.is_file():
        raise SystemExit(f"sweep file not found: {path}")
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise SystemExit(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(document, dict):
        raise SystemExit(f"{path} must be a mapping with a `configs:` list")
    common = document.get("common") or {}
    configs = []
    for entry in document.get("configs") or []:
        entry = {**common, **entry}
        if "name" not in entry:
            raise SystemExit(f"{path}: every config needs a name")
        configs.append(entry)
    if not configs:
        raise SystemExit(f"{path}: no configs")
    return configs


def train_command(config: dict, *, data_root: str, classes: list[str], budget: dict, seed: int,
                  threads: int, outdir: Path, settings_file: Path) -> list[str]:
    settings = {k: v for k, v in config.items() if k != "name"}
    settings_file.write_text(yaml.safe_dump(settings))
    command = [sys.executable, "-m", "dcgan", "train", "--config", str(settings_file), "--dataset", "folder",
               "--data-root", data_root, "--seed", str(seed), "--outdir", str(outdir), "--threads", str(threads)]
    if classes:
        command += ["--classes", ",".join(classes)]
    for key, value in budget.items():
        command += [f"--{key}", str(value)]
    return command


def run_one(config: dict, seed: int, args) -> Path:
    """Train one (config, seed) in a subprocess; return its run folder.

    A finished run of the same config and seed is reused; with `--kimg` larger than it reached, it
    is resumed (exactly) up to `--kimg`, so a ranking at 100 kimg extends to 300 without retraining.
    """
    name = f"{config['name']}-s{seed}"
    outdir = args.runs / name
    done = [p.parent for p in outdir.glob("*/summary.json")]
    budget = {"kimg": args.kimg} if args.kimg else {"minutes": args.minutes}
    if done and not args.retrain:
        reached = json.loads((done[0] / "summary.json").read_text())["kimg"]
        if not args.kimg or reached >= args.kimg - 1e-6:
            return done[0]
        command = [sys.executable, "-m", "dcgan", "train", "--resume", str(done[0]), "--kimg", str(args.kimg),
                   "--threads", str(args.threads)]
    else:
        outdir.mkdir(parents=True, exist_ok=True)
        command = train_command(config, data_root=str(Path(args.data_root) / "train"), classes=args.classes,
                                budget=budget, seed=seed, threads=args.threads, outdir=outdir,
                                settings_file=outdir / "settings.yaml")
    log_path = outdir / "train.log"
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {' '.join(command[2:])}", flush=True)
    with open(log_path, "a") as log_file:
        result = subprocess.run(command, stdout=log_file, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    runs = sorted(p for p in outdir.iterdir() if p.is_dir())
    if result.returncode != 0 or not runs:
        raise SystemExit(f"{name} failed; see {log_path}")
    return runs[-1]


def score_run(run_dir: Path, extractor, reference, num_gen: int, test_source: RealSource) -> dict:
    """Held-out FID-fast/KID-fast of the raw and EMA generators, and the run's own figures (with the
    machine and precision it recorded); for a conditional run also the class accuracy and the mean
    intra-class FID-fast of its EMA generator (each class's samples against that class's test images)."""
    trained = run_environment(run_dir)  # first: a run that does not say where it trained is not scored
    summary = json.loads((run_dir / "summary.json").read_text())
    with open(run_dir / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    logged = [r for r in rows if r["images_per_s"]]
    speeds = [float(r["images_per_s"]) for r in logged[len(logged) // 5:]]  # after warm-up
    result = {"run": str(run_dir), "machine": trained["machine"], "precision": trained["precision"],
              **({"precision_derived": trained["precision_derived"]} if "precision_derived" in trained else {}),
              "kimg": summary["kimg"], "seconds": summary["seconds"],
              "images_per_s": statistics.median(speeds) if speeds else None}
    config = json.loads((run_dir / "config.json").read_text())
    for label, use_ema in (("raw", False), ("ema", True)):
        if use_ema and not config.get("ema_kimg"):
            continue
        generator, _ = load_generator(run_dir / "checkpoint-last.pt", use_ema=use_ema)
        generated = generated_features(generator, extractor, num_gen, seed=0, progress=False)
        scores = compute_scores(["fid", "kid"], generated, reference, extractor.kind)
        result[f"fid_fast_{label}"], result[f"kid_fast_{label}"] = scores["fid_fast"], scores["kid_fast"]
    if config.get("conditional"):  # the generator of the last pass: EMA where there is one
        per = per_class_scores(generator, extractor, test_source, ["fid"],
                               num_per_class=num_gen // generator.num_classes,
                               progress=False)
        result["class_accuracy"] = per["class_accuracy"]
        result["intra_fid_fast"] = statistics.mean(entry["fid_fast"] for entry in per["per_class"].values())
    if "best" in summary:
        tracked = [float(r["fid_fast"]) for r in rows if r.get("fid_fast")]
        result["tracked_best"], result["tracked_last"] = summary["best"]["value"], tracked[-1]
        result["tracked_curve"] = [[float(r["kimg"]), float(r["fid_fast"])] for r in rows if r.get("fid_fast")]
    return result


def plot_tracked_curves(results: dict[str, list[dict]], path: Path) -> None:
    """`path`: every run's tracked FID-fast against kimg, one line per config and seed (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, runs in results.items():
        for run in runs:
            if run.get("tracked_curve"):
                kimg, values = zip(*run["tracked_curve"])
                ax.plot(kimg, values, marker=".", linewidth=1, label=f"{name} (seed {run['seed']})")
    ax.set(xlabel="kimg", ylabel="tracked FID-fast (training images)", yscale="log",
           title="Tracked FID-fast over each run")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def fmt(values: list[float], digits: int = 3) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ({' / '.join(f'{v:.{digits}f}' for v in values)})"


def write_table(results: dict, args) -> str:
    budget = f"{args.kimg:g} kimg" if args.kimg else f"{args.minutes:g} minutes"
    conditional = any("class_accuracy" in r for runs in results.values() for r in runs)
    extra_header = " intra-class FID-fast | class accuracy |" if conditional else ""
    lines = [f"Budget {budget}, seeds {args.seeds}, {args.num_gen:,} samples per score against "
             f"{args.reference_name}; FID-fast / KID-fast on held-out images (lower is better); "
             f"mean (per seed).", "",
             "| config | kimg | img/s | FID-fast EMA | FID-fast raw | KID-fast EMA | tracked best / last |"
             + extra_header,
             "|---|---|---|---|---|---|---|" + ("---|---|" if conditional else "")]
    for name, runs in results.items():
        tracked = [f"{r['tracked_best']:.2f} / {r['tracked_last']:.2f}" for r in runs if "tracked_best" in r]
        extra = (f" {fmt([r.get('intra_fid_fast') for r in runs])} | {fmt([r.get('class_accuracy') for r in runs])} |"
                 if conditional else "")
        lines.append(f"| {name} | {fmt([r['kimg'] for r in runs], 0)} | {fmt([r['images_per_s'] for r in runs], 0)} | "
                     f"{fmt([r.get('fid_fast_ema') for r in runs])} | {fmt([r['fid_fast_raw'] for r in runs])} | "
                     f"{fmt([r.get('kid_fast_ema') for r in runs], 4)} | {', '.join(tracked) or '-'} |" + extra)
    lines += ["", "Grids (EMA generator where there is one, first seed): " +
              ", ".join(f"[{name}](grids/{name}.png)" for name in results), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", type=Path, help="YAML file with a list of configs")
    parser.add_argument("--data-root", required=True, help="image folder with train/ and test/ (the CIFAR-10 archive)")
    parser.add_argument("--classes", default="", help="comma-separated classes (e.g. automobile)")
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--kimg", type=float, default=0.0, help="fixed number of images per run (ranking)")
    budget.add_argument("--minutes", type=float, default=0.0, help="fixed wall-clock budget per run (confirming)")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (only with --kimg: timed runs run alone)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per run; 0: cores / jobs")
    parser.add_argument("--num-gen", type=int, default=5000)
    parser.add_argument("--fast-extractor", default="", help="extractor file (default: the data's, trained once)")
    parser.add_argument("--only", default="", help="comma-separated config names to run")
    parser.add_argument("--retrain", action="store_true", help="train again even where a finished run exists")
    parser.add_argument("--out", type=Path, required=True, help="folder for the table, grids and (by default) runs")
    parser.add_argument("--runs", type=Path, default=None, help="folder of the runs (default OUT/runs); "
                                                                 "share it between sweeps to extend runs")
    args = parser.parse_args()
    check_results_folder(args.out)
    if args.minutes and args.jobs != 1:
        parser.error("a wall-clock budget is timed: run it with --jobs 1, alone on the machine")
    args.classes = [c for c in args.classes.split(",") if c]
    args.threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    seeds = [int(s) for s in args.seeds.split(",")]
    configs = read_sweep(args.sweep)
    if args.only:
        wanted = set(args.only.split(","))
        configs = [c for c in configs if c["name"] in wanted]
    args.out.mkdir(parents=True, exist_ok=True)
    args.runs = args.runs or args.out / "runs"

    # The held-out reference first; then each run is trained (maybe several at once) and scored the same way.
    torch.set_num_threads(args.threads)
    data_root = Path(args.data_root)
    test_root = test_folder_beside(data_root) or data_root / "test"
    probe = RealSource("folder", str(test_root), "train", args.classes)
    test_data = probe.load()
    extractor = load_extractor("fast", source=RealSource("folder", str(data_root / "train")),
                               fast_extractor=args.fast_extractor or None,
                               resolution=test_data.resolution, channels=test_data.channels)
    reference = reference_features(extractor, probe, test_data, progress=False)
    of_classes = f" of {', '.join(args.classes)}" if args.classes else ""
    args.reference_name = f"the {len(test_data):,} test images{of_classes}"
    (args.out / "grids").mkdir(exist_ok=True)

    def train_and_score(job) -> dict:
        config, seed = job
        run_dir = run_one(config, seed, args)
        scored = {"seed": seed, **score_run(run_dir, extractor, reference, args.num_gen, probe)}
        print(f"{config['name']} seed {seed}: " + ", ".join(
            f"{k} {v:.4g}" for k, v in scored.items() if isinstance(v, float)), flush=True)
        if seed == seeds[0]:
            generator, _ = load_generator(run_dir / "checkpoint-last.pt")
            if is_conditional(generator):  # a row per class (up to ten), the same seeds in each
                images = torch.cat([generate_images(generator, range(8), classes=k)
                                    for k in range(min(10, generator.num_classes))])
            else:
                images = generate_images(generator, range(64))
            save_grid(images, args.out / "grids" / f"{config['name']}.png", nrow=8)
        return scored

    jobs = [(config, seed) for config in configs for seed in seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        scores = list(pool.map(train_and_score, jobs))
    results: dict[str, list[dict]] = {}
    for (config, _), scored in zip(jobs, scores):
        results.setdefault(config["name"], []).append(scored)
    runs = [run for config_runs in results.values() for run in config_runs]
    protocol = {"metrics": ["fid", "kid"], "feature_extractor": extractor_protocol(extractor),
                "generated": {"num_images": args.num_gen, "seeds": f"0-{args.num_gen - 1}",
                              "generators": "each run's checkpoint-last.pt: its raw generator and its EMA one",
                              "latents": "image i: randn(z_dim) from a generator seeded with i; a conditional "
                                         "generator's class drawn from seed i",
                              "per_class": f"conditional runs: {args.num_gen:,} // classes images of seeds 0.. per "
                                           f"class, scored against that class's test images (intra_fid_fast: "
                                           f"their mean; class_accuracy: the fast extractor's classifier)"},
                "reference": {**data_identity(probe, test_data), "name": args.reference_name, "split": "test"},
                "tracked": "tracked_best / tracked_last / tracked_curve: the run's own --metric as it trained "
                           "(against its training images), from its summary.json and metrics.csv"}
    write_results(args.out, args, write_table(results, args),
                  machine=recorded_machine((run["machine"] for run in runs), "the runs' environment.json"),
                  precision=recorded_precision(run["precision"] for run in runs), command=command_line(),
                  protocol=protocol, configs=configs, results=results)
    if any(run.get("tracked_curve") for runs in results.values() for run in runs):
        plot_tracked_curves(results, args.out / "curves.png")


if __name__ == "__main__":
    try:
        main()
    except UserError as error:  # a missing data folder, a bad extractor file: one line, as the CLI says it
        raise SystemExit(f"budget_sweep: {error}") from None
