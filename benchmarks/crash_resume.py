"""Fault injection: a run killed with SIGKILL again and again, resumed each time, ends bit-identical.

Starts a small seeded CPU run (`dcgan train`, a synthetic image folder, a snapshot every few
steps so checkpoint and image writes are frequent), kills it with SIGKILL, in turn: at a random
moment of training, the instant a temporary file shows up in the run folder (a checkpoint, grid,
GIF, plot or JSON being written), and during a resume's start-up (before its first step); it
resumes it with `dcgan train --resume` each time. Every few kills, while the run trains, a second
`dcgan train --resume` of the same folder is started: it must be refused (one writer per run
folder) and leave the run alone. After every kill it checks that `checkpoint-last.pt` loads, that
every sample grid decodes and that the CSV parses; at the end, against an uninterrupted run of
the same length: no temporary file left, the same grids, CSV steps logged once each in order, and
every weight, optimizer moment and RNG state identical.

    python benchmarks/crash_resume.py [--kills 20 --kimg 2 --seed 0] [--out docs/results/crash-resume]

With `--out`, results.json (the machine and precision the runs recorded in their environment.json,
the command line, the protocol, the kills by kind, the second writers refused of those started, the
checks and their outcome, the seconds) and results.md go there.

Exit status 0 when every check holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dcgan.checkpoint import load_checkpoint
from dcgan.training.state import state_tensors
from held_out import (
    check_results_folder,
    command_line,
    recorded_machine,
    recorded_precision,
    run_environment,
    write_results,
)

IMAGES = 256  # in the synthetic dataset
AFTER_EACH_KILL = ["checkpoint-last.pt loads", "every sample grid, plot and GIF decodes",
                   "metrics.csv parses with a valid first row"]
AT_THE_END = ["the last resume exits 0", "no temporary file is left in the run folder",
              "metrics.csv logs the same steps as the uninterrupted run, each once, in order",
              "the same sample grids as the uninterrupted run",
              "every weight, optimizer moment and RNG state of checkpoint-last.pt bit-identical to the "
              "uninterrupted run's"]


def make_images(root: Path, count: int = IMAGES) -> Path:
    """A folder dataset of random smooth 32x32 images (one class), so no download is needed."""
    folder = root / "images" / "blobs"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        small = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
        Image.fromarray(small).resize((32, 32), Image.BILINEAR).save(folder / f"{i:04d}.png")
    return folder.parent


def train_command(data: Path, outdir: Path, kimg: float, seed: int) -> list[str]:
    return [sys.executable, "-m", "dcgan", "train", "--dataset", "folder", "--data-root", str(data),
            "--g-channels", "8", "--d-channels", "8", "--batch-size", "16", "--snapshot-kimg", "0.08",
            "--log-every", "2", "--grid-size", "16", "--kimg", str(kimg), "--seed", str(seed),
            "--threads", "1", "--outdir", str(outdir)]


def temp_files(run: Path) -> list[Path]:
    return [p for p in run.rglob(".*.tmp*") if p.is_file()]


def check_folder(run: Path) -> list[str]:
    """What is wrong with a run folder right after a kill: an unloadable checkpoint, a torn grid, a bad CSV."""
    problems = []
    if (run / "checkpoint-last.pt").exists():
        try:
            load_checkpoint(run / "checkpoint-last.pt")
        except Exception as error:
            problems.append(f"checkpoint-last.pt does not load: {error}")
    for path in sorted((run / "samples").glob("*.png")) + sorted(run.glob("*.png")) + sorted(run.glob("*.gif")):
        try:
            with Image.open(path) as image:
                image.load()
        except Exception as error:
            problems.append(f"torn image {path.name}: {type(error).__name__}")
    if (run / "metrics.csv").exists():
        with open(run / "metrics.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        if rows and not rows[0].get("step", "").isdigit():
            problems.append("metrics.csv has no valid first row")
    return problems


def logged_steps(run: Path) -> list[int]:
    with open(run / "metrics.csv", newline="") as handle:
        return [int(row["step"]) for row in csv.DictReader(handle) if row.get("loss_d")]


def wait_until_training(process: subprocess.Popen, run_parent: Path, run: Path | None, limit_s: float = 120) -> None:
    """Until the process logs a new CSV row (it has started up and is training), or it ends."""
    def csv_size() -> int:
        runs = [p for p in run_parent.iterdir() if p.is_dir()] if run_parent.exists() else []
        path = runs[0] / "metrics.csv" if runs else None
        return path.stat().st_size if path is not None and path.exists() else 0

    before, end = csv_size() if run is not None else 0, time.time() + limit_s
    while time.time() < end and process.poll() is None and csv_size() <= before:
        time.sleep(0.01)


def kill_when_writing(process: subprocess.Popen, run_parent: Path, limit_s: float, stale: set[Path]) -> bool:
    """Poll for a new temporary file in the run folder (not one of `stale`, left by the last kill) and
    SIGKILL at once; True if one was seen."""
    end = time.time() + limit_s
    while time.time() < end and process.poll() is None:
        runs = [p for p in run_parent.iterdir() if p.is_dir()] if run_parent.exists() else []
        if runs and set(temp_files(runs[0])) - stale:
            process.send_signal(signal.SIGKILL)
            return True
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--kimg", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", help="keep the runs in this folder instead of a temporary one")
    parser.add_argument("--out", help="write results.json and results.md to this folder (default: print only)")
    args = parser.parse_args()
    out = check_results_folder(args.out) if args.out else None
    rng = random.Random(args.seed)
    root = Path(args.keep or tempfile.mkdtemp(prefix="crash-resume-"))
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DCGAN_CACHE": str(root / "cache")}
    data = make_images(root)
    started = time.time()

    print("uninterrupted run ...", flush=True)
    subprocess.run(train_command(data, root / "straight", args.kimg, args.seed), env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (straight,) = (root / "straight").iterdir()
    straight_seconds = time.time() - started

    problems, kills, during_writes, restarts_from_scratch = [], 0, 0, 0
    during_startup = second_writers_refused = second_writers_started = folders_checked = 0
    final_state_identical = None
    aimed = {"random_moment": 0, "while_writing": 0, "resume_startup": 0}  # the kills by the moment aimed at
    killed_parent = root / "killed"
    run: Path | None = None
    while True:
        if run is not None and (run / "checkpoint-last.pt").exists():
            command = [sys.executable, "-m", "dcgan", "train", "--resume", str(run), "--threads", "1"]
        else:  # killed before its first checkpoint: nothing to resume, start again
            if run is not None:
                shutil.rmtree(run)
                restarts_from_scratch += 1
            command = train_command(data, killed_parent, args.kimg, args.seed)
        stale = set(temp_files(run)) if run is not None else set()
        launched = time.time()
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if kills >= args.kills:
            _, stderr = process.communicate()
            if process.returncode != 0:
                problems.append(f"the last resume failed: {stderr.strip().splitlines()[-1:]}")
            break
        mode = kills % 3
        if mode == 2 and run is not None:  # during the resume's start-up: imports, loading, the lock
            aimed["resume_startup"] += 1
            time.sleep(rng.uniform(0.0, 2.0))
            process.send_signal(signal.SIGKILL)
            process.wait()
            during_startup += (run / "metrics.csv").stat().st_mtime < launched  # its log not yet opened
        else:
            wait_until_training(process, killed_parent, run)
            if run is not None and kills % 4 == 1 and process.poll() is None:
                second_writers_started += 1
                second = subprocess.run([sys.executable, "-m", "dcgan", "train", "--resume", str(run), "--threads",
                                         "1"], env=env, capture_output=True, text=True, timeout=300)
                if second.returncode != 0 and "is being trained by process" in second.stderr:
                    second_writers_refused += 1
                elif process.poll() is None:
                    problems.append(f"a second writer was not refused: {second.stderr.strip().splitlines()[-1:]}")
            if mode == 0:
                aimed["random_moment"] += 1
                time.sleep(rng.uniform(0.0, 3.0))  # a random moment, mostly mid-step
                process.send_signal(signal.SIGKILL)
            else:
                aimed["while_writing"] += 1
                during_writes += kill_when_writing(process, killed_parent, rng.uniform(3.0, 12.0), stale)
        process.wait()
        kills += 1
        run = next((p for p in killed_parent.iterdir() if p.is_dir()), None) if killed_parent.exists() else None
        if run is not None:
            folders_checked += 1
            for problem in check_folder(run):
                problems.append(f"after kill {kills}: {problem}")
        state = load_checkpoint(run / "checkpoint-last.pt") if run and (run / "checkpoint-last.pt").exists() else None
        print(f"kill {kills:2d}: step {state['step'] if state else '-'}"
              f"{'' if process.returncode == -signal.SIGKILL else ' (it had ended by itself)'}", flush=True)

    if run is None:
        problems.append("no run folder")
    else:
        if temp_files(run):
            problems.append(f"temporary files left: {[p.name for p in temp_files(run)]}")
        if logged_steps(run) != logged_steps(straight):
            problems.append("metrics.csv steps differ from the uninterrupted run")
        grids = sorted(p.name for p in (run / "samples").glob("*.png"))
        if grids != sorted(p.name for p in (straight / "samples").glob("*.png")):
            problems.append("the sample grids differ from the uninterrupted run's")
        a = state_tensors(load_checkpoint(straight / "checkpoint-last.pt"))
        b = state_tensors(load_checkpoint(run / "checkpoint-last.pt"))
        different = [k for k in a if k not in b or not torch.equal(a[k], b[k])]
        final_state_identical = a.keys() == b.keys() and not different
        if a.keys() != b.keys() or different:
            problems.append(f"final state differs from the uninterrupted run: {different[:5]}")
    all_seconds = time.time() - started
    print(f"\n{kills} SIGKILLs ({during_writes} while a file was being written, {during_startup} during a "
          f"resume's start-up, {restarts_from_scratch} before the first checkpoint), {second_writers_refused} second "
          f"writers refused, {args.kimg:g} kimg; uninterrupted run {straight_seconds:.0f} s, "
          f"all {all_seconds:.0f} s")
    for problem in problems:
        print("FAIL", problem)
    if not problems:
        print("PASS: every checkpoint loaded, no torn image, no temp file left, CSV continuous, "
              "final weights, optimizer and RNG state bit-identical to the uninterrupted run")
    if out is not None:
        figures = {"kills": {"total": kills, "while_a_file_was_being_written": during_writes,
                             "during_a_resumes_start_up": during_startup,
                             "before_the_first_checkpoint": restarts_from_scratch, "aimed_at": aimed},
                   "second_writers": {"started": second_writers_started, "refused": second_writers_refused},
                   "outcome": "FAIL" if problems else "PASS", "final_state_bit_identical": final_state_identical,
                   "uninterrupted_seconds": round(straight_seconds, 1), "all_seconds": round(all_seconds, 1),
                   "killed_and_resumed_seconds": round(all_seconds - straight_seconds, 1),
                   "checks": {"after_each_kill": AFTER_EACH_KILL, "folders_checked_after_kills": folders_checked,
                              "at_the_end": AT_THE_END, "problems": problems}}
        write_report(out, args, [straight, run], figures)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if problems else 0


def write_report(out: Path, args, runs: list[Path | None], figures: dict) -> None:
    """results.json and results.md in `out`: the figures printed, with the machine and precision the
    runs recorded in their environment.json (both runs train with `--precision auto`)."""
    recorded = [run_environment(run) for run in runs if run is not None and (run / "environment.json").is_file()]
    kills, writers = figures["kills"], figures["second_writers"]
    bit_identical = {True: "yes", False: "no", None: "not compared"}[figures["final_state_bit_identical"]]
    table = "\n".join([
        f"Crash and resume: {args.kimg:g} kimg of a tiny seeded run, SIGKILLed {kills['total']} times and resumed "
        f"each time, against an uninterrupted run of the same length.", "",
        "| figure | value |", "|---|---|",
        f"| SIGKILLs | {kills['total']} |",
        f"| ... while a file was being written | {kills['while_a_file_was_being_written']} |",
        f"| ... during a resume's start-up | {kills['during_a_resumes_start_up']} |",
        f"| ... before the first checkpoint | {kills['before_the_first_checkpoint']} |",
        f"| second writers refused / started | {writers['refused']} / {writers['started']} |",
        f"| run folders checked after a kill | {figures['checks']['folders_checked_after_kills']} |",
        f"| final state bit-identical | {bit_identical} |",
        f"| outcome | {figures['outcome']} |",
        f"| uninterrupted run | {figures['uninterrupted_seconds']:.0f} s |",
        f"| all (uninterrupted, then killed and resumed) | {figures['all_seconds']:.0f} s |", ""]
        + [f"FAIL {problem}" for problem in figures["checks"]["problems"]]) + "\n"
    protocol = {
        "measured": "a dcgan train run killed with SIGKILL again and again and resumed with dcgan train --resume "
                    "each time ends bit-identical to an uninterrupted run of the same length",
        "training": f"dcgan train on {IMAGES} synthetic smooth 32x32 images (one class), --g-channels 8 --d-channels 8 "
                    f"--batch-size 16 --snapshot-kimg 0.08 --log-every 2 --grid-size 16 --kimg {args.kimg:g} "
                    f"--seed {args.seed} --threads 1, --precision and --device left at auto",
        "kills": "in turn: at a random moment 0-3 s into training; the instant a new temporary file shows up in the "
                 "run folder (else after 3-12 s); 0-2 s into a resume's start-up (counted as during start-up where "
                 "its metrics.csv was not yet opened); kill moments drawn from random.Random(--seed)",
        "second_writers": "every 4th kill (kills % 4 == 1), while the run trains, a second dcgan train --resume of the "
                          "same folder: refused when it exits non-zero naming the process training the folder",
        "checks": "after every kill, checks.after_each_kill on the run folder; at the end, checks.at_the_end against "
                  "the uninterrupted run; PASS when none fails (checks.problems empty)"}
    write_results(out, args, table, machine=recorded_machine((r["machine"] for r in recorded), "the runs' "
                                                                                                "environment.json"),
                  precision=recorded_precision((r["precision"] for r in recorded), "the runs' environment.json"),
                  command=command_line(), protocol=protocol, **figures)


if __name__ == "__main__":
    sys.exit(main())
