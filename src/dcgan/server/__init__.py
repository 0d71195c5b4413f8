"""The web app: a gallery of generated images, a live view of training runs and a JSON/PNG API.

`create_app` loads each generator once (EMA weights) and returns a Flask app; `dcgan serve` runs
it under waitress. Routes only parse and check input, call `dcgan.sampling` and answer; bad input
gets a 4xx with a one-line JSON message. Models are chosen by name among those loaded at start,
and run files are served only from inside the `--runs` folder.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from flask import Flask, jsonify, render_template, request, send_file, send_from_directory
from werkzeug.exceptions import HTTPException
from werkzeug.utils import safe_join

from dcgan.checkpoint import load_generator
from dcgan.sampling import MAX_SEED, generate_images, image_to_pil, interpolate, make_grid, save_gif, to_pil
from dcgan.training.report import METRIC_COLUMNS

RUN_FILES = ("progress.gif", "losses.png", "loss_variance.png", "metric.png", "real_vs_fake.png")


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class LoadedModel:
    name: str
    generator: torch.nn.Module
    kwargs: dict

    def describe(self) -> dict:
        return {"name": self.name, "resolution": self.kwargs["img_resolution"],
                "channels": self.kwargs["img_channels"], "z_dim": self.kwargs["z_dim"]}


def load_models(checkpoints: list[str], device: str = "cpu") -> dict[str, LoadedModel]:
    """Each checkpoint (run folder or file) once, named after its run folder or file stem."""
    models: dict[str, LoadedModel] = {}
    for path in checkpoints:
        generator, kwargs = load_generator(path, device)
        p = Path(path)
        base = p.name if p.is_dir() else (p.parent.name if p.stem in ("generator", "checkpoint-last") else p.stem)
        name, n = base, 2
        while name in models:
            name, n = f"{base}-{n}", n + 1
        models[name] = LoadedModel(name, generator, kwargs)
    return models


def create_app(checkpoints: list[str], runs_dir: str | None = None, *, max_images: int = 64,
               max_steps: int = 32, device: str = "cpu") -> Flask:
    app = Flask(__name__)
    models = load_models(checkpoints, device)
    runs_root = Path(runs_dir).resolve() if runs_dir else None
    lock = threading.Lock()  # One generation at a time: concurrent ones would fight over the cores.

    # ------------------------------------------------------------------ input parsing
    def int_arg(name: str, default: int | None, low: int, high: int) -> int:
        raw = request.args.get(name)
        if raw is None or raw == "":
            if default is None:
                raise BadRequest(f"missing parameter '{name}'")
            return default
        try:
            value = int(raw)
        except ValueError:
            raise BadRequest(f"'{name}' must be an integer, not {raw[:40]!r}") from None
        if not low <= value <= high:
            raise BadRequest(f"'{name}' must be between {low} and {high}, not {value}")
        return value

    def model_arg() -> LoadedModel:
        name = request.args.get("model") or next(iter(models))
        if name not in models:
            raise BadRequest(f"unknown model {name[:60]!r}; loaded: {', '.join(models)}", 404)
        return models[name]

    def format_arg(*choices: str) -> str:
        value = request.args.get("format", choices[0])
        if value not in choices:
            raise BadRequest(f"'format' must be one of {', '.join(choices)}, not {value[:20]!r}")
        return value

    def random_seed() -> int:
        return random.randrange(0, 2**31)

    def png_bytes(image) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()

    def png_base64(image: torch.Tensor) -> str:
        return base64.b64encode(png_bytes(image_to_pil(image))).decode()

    def generate(model: LoadedModel, seeds: range) -> torch.Tensor:
        with lock:
            return generate_images(model.generator, seeds)

    # ------------------------------------------------------------------ errors
    @app.errorhandler(BadRequest)
    def bad_request(error: BadRequest):
        return jsonify(error=str(error)), error.status

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        return jsonify(error=f"{error.code} {error.name}"), error.code

    @app.errorhandler(Exception)
    def internal_error(error: Exception):  # Never a stack trace to the client.
        app.logger.exception("internal error")
        return jsonify(error="internal error"), 500

    # ------------------------------------------------------------------ API
    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok", models=len(models))

    @app.get("/api/models")
    def api_models():
        return jsonify(models=[m.describe() for m in models.values()], max_images=max_images)

    @app.get("/api/generate")
    def api_generate():
        model = model_arg()
        num = int_arg("num", 1, 1, max_images)
        seed = int_arg("seed", random_seed(), 0, MAX_SEED - num)
        fmt = format_arg("png", "json")
        seeds = range(seed, seed + num)
        images = generate(model, seeds)
        if fmt == "json":
            return jsonify(model=model.name, seeds=list(seeds), images=[png_base64(img) for img in images])
        nrow = int_arg("nrow", 0, 0, max_images) or None
        data = png_bytes(to_pil(make_grid(images, nrow=nrow)))
        download = request.args.get("download") in ("1", "true")
        return send_file(io.BytesIO(data), mimetype="image/png", as_attachment=download,
                         download_name=f"{model.name}-seed{seed}-n{num}.png")

    @app.get("/api/interpolate")
    def api_interpolate():
        model = model_arg()
        seed_from = int_arg("from", None, 0, MAX_SEED)
        seed_to = int_arg("to", None, 0, MAX_SEED)
        steps = int_arg("steps", 8, 2, max_steps)
        fmt = format_arg("png", "gif")
        with lock:
            images = interpolate(model.generator, seed_from, seed_to, steps)
        if fmt == "gif":
            frames = [image_to_pil(img).resize((128, 128), 0) for img in images]
            frames += frames[-2:0:-1]  # there and back
            buffer = io.BytesIO()
            save_gif(frames, buffer, duration_ms=120)
            buffer.seek(0)
            return send_file(buffer, mimetype="image/gif")
        return send_file(io.BytesIO(png_bytes(to_pil(make_grid(images, nrow=steps)))), mimetype="image/png")

    # ------------------------------------------------------------------ pages
    @app.get("/")
    def gallery():
        model = model_arg()
        num = int_arg("num", 16, 1, max_images)
        seed = int_arg("seed", random_seed(), 0, MAX_SEED - num)
        seeds = range(seed, seed + num)
        images = [(s, "data:image/png;base64," + png_base64(img))
                  for s, img in zip(seeds, generate(model, seeds))]  # one batch
        return render_template("gallery.html", models=list(models), model=model.name, num=num, seed=seed,
                               images=images, max_images=max_images, has_runs=runs_root is not None)

    @app.get("/runs")
    def runs_page():
        if runs_root is None:
            raise BadRequest("this server was started without --runs", 404)
        runs = [describe_run(p) for p in sorted(runs_root.iterdir(), reverse=True)
                if p.is_dir() and (p / "config.json").is_file()]
        training = any(run["training"] for run in runs)
        return render_template("runs.html", runs=runs, refresh=training, models=list(models))

    @app.get("/runs/<run>/<path:filename>")
    def run_file(run: str, filename: str):
        if runs_root is None:
            raise BadRequest("this server was started without --runs", 404)
        folder = safe_join(str(runs_root), run)
        if folder is None or not Path(folder).is_dir():
            raise BadRequest(f"no run named {run[:60]!r}", 404)
        if Path(filename).suffix.lower() not in (".png", ".gif", ".json", ".csv", ".txt"):
            raise BadRequest("only images, JSON, CSV and text files of a run are served", 404)
        return send_from_directory(folder, filename, max_age=0)

    def describe_run(path: Path) -> dict:
        config = json.loads((path / "config.json").read_text())
        summary_path = path / "summary.json"
        samples = sorted((path / "samples").glob("fakes*.png")) if (path / "samples").is_dir() else []
        metrics = path / "metrics.csv"
        recently_written = metrics.is_file() and time.time() - metrics.stat().st_mtime < 120
        rows = []
        if metrics.is_file():
            with open(metrics, newline="") as handle:
                rows = list(csv.DictReader(handle))
        return {
            "name": path.name, "config": config, "training": recently_written and not summary_path.is_file(),
            "summary": json.loads(summary_path.read_text()) if summary_path.is_file() else None,
            "latest": f"samples/{samples[-1].name}" if samples else None,
            "files": [name for name in RUN_FILES if (path / name).is_file()],
            "last": next((row for row in reversed(rows) if row.get("loss_d")), {}),
            "score": next(({"name": name, "value": float(row[name]), "kimg": row["kimg"]} for row in reversed(rows)
                           for name in METRIC_COLUMNS if row.get(name)), None),
        }

    app.config["MODELS"] = models
    return app


def serve(app: Flask, host: str, port: int, threads: int = 4) -> None:
    from waitress import serve as waitress_serve

    waitress_serve(app, host=host, port=port, threads=threads, ident="dcgan")
