"""Quality against images seen: score the snapshots of long runs in Inception FID, and plot the curves.

Each run is a `dcgan train` run folder kept with `--snapshot-kimg K --keep-snapshots N`, so that its
`checkpoint-kimgNNNNNN.pt` snapshots hold the EMA generator at fixed numbers of images. Each
snapshot named in `--kimg` is scored with `dcgan evaluate` (Inception FID and KID, `--num-gen`
samples of seeds 0.., against `--ref`, the held-out split), its record kept in `--out`/scores/ so a
killed or repeated scoring goes on where it stopped. D's state near each snapshot (loss, mean real
and fake logits over the last 5 kimg before it) comes from the run's metrics.csv.

    python benchmarks/long_budget.py --run cpu-v1=runs/00000-folder-cpu-v1 --run new=runs/00001-folder-cpu-v1 \\
        --kimg 500,1000,1500 --ref cifar10/test --classes automobile --num-gen 5000 --out docs/results/long-budget-cars

Writes results.json (machine, precision, the runs' commands, the protocol, every score), results.md
(the table), curves.png (FID against millions of images, with `--anchor NAME=MIMG:FID` points for
published figures) and grids/ (each run's sample grid at each scored snapshot).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
from pathlib import Path

from held_out import (
    check_results_folder,
    command_line,
    recorded_machine,
    recorded_precision,
    run_environment,
    write_results,
)


def parse_named(values: list[str], what: str) -> dict[str, str]:
    named = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            raise SystemExit(f"{what} takes NAME=VALUE, not {value!r}")
        named[name] = rest
    return named


def snapshot(run: Path, kimg: int) -> Path:
    path = run / f"checkpoint-kimg{kimg:06d}.pt"
    if not path.is_file():
        raise SystemExit(f"{run} has no snapshot at {kimg} kimg ({path.name}); train it with --snapshot-kimg and "
                         f"--keep-snapshots")
    return path


def score(name: str, run: Path, kimg: int, args) -> dict:
    """The evaluation record of one snapshot (scored now unless --out/scores holds it)."""
    out = score_path(args, name, kimg)
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        metrics = "fid-fast,kid-fast" if args.features == "fast" else "fid,kid"
        command = ["dcgan", "evaluate", "--checkpoint", str(snapshot(run, kimg)), "--ref", args.ref,
                   "--num-gen", str(args.num_gen), "--metrics", metrics, "--offline", "--out", str(out)]
        if args.classes:
            command += ["--classes", args.classes]
        if args.fast_extractor:
            command += ["--fast-extractor", args.fast_extractor]
        subprocess.run(command, check=True)
    return json.loads(out.read_text())["evaluations"][-1]


def score_path(args, name: str, kimg: int) -> Path:
    """Where one snapshot's evaluation record is kept: NAME-kimgK.json (Inception), NAME-kimgK-fast.json."""
    return args.out / "scores" / f"{name}-kimg{kimg}{'-fast' if args.features == 'fast' else ''}.json"


def d_state(run: Path, kimg: int, window: float = 5.0) -> dict:
    """Mean D loss and real / fake logits over the rows of the last `window` kimg before `kimg`."""
    with open(run / "metrics.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if kimg - window <= float(row["kimg"]) <= kimg]
    mean = lambda key: sum(float(r[key]) for r in rows) / len(rows) if rows else None  # noqa: E731
    return {"loss_d": mean("loss_d"), "d_real": mean("d_real"), "d_fake": mean("d_fake"), "rows": len(rows)}


def run_facts(run: Path) -> dict:
    environment = json.loads((run / "environment.json").read_text())
    config = json.loads((run / "config.json").read_text())
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
    trained = run_environment(run)  # the precision too of run folders written before environment.json named it
    where = {"gpu": environment["gpu"]} if environment.get("gpu") else {"cpu": environment.get("cpu")}
    return {**where, "torch": environment.get("torch"), "command": environment.get("command"),
            "precision": trained["precision"], "precision_flag": config.get("precision"), "kimg": config.get("kimg"),
            "seed": config.get("seed"),
            "summary": summary}


def plot(curves: dict[str, list[tuple[float, float]]], anchors: dict[str, tuple[float, float]], path: Path,
         title: str, floor: float | None = None, ylabel: str = "Inception FID (lower is better)") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, points in curves.items():
        axes.plot([m for m, _ in points], [f for _, f in points], marker="o", label=name)
    for name, (mimg, fid) in anchors.items():
        axes.scatter([mimg], [fid], marker="*", s=120, color="black", zorder=3)
        axes.annotate(name, (mimg, fid), textcoords="offset points", xytext=(6, 4), fontsize=8)
    if floor is not None:
        axes.axhline(floor, color="grey", linestyle="--", linewidth=1)
        axes.text(0.01, floor, f" real vs real floor {floor:g}", transform=axes.get_yaxis_transform(),
                  va="bottom", fontsize=8, color="grey")  # x in axes fractions, y in FID
    axes.set_xscale("log")
    axes.set_xlabel("millions of real images seen by D")
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    from dcgan.files import atomic_write

    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120))
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, metavar="NAME=RUN", help="a run folder (repeatable)")
    parser.add_argument("--kimg", required=True, help="comma-separated snapshots to score, e.g. 500,1000,1500 (a run "
                                                      "without one of them is left out there)")
    parser.add_argument("--ref", required=True, help="the held-out reference (a split or an image folder)")
    parser.add_argument("--classes", default="", help="classes of the reference")
    parser.add_argument("--num-gen", type=int, default=10_000)
    parser.add_argument("--features", choices=("inception", "fast"), default="inception",
                        help="Inception FID/KID, or FID-fast/KID-fast to rank cheaply")
    parser.add_argument("--fast-extractor", default="", help="with --features fast: the extractor file (keep one "
                                                             "file for all the snapshots compared)")
    parser.add_argument("--anchor", action="append", default=[], metavar="NAME=MIMG:FID",
                        help="a published figure drawn as a labelled point (repeatable)")
    parser.add_argument("--floor", type=float, help="the FID of real training images against the reference, drawn "
                                                     "as a line")
    parser.add_argument("--score-only", action="store_true", help="score, write no table")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    check_results_folder(args.out)
    runs = {name: Path(path) for name, path in parse_named(args.run, "--run").items()}
    points = [int(k) for k in args.kimg.split(",") if k.strip()]
    anchors = {name: tuple(float(x) for x in value.split(":")) for name, value in
               parse_named(args.anchor, "--anchor").items()}

    results, curves = {}, {}
    (args.out / "grids").mkdir(parents=True, exist_ok=True)
    for name, run in runs.items():
        rows = []
        for kimg in points:
            if not (run / f"checkpoint-kimg{kimg:06d}.pt").is_file() and \
                    not score_path(args, name, kimg).is_file():
                print(f"{name}: no snapshot at {kimg} kimg (the run did not reach it); left out")
                continue
            record = score(name, run, kimg, args)
            suffix = "_fast" if args.features == "fast" else ""
            rows.append({"kimg": kimg, "fid": record["scores"][f"fid{suffix}"], "kid": record["scores"][f"kid{suffix}"],
                         "d": d_state(run, kimg)})
            grids = sorted((run / "samples").glob(f"fakes-kimg{kimg:06d}.*.png")) + \
                sorted((run / "samples").glob(f"fakes-kimg{kimg - 1:06d}.*.png"))
            if grids:
                shutil.copyfile(grids[0], args.out / "grids" / f"{name}-kimg{kimg}.png")
        protocol = record["protocol"]
        results[name] = {"run": run_facts(run), "points": rows}
        curves[name] = [(row["kimg"] / 1000, row["fid"]) for row in rows]
    if args.score_only:
        return
    machine = recorded_machine((result["run"].get("gpu") or result["run"].get("cpu") for result in results.values()),
                               "the runs' environment.json")
    cpu = machine if isinstance(machine, str) else " / ".join(machine)
    metric = "FID-fast" if args.features == "fast" else "Inception FID"
    plot(curves, anchors, args.out / "curves.png",
         f"{metric}, {args.num_gen:,} samples vs {args.ref} {args.classes}".strip() + f"; {cpu}", args.floor,
         ylabel=f"{metric} (lower is better)")
    lines = [f"{metric} / KID ({args.num_gen:,} samples, seeds 0-{args.num_gen - 1}, against {args.ref}"
             f"{' [' + args.classes + ']' if args.classes else ''}); D's loss and mean logits over the 5 kimg "
             f"before each snapshot. Trained on {cpu}, "
             f"{' and '.join(sorted({r['run']['precision'] for r in results.values()}))}.", "",
             f"| run | kimg | {metric} | KID | D loss | D(x) / D(G(z)) |", "|---|---|---|---|---|---|"]
    for name, result in results.items():
        for row in result["points"]:
            d = row["d"]
            logits = f"{d['d_real']:+.2f} / {d['d_fake']:+.2f}" if d["rows"] else "-"
            loss = f"{d['loss_d']:.3f}" if d["rows"] else "-"
            lines.append(f"| {name} | {row['kimg']:,} | {row['fid']:.{2 if args.features == 'inception' else 3}f} | "
                         f"{row['kid']:.{4 if args.features == 'inception' else 5}f} | {loss} | {logits} |")
    lines += ["", "Commands:", *[f"- {name}: `{result['run']['command']}`" for name, result in results.items()], ""]
    write_results(args.out, args, "\n".join(lines), machine=machine, command=command_line(),
                  precision=recorded_precision(result["run"]["precision"] for result in results.values()),
                  protocol={"metric": f"{metric}/KID", "feature_extractor": protocol["feature_extractor"],
                            "generated": {"num_images": args.num_gen, "seeds": f"0-{args.num_gen - 1}"},
                            "reference": protocol.get("reference")},
                  anchors={k: {"mimg": v[0], "fid": v[1]} for k, v in anchors.items()}, floor=args.floor,
                  results=results)


if __name__ == "__main__":
    main()
