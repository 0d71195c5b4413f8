"""How far FID-fast can be trusted: its rank agreement with Inception FID over checkpoints that span
runs from bad to good, under more than one recipe.

Each recipe trains once on `--data-root/train` (a fixed number of kimg, a snapshot checkpoint every
`--snapshot-kimg`, all kept); then every checkpoint's EMA generator draws `--num-gen` images (image i
from seed i), once, and both extractors score the same images against the test split of the same
classes: Inception FID and KID (the 2015-12-05 network) and FID-fast and KID-fast (the toolkit's
fast extractor). The report gives, over all checkpoints and within each run:

- Spearman's rank correlation of FID-fast with Inception FID, and of KID-fast with KID;
- whether the checkpoint FID-fast calls best is within 5 % of the best Inception FID of that run
  (the decision `--metric fid-fast` makes when it keeps `checkpoint-best.pt`).

    python benchmarks/fast_trust.py --data-root /tmp/cifar10 --classes automobile \\
        --recipe cpu-v1:150:15 --recipe classic:60:15 --num-gen 1000 --out docs/results/fast-trust-cars

`--recipe PRESET:KIMG:SNAPSHOT_KIMG` trains one run; `--score-only` scores runs trained before. The
evidence of an earlier run of the example is in docs/results/unverified/fast-trust-cars. results.json
records the machine and precision each run recorded in its environment.json, the command line and
the protocol (both extractors with their weights' SHA-256, the samples and their seeds, the
reference and its split).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from scipy.stats import spearmanr

from held_out import (
    HeldOut,
    check_results_folder,
    command_line,
    recorded_machine,
    recorded_precision,
    run_environment,
    write_results,
)

METRICS = {"inception": ["fid", "kid"], "fast": ["fid", "kid"]}


def train_recipe(preset: str, kimg: float, snapshot_kimg: float, args, outdir: Path) -> None:
    command = [sys.executable, "-m", "dcgan", "train", "--preset", preset, "--dataset", "folder",
               "--data-root", str(Path(args.data_root) / "train"), "--kimg", f"{kimg:g}",
               "--snapshot-kimg", f"{snapshot_kimg:g}", "--keep-snapshots", "1000", "--seed", str(args.seed),
               "--outdir", str(outdir)]
    if args.classes:
        command += ["--classes", ",".join(args.classes)]
    print(f"[{time.strftime('%H:%M:%S')}] {' '.join(command[1:])}", flush=True)
    outdir.mkdir(parents=True, exist_ok=True)
    with open(outdir / "train.log", "a") as log:
        if subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
            raise SystemExit(f"training {preset} failed; see {outdir / 'train.log'}")


def run_folder(outdir: Path) -> Path:
    """The finished run in a recipe's folder."""
    return next(p for p in sorted(outdir.iterdir()) if (p / "summary.json").is_file())


def checkpoints(outdir: Path) -> list[Path]:
    """A run's snapshot checkpoints in training order (kimg in the name)."""
    return sorted(run_folder(outdir).glob("checkpoint-kimg*.pt"))


def score_checkpoints(runs: dict[str, list[Path]], args) -> tuple[list[dict], dict]:
    """A row of scores per checkpoint, and the scoring protocol."""
    from dcgan.checkpoint import load_generator
    from dcgan.sampling import generate_images

    held_out = HeldOut(args.data_root, args.classes)
    rows = []
    for recipe, paths in runs.items():
        for path in paths:
            generator, _ = load_generator(path)
            images = generate_images(generator, range(args.num_gen))  # once, for both extractors
            row = {"recipe": recipe, "checkpoint": path.name, "kimg": float(path.stem.removeprefix("checkpoint-kimg"))}
            row.update(held_out.score(images, METRICS, f"{recipe} {path.stem}"))
            print({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
            rows.append(row)
    return rows, held_out.protocol(METRICS, args.num_gen, checkpoints="each snapshot's EMA generator (its "
                                   "generator where the run keeps no EMA)")


def agreement(rows: list[dict]) -> dict:
    """Spearman of the fast scores with Inception's, and whether FID-fast's pick is within 5 % of the best."""
    fid, fid_fast = [r["fid"] for r in rows], [r["fid_fast"] for r in rows]
    pick = min(rows, key=lambda r: r["fid_fast"])
    best = min(fid)
    return {"checkpoints": len(rows),
            "spearman_fid": float(spearmanr(fid, fid_fast).statistic),
            "spearman_kid": float(spearmanr([r["kid"] for r in rows], [r["kid_fast"] for r in rows]).statistic),
            "fast_pick": pick["checkpoint"], "fast_pick_fid": pick["fid"], "best_fid": best,
            "pick_within_5pct": pick["fid"] <= 1.05 * best}


def report(rows: list[dict], args) -> str:
    groups = {"all": rows, **{recipe: [r for r in rows if r["recipe"] == recipe] for recipe in dict.fromkeys(
        r["recipe"] for r in rows)}}
    lines = [f"{args.num_gen:,} samples per checkpoint (seeds 0-{args.num_gen - 1}) against the test images"
             f"{' of ' + ', '.join(args.classes) if args.classes else ''}, both extractors on the same images "
             f"({args.cpu}).", "",
             "| checkpoints | n | Spearman FID-fast vs FID | Spearman KID-fast vs KID | FID-fast's pick: FID | "
             "best FID | within 5 % |", "|---|---|---|---|---|---|---|"]
    for name, group in groups.items():
        a = agreement(group)
        within = "yes" if a["pick_within_5pct"] else "no" if name != "all" else "(across runs)"
        lines.append(f"| {name} | {a['checkpoints']} | {a['spearman_fid']:.3f} | {a['spearman_kid']:.3f} | "
                     f"{a['fast_pick_fid']:.1f} ({a['fast_pick']}) | {a['best_fid']:.1f} | {within} |")
    lines += ["", "| recipe | kimg | Inception FID | KID | FID-fast | KID-fast |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['recipe']} | {r['kimg']:.1f} | {r['fid']:.1f} | {r['kid']:.4f} | {r['fid_fast']:.3f} | "
              f"{r['kid_fast']:.5f} |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", required=True, help="image folder with train/ and test/ (the CIFAR-10 archive)")
    parser.add_argument("--classes", default="", help="comma-separated classes (e.g. automobile)")
    parser.add_argument("--recipe", action="append", required=True, help="PRESET:KIMG:SNAPSHOT_KIMG")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-gen", type=int, default=1000)
    parser.add_argument("--score-only", action="store_true", help="score runs trained before")
    parser.add_argument("--cpu", default="", help="the machine, as the report names it (default: the machine the "
                                                   "runs recorded; results.json records that)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    check_results_folder(args.out)
    args.classes = [c for c in args.classes.split(",") if c]
    runs, trained = {}, {}
    for spec in args.recipe:
        preset, kimg, snapshot = spec.split(":")
        outdir = args.out / "runs" / preset
        if not args.score_only:
            train_recipe(preset, float(kimg), float(snapshot), args, outdir)
        runs[preset] = checkpoints(outdir)
        trained[preset] = {"run": str(run_folder(outdir)), **run_environment(run_folder(outdir))}
    machine = recorded_machine((run["machine"] for run in trained.values()), "the runs' environment.json")
    rows, protocol = score_checkpoints(runs, args)
    named = argparse.Namespace(**{**vars(args), "cpu": args.cpu or (  # the report's name of the machine
        machine if isinstance(machine, str) else " / ".join(machine))})
    write_results(args.out, args, report(rows, named), machine=machine,
                  precision=recorded_precision(run["precision"] for run in trained.values()), command=command_line(),
                  protocol=protocol, runs=trained, rows=rows)


if __name__ == "__main__":
    main()
