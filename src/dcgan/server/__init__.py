"""The web app: a gallery of generated images, a live view of training runs and a JSON/PNG API.

`create_app` loads each generator once (EMA weights) and returns a Flask app; `dcgan serve` runs
it under waitress. Routes only parse and check input, call `dcgan.sampling` and answer; bad input
gets a 4xx with a one-line JSON message. Models are chosen by name among those loaded at start.

Generation runs one request at a time (concurrent ones would fight over the cores); past a short
queue a request gets 503 with Retry-After at once, so a burst never holds every server thread and
`/healthz` and `/runs` always answer. Images are a pure function of (model, seed, num, ...), so a
request with an explicit seed carries an ETag and may be cached by the browser.

Class-conditional models take `class=` (a name or an index) on the gallery, `/api/generate` and
`/api/interpolate` (with `to_class=` the walk goes from one class to another: at one seed, the
same latent changes class); `/api/models` lists each model's classes.

Run files are served only for real runs (a folder of `--runs` with `config.json`) and only the
files a run page shows: its plots, grids, metrics.csv and config/summary/model JSON; never
`environment.json` (the command line) or anything in a sub-folder such as a W&B folder. Run pages
read each run's files again only when their modification time changes, read only the CSV's tail,
and show a run whose files are torn or missing as broken instead of failing the page.
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
from urllib.parse import quote

import torch
from flask import Flask, jsonify, render_template, request, send_file, send_from_directory
from werkzeug.exceptions import HTTPException
from werkzeug.utils import safe_join

from dcgan.checkpoint import load_generator
from dcgan.errors import UserError
from dcgan.pretrained import ShippedModel, shipped_model
from dcgan.sampling import (MAX_SEED, generate_images, image_to_pil, interpolate, is_conditional, make_grid,
                            resolve_classes, save_gif, to_pil)
from dcgan.training.report import METRIC_COLUMNS

RUN_FILES = ("progress.gif", "losses.png", "loss_variance.png", "metric.png", "real_vs_fake.png")
SERVED_RUN_FILES = RUN_FILES + ("metrics.csv", "config.json", "summary.json", "model.json", "model_summary.txt")
CSV_TAIL_BYTES = 64 * 1024


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class LoadedModel:
    name: str
    generator: torch.nn.Module
    kwargs: dict
    shipped: ShippedModel | None = None  # a generator of the package, with a model card at /models/<name>

    @property
    def description(self) -> str:
        return self.shipped.description if self.shipped else ""

    @property
    def classes(self) -> list[str]:
        """The class names of a conditional model; [] for an unconditional one."""
        return list(self.generator.class_names) if is_conditional(self.generator) else []

    def describe(self) -> dict:
        return {"name": self.name, "resolution": self.kwargs["img_resolution"],
                "channels": self.kwargs["img_channels"], "z_dim": self.kwargs["z_dim"],
                "conditional": bool(self.classes), "classes": self.classes, "description": self.description,
                "card": f"/models/{self.name}" if self.shipped is not None else None}


def load_models(checkpoints: list[str], device: str = "cpu", shipped: list[str] = ()) -> dict[str, LoadedModel]:
    """Each shipped generator by its card name, then each checkpoint (run folder or file) once,
    named after its run folder or file stem."""
    models: dict[str, LoadedModel] = {}
    for name in dict.fromkeys(shipped):
        card = shipped_model(name)
        generator, kwargs = load_generator(card.weights(), device)
        models[name] = LoadedModel(name, generator, kwargs, shipped=card)
    for path in checkpoints:
        generator, kwargs = load_generator(path, device)
        p = Path(path)
        base = p.name if p.is_dir() else (p.parent.name if p.stem in ("generator", "checkpoint-last") else p.stem)
        name, n = base, 2
        while name in models:
            name, n = f"{base}-{n}", n + 1
        models[name] = LoadedModel(name, generator, kwargs)
    return models


class GenerationQueue:
    """One generation at a time, at most `max_waiting` more waiting; beyond that, `Busy` at once."""

    class Busy(Exception):
        pass

    def __init__(self, max_waiting: int):
        self.slots = threading.BoundedSemaphore(max_waiting + 1)
        self.lock = threading.Lock()

    def run(self, work):
        if not self.slots.acquire(blocking=False):
            raise GenerationQueue.Busy
        try:
            with self.lock:
                return work()
        finally:
            self.slots.release()


def create_app(checkpoints: list[str], runs_dir: str | None = None, *, shipped: list[str] = (), max_images: int = 64,
               max_steps: int = 32, device: str = "cpu", max_waiting: int = 2) -> Flask:
    """The app. `shipped`: names of the package's generators to serve beside `checkpoints`.
    `max_waiting`: generation requests that may wait behind the running one (keep it below the
    server's thread count, so a thread is always free for pages and /healthz)."""
    app = Flask(__name__)
    models = load_models(checkpoints, device, shipped)
    runs_root = Path(runs_dir).resolve() if runs_dir else None
    queue = GenerationQueue(max_waiting)
    run_cache: dict[Path, tuple[tuple, dict]] = {}  # run folder -> (file modification times, description)

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

    def class_arg(model: LoadedModel, name: str = "class") -> int | None:
        """A class name or index for a conditional model (None when not given); 400 naming the valid ones."""
        raw = request.args.get(name)
        if raw is None or raw == "":
            return None
        if raw == "all":
            raise BadRequest(f"'{name}' takes one class, not all")
        try:
            return resolve_classes(model.generator, [raw[:60]])[0]
        except UserError as error:
            raise BadRequest(f"'{name}': {error}") from None

    def random_seed() -> int:
        return random.randrange(0, 2**31)

    def png_bytes(image) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()

    def png_base64(image: torch.Tensor) -> str:
        return base64.b64encode(png_bytes(image_to_pil(image))).decode()

    def generate(model: LoadedModel, seeds: range, class_index: int | None = None) -> torch.Tensor:
        return queue.run(lambda: generate_images(model.generator, seeds, classes=class_index))

    def image_etag(model: LoadedModel) -> str | None:
        """An explicit seed makes the image a pure function of the model and the URL: its ETag; else None."""
        if request.args.get("seed") in (None, ""):
            return None
        return f"{model.name}-{id(model.generator):x}-{request.query_string.decode()}"

    def not_modified(model: LoadedModel):
        """A 304 before any generation when the browser already holds this exact image."""
        etag = image_etag(model)
        if etag is None or etag not in request.if_none_match:
            return None
        response = app.response_class(status=304)
        response.set_etag(etag)
        return response

    def cacheable(response, model: LoadedModel):
        """Tag a seeded image with its ETag and let browsers keep it for a day."""
        if (etag := image_etag(model)) is not None:
            response.set_etag(etag)
            response.cache_control.public, response.cache_control.max_age = True, 86400
        return response

    # ------------------------------------------------------------------ errors
    @app.errorhandler(BadRequest)
    def bad_request(error: BadRequest):
        return jsonify(error=str(error)), error.status

    @app.errorhandler(GenerationQueue.Busy)
    def busy(error):
        response = jsonify(error="busy generating other images; retry in a second")
        response.status_code, response.headers["Retry-After"] = 503, "1"
        return response

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
        nrow = int_arg("nrow", 0, 0, max_images) or None
        class_index = class_arg(model)
        seeds = range(seed, seed + num)
        if (cached := not_modified(model)) is not None:
            return cached
        images = generate(model, seeds, class_index)
        if fmt == "json":
            extra = {"class": model.classes[class_index]} if class_index is not None else {}
            return cacheable(jsonify(model=model.name, seeds=list(seeds), **extra,
                                     images=[png_base64(img) for img in images]), model)
        data = png_bytes(to_pil(make_grid(images, nrow=nrow)))
        download = request.args.get("download") in ("1", "true")
        return cacheable(send_file(io.BytesIO(data), mimetype="image/png", as_attachment=download,
                                   download_name=f"{model.name}-seed{seed}-n{num}.png", etag=False), model)

    @app.get("/api/interpolate")
    def api_interpolate():
        model = model_arg()
        seed_from = int_arg("from", None, 0, MAX_SEED)
        seed_to = int_arg("to", None, 0, MAX_SEED)
        steps = int_arg("steps", 8, 2, max_steps)
        fmt = format_arg("png", "gif")
        class_from, class_to = class_arg(model), class_arg(model, "to_class")
        if class_to is not None and class_from is None:
            raise BadRequest("'to_class' needs 'class' (the class the walk starts from)")
        images = queue.run(lambda: interpolate(model.generator, seed_from, seed_to, steps, class_from, class_to))
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
        class_index = class_arg(model)
        seeds = range(seed, seed + num)
        images = [(s, "data:image/png;base64," + png_base64(img))
                  for s, img in zip(seeds, generate(model, seeds, class_index))]  # one batch
        class_name = model.classes[class_index] if class_index is not None else ""
        return render_template("gallery.html", models=list(models), model=model.name, num=num, seed=seed,
                               description=model.description, card=model.shipped is not None,
                               images=images, max_images=max_images, has_runs=runs_root is not None,
                               classes=model.classes, class_name=class_name,
                               class_query=f"&class={quote(class_name)}" if class_name else "")

    def served_card(name: str) -> ShippedModel:
        model = models.get(name)
        if model is None or model.shipped is None:
            raise BadRequest(f"no shipped model named {name[:60]!r} is served here", 404)
        return model.shipped

    @app.get("/models/<name>")
    def model_card(name: str):
        """A shipped model's card: its data, command, hardware, time, held-out scores, limits and grid."""
        shipped = served_card(name)
        return render_template("card.html", models=list(models), model=name, card=shipped.card,
                               card_text=shipped.card_path.read_text(encoding="utf-8"),
                               has_samples=(shipped.folder / "samples.png").is_file(),
                               has_runs=runs_root is not None)

    @app.get("/models/<name>/samples.png")
    def model_samples(name: str):
        folder = served_card(name).folder
        if not (folder / "samples.png").is_file():
            raise BadRequest(f"{name} has no sample grid", 404)
        return send_from_directory(folder, "samples.png", max_age=3600)

    @app.get("/runs")
    def runs_page():
        if runs_root is None:
            raise BadRequest("this server was started without --runs", 404)
        runs = [cached_run(p) for p in sorted(runs_root.iterdir(), reverse=True) if is_run(p)]
        training = any(run.get("training") for run in runs)
        return render_template("runs.html", runs=runs, refresh=training, models=list(models))

    @app.get("/runs/<run>/<path:filename>")
    def run_file(run: str, filename: str):
        if runs_root is None:
            raise BadRequest("this server was started without --runs", 404)
        folder = safe_join(str(runs_root), run)
        if folder is None or run.startswith(".") or not is_run(Path(folder)):
            raise BadRequest(f"no run named {run[:60]!r}", 404)
        parts = Path(filename).parts
        top_level = len(parts) == 1 and parts[0] in SERVED_RUN_FILES
        grid = len(parts) == 2 and parts[0] == "samples" and parts[1].startswith("fakes") and parts[1].endswith(".png")
        if not (top_level or grid):
            raise BadRequest(f"{filename[:60]!r} is not one of the files a run page shows", 404)
        return send_from_directory(folder, filename, max_age=0)

    def is_run(path: Path) -> bool:
        """A real run: a folder of --runs (not a hidden one) with its config.json."""
        return path.is_dir() and not path.name.startswith(".") and (path / "config.json").is_file()

    def cached_run(path: Path) -> dict:
        """describe_run, read again only when one of the run's files changed."""
        stamps = tuple(_mtime(path / name) for name in ("config.json", "summary.json", "metrics.csv", "samples"))
        hit = run_cache.get(path)
        if hit is None or hit[0] != stamps:
            try:
                description = describe_run(path)
            except (OSError, ValueError, KeyError, TypeError) as error:  # a torn or half-written file
                description = {"name": path.name, "broken": f"{type(error).__name__}: {str(error)[:120]}",
                               "config": {}, "files": [], "last": {}, "summary": None, "score": None}
            hit = run_cache[path] = (stamps, description)
        description = hit[1]
        since = description.get("training_since")
        return {**description, "training": since is not None and time.time() - since < 120}

    def describe_run(path: Path) -> dict:
        config = json.loads((path / "config.json").read_text())
        if not isinstance(config, dict):
            raise ValueError("config.json is not a mapping")
        summary_path = path / "summary.json"
        samples = sorted((path / "samples").glob("fakes*.png")) if (path / "samples").is_dir() else []
        metrics = path / "metrics.csv"
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
        rows = _csv_tail(metrics) if metrics.is_file() else []
        return {
            "name": path.name, "config": config, "summary": summary,
            "training_since": metrics.stat().st_mtime if metrics.is_file() and summary is None else None,
            "latest": f"samples/{samples[-1].name}" if samples else None,
            "files": [name for name in RUN_FILES if (path / name).is_file()],
            "last": next((row for row in reversed(rows) if row.get("loss_d")), {}),
            "score": next(({"name": name, "value": float(row[name]), "kimg": row["kimg"]} for row in reversed(rows)
                           for name in METRIC_COLUMNS if row.get(name)), None),
        }

    app.config["MODELS"] = models
    return app


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _csv_tail(path: Path) -> list[dict]:
    """The rows in the last CSV_TAIL_BYTES of a metrics.csv (its header line and its tail)."""
    with open(path, "rb") as handle:
        header = handle.readline().decode("utf-8", "replace")
        size = handle.seek(0, 2)
        handle.seek(max(len(header), size - CSV_TAIL_BYTES))
        tail = handle.read().decode("utf-8", "replace")
    if size > CSV_TAIL_BYTES:
        tail = tail.split("\n", 1)[-1]  # the first line of the tail may be cut
    return list(csv.DictReader(io.StringIO(header + tail)))


def serve(app: Flask, host: str, port: int, threads: int = 4) -> None:
    from waitress import serve as waitress_serve

    waitress_serve(app, host=host, port=port, threads=threads, ident="dcgan")
