"""What every part of the web app shares: the loaded models, the generation queue, the settings,
and the parsing of request arguments into checked values (a bad one is a `BadRequest`)."""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import io
import random
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch
from flask import Response, current_app, request

from dcgan.checkpoint import load_generator, model_name
from dcgan.errors import UserError
from dcgan.pretrained import ShippedModel, shipped_model
from dcgan.sampling import check_truncation, generate_images, image_to_pil, is_conditional, resolve_classes


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
    training: torch.Tensor | None = None  # (M, C, H, W) uint8: its training images, for /api/nearest
    source_path: str | None = None  # the checkpoint it was loaded from (None: shipped)

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
                "card": f"/models/{self.name}" if self.shipped is not None else None,
                "nearest": self.training is not None}


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
        base = model_name(path)
        name, n = base, 2
        while name in models:
            name, n = f"{base}-{n}", n + 1
        models[name] = LoadedModel(name, generator, kwargs, source_path=path)
    return models


def training_source(path: str | None):
    """The training data of a checkpoint's run (from its config.json), or None."""
    from dcgan.metrics.reference import RealSource
    from dcgan.training.run_dir import run_config

    config = run_config(Path(path)) if path else None
    if config is None:
        return None
    return RealSource(config["dataset"], config["data_root"], config["split"], config["classes"], False)


def attach_training_images(models: dict[str, LoadedModel], reference=None) -> dict[str, str]:
    """Load each model's training images for /api/nearest: its run's data (config.json beside its
    checkpoint), else `reference` (a RealSource) where given. Returns, for each model left
    without them, why (a run whose data has moved is served without the check, not refused)."""
    missing = {}
    for model in models.values():
        try:
            source = training_source(model.source_path) or reference
            if source is None:
                missing[model.name] = "no run folder with a config.json, and no --nearest-ref"
                continue
            model.training = source.load(model.kwargs["img_resolution"], model.kwargs["img_channels"]).images
        except UserError as error:  # a damaged config.json, data moved away: served without the check
            missing[model.name] = str(error)
    return missing


class GenerationQueue:
    """Requests that generate images: at most `max_waiting + 1` in the server at once (generating,
    encoding or waiting; more get `Busy` at once, so threads stay free for /healthz and pages), one
    generating at a time, each waiting at most `wait_s` for its turn (else `Busy`)."""

    class Busy(Exception):
        pass

    def __init__(self, max_waiting: int, wait_s: float = 1.0):
        self.admitted = threading.BoundedSemaphore(max_waiting + 1)
        self.lock = threading.Lock()
        self.wait_s = wait_s

    @contextlib.contextmanager
    def admission(self):
        """Held for a generating request's whole life, its encoding included."""
        if not self.admitted.acquire(blocking=False):
            raise GenerationQueue.Busy
        try:
            yield
        finally:
            self.admitted.release()

    def run(self, work):
        if not self.lock.acquire(timeout=self.wait_s):
            raise GenerationQueue.Busy
        try:
            return work()
        finally:
            self.lock.release()


def generating(view):
    """A route that generates images: it is admitted by the queue for its whole request."""
    @functools.wraps(view)
    def admitted_view(*args, **kwargs):
        with state().queue.admission():
            return view(*args, **kwargs)

    return admitted_view


@dataclass
class ServerState:
    """The one state the blueprints share; `create_app` builds it and keeps it in app.extensions."""

    models: dict[str, LoadedModel]
    runs_root: Path | None
    queue: GenerationQueue
    max_images: int = 64
    max_steps: int = 32
    run_cache: dict[Path, tuple[tuple, dict]] = field(default_factory=dict)  # run -> (file mtimes, description)
    without_nearest: dict[str, str] = field(default_factory=dict)  # with --nearest: models left without, and why

    def generate(self, model: LoadedModel, seeds: range, class_index: int | None = None,
                 truncation: float | None = None) -> torch.Tensor:
        return self.queue.run(lambda: generate_images(model.generator, seeds, classes=class_index,
                                                      truncation=truncation))


def state() -> ServerState:
    return current_app.extensions["dcgan"]


# ---------------------------------------------------------------------------------------------
# Request arguments.

def int_arg(name: str, default: int | None, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        if default is None:
            raise BadRequest(f"missing parameter '{name}'")
        return default
    if not re.fullmatch(r"-?[0-9]{1,19}", raw):  # int() would take ' 5', '1_000' and non-ASCII digits; 19: 2**63
        raise BadRequest(f"'{name}' must be an integer, not {raw[:40]!r}")
    value = int(raw)
    if not low <= value <= high:
        raise BadRequest(f"'{name}' must be between {low} and {high}, not {value}")
    return value


TRUNCATION_CHOICES = ("2.0", "1.5", "1.0", "0.5")  # the gallery's menu; the API takes any value in range


def truncation_arg() -> float | None:
    """`truncation=T` (within the bounds `check_truncation` sets) or None when not given."""
    raw = request.args.get("truncation")
    if raw is None or raw == "":
        return None
    if not re.fullmatch(r"[0-9]{1,3}(\.[0-9]{1,6})?", raw):
        raise BadRequest(f"'truncation' must be a number such as 1.0, not {raw[:40]!r}")
    try:
        check_truncation(float(raw))
    except UserError as error:
        raise BadRequest(f"'truncation': {error}") from None
    return float(raw)


def model_arg() -> LoadedModel:
    models = state().models
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


# ---------------------------------------------------------------------------------------------
# Images as responses, and their caching.

def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png_base64(image: torch.Tensor) -> str:
    return base64.b64encode(png_bytes(image_to_pil(image))).decode()


def image_etag(model: LoadedModel) -> str | None:
    """An explicit seed makes the image a pure function of the model and the URL: its ETag; else None."""
    if request.args.get("seed") in (None, ""):
        return None
    key = f"{model.name}\0{id(model.generator):x}\0".encode() + request.query_string  # any bytes: quotes, 0xFF
    return hashlib.sha256(key).hexdigest()[:40]


def not_modified(model: LoadedModel) -> Response | None:
    """A 304 before any generation when the browser already holds this exact image."""
    etag = image_etag(model)
    if etag is None or etag not in request.if_none_match:
        return None
    response = current_app.response_class(status=304)
    response.set_etag(etag)
    return response


def cacheable(response: Response, model: LoadedModel) -> Response:
    """Tag a seeded image with its ETag and let browsers keep it for a day."""
    if (etag := image_etag(model)) is not None:
        response.set_etag(etag)
        response.cache_control.public, response.cache_control.max_age = True, 86400
    return response
