"""The runs pages: every run of `--runs` with its grids, curves and state (/runs), and the files
those pages show (/runs/RUN/FILE), and nothing else of a run folder.

Run files are served only for real runs (a folder of `--runs` with `config.json`) and only the
files a run page shows: its plots, grids, metrics.csv and config/summary/model JSON; never
`environment.json` (the command line) or anything in a sub-folder such as a W&B folder. Only
regular files whose real path (symbolic links followed) stays inside the real run folder, itself
inside the real `--runs` folder, are read: a link planted in a run folder reads nothing. The JSON
files are served with absolute paths of the training machine cut to their last part. A run is
read again only when its files' modification times change, its CSV only at its tail, and a run
whose files are torn, missing or unreadable shows as broken instead of failing the page.
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

from flask import Blueprint, jsonify, render_template, send_from_directory
from werkzeug.utils import safe_join

from dcgan.server.state import BadRequest, state
from dcgan.training.report import METRIC_COLUMNS

RUN_FILES = ("progress.gif", "losses.png", "loss_variance.png", "metric.png", "real_vs_fake.png")
SERVED_RUN_FILES = RUN_FILES + ("metrics.csv", "config.json", "summary.json", "model.json", "model_summary.txt")
CSV_TAIL_BYTES = 64 * 1024

blueprint = Blueprint("runs", __name__)


def runs_root() -> Path:
    root = state().runs_root
    if root is None:
        raise BadRequest("this server was started without --runs", 404)
    return root


@blueprint.get("/runs")
def runs_page():
    root = runs_root()
    runs = [cached_run(p) for p in sorted(root.iterdir(), reverse=True) if is_run(p, root)]
    training = any(run.get("training") for run in runs)
    return render_template("runs.html", runs=runs, refresh=training, models=list(state().models))


@blueprint.get("/runs/<run>/<path:filename>")
def run_file(run: str, filename: str):
    root = runs_root()
    folder = safe_join(str(root), run)
    if folder is None or run.startswith(".") or not is_run(Path(folder), root):
        raise BadRequest(f"no run named {run[:60]!r}", 404)
    parts = Path(filename).parts
    top_level = len(parts) == 1 and parts[0] in SERVED_RUN_FILES
    grid = len(parts) == 2 and parts[0] == "samples" and parts[1].startswith("fakes") and parts[1].endswith(".png")
    if not (top_level or grid) or not inside(Path(folder) / filename, Path(folder), regular_file=True):
        raise BadRequest(f"{filename[:60]!r} is not one of the files a run page shows", 404)
    if filename.endswith(".json"):
        try:
            document = json.loads((Path(folder) / filename).read_text())
        except (OSError, ValueError):
            raise BadRequest(f"{filename} of run {run[:60]!r} is torn or unreadable", 404) from None
        return jsonify(without_paths(document))
    return send_from_directory(folder, filename, max_age=0)


def inside(path: Path, folder: Path, regular_file: bool = False) -> bool:
    """Whether `path`, links followed, is in `folder` (links followed) and, if asked, a regular file."""
    try:
        real, real_folder = path.resolve(strict=True), folder.resolve(strict=True)
        return real.is_relative_to(real_folder) and (not regular_file or real.is_file())
    except (OSError, RuntimeError):  # missing, unreadable, a loop of links
        return False


def is_run(path: Path, root: Path) -> bool:
    """A real run: a folder of --runs (not a hidden one, not a link out of it) with its config.json."""
    try:
        return (not path.name.startswith(".") and path.is_dir() and inside(path, root)
                and inside(path / "config.json", path, regular_file=True))
    except OSError:  # lost+found, another user's folder
        return False


def without_paths(value):
    """A JSON value with every absolute path cut to its last part (the training machine's folders
    are nobody's business): '/home/ana/data/cifar10' -> 'cifar10'."""
    if isinstance(value, dict):
        return {key: without_paths(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_paths(item) for item in value]
    if isinstance(value, str) and (value.startswith("/") or value.startswith("~") or is_windows_path(value)):
        return Path(value.replace("\\", "/")).name
    return value


def is_windows_path(value: str) -> bool:
    return len(value) > 2 and value[1] == ":" and value[2] in "\\/"


def cached_run(path: Path) -> dict:
    """describe_run, read again only when one of the run's files changed."""
    cache = state().run_cache
    stamps = tuple(mtime(path / name) for name in ("config.json", "summary.json", "metrics.csv", "samples"))
    hit = cache.get(path)
    if hit is None or hit[0] != stamps:
        try:
            description = describe_run(path)
        except (OSError, ValueError, KeyError, TypeError) as error:  # a torn, half-written or hostile file
            description = {"name": path.name, "broken": f"{type(error).__name__}: {str(error)[:120]}",
                           "config": {}, "files": [], "last": {}, "summary": None, "score": None}
        hit = cache[path] = (stamps, description)
    description = hit[1]
    since = description.get("training_since")
    return {**description, "training": since is not None and time.time() - since < 120}


def describe_run(path: Path) -> dict:
    config = without_paths(json.loads((path / "config.json").read_text()))
    if not isinstance(config, dict):
        raise ValueError("config.json is not a mapping")
    summary_path = path / "summary.json"
    samples = sorted((path / "samples").glob("fakes*.png")) if (path / "samples").is_dir() else []
    samples = [sample for sample in samples if inside(sample, path, regular_file=True)]
    metrics = path / "metrics.csv"
    summary = without_paths(json.loads(summary_path.read_text())) if inside(summary_path, path, True) else None
    if summary is not None and not isinstance(summary, dict):
        raise ValueError("summary.json is not a mapping")
    if summary and summary.get("best") is not None:
        float(summary["best"]["value"])  # the page prints it as a number: a broken row otherwise
    rows = csv_tail(metrics) if inside(metrics, path, regular_file=True) else []
    return {
        "name": path.name, "config": config, "summary": summary,
        "training_since": metrics.stat().st_mtime if metrics.is_file() and summary is None else None,
        "latest": f"samples/{samples[-1].name}" if samples else None,
        "files": [name for name in RUN_FILES if inside(path / name, path, regular_file=True)],
        "last": next((row for row in reversed(rows) if row.get("loss_d")), {}),
        "score": next(({"name": name, "value": float(row[name]), "kimg": row["kimg"]} for row in reversed(rows)
                       for name in METRIC_COLUMNS if row.get(name)), None),
    }


def mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def csv_tail(path: Path) -> list[dict]:
    """The rows in the last CSV_TAIL_BYTES of a metrics.csv (its header line and its tail)."""
    with open(path, "rb") as handle:
        header = handle.readline().decode("utf-8", "replace")
        size = handle.seek(0, 2)
        handle.seek(max(len(header), size - CSV_TAIL_BYTES))
        tail = handle.read().decode("utf-8", "replace")
    if size > CSV_TAIL_BYTES:
        tail = tail.split("\n", 1)[-1]  # the first line of the tail may be cut
    return list(csv.DictReader(io.StringIO(header + tail)))
