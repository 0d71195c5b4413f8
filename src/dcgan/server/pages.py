"""The pages people read: the gallery (/) and the shipped models' cards (/models/NAME)."""

from __future__ import annotations

from urllib.parse import quote

from flask import Blueprint, render_template, request, send_from_directory

from dcgan.pretrained import ShippedModel
from dcgan.sampling import MAX_SEED
from dcgan.server.state import (
    TRUNCATION_CHOICES,
    BadRequest,
    class_arg,
    generating,
    int_arg,
    model_arg,
    png_base64,
    random_seed,
    state,
    truncation_arg,
)

blueprint = Blueprint("pages", __name__)


@blueprint.get("/")
@generating
def gallery():
    shared = state()
    model = model_arg()
    num = int_arg("num", 16, 1, shared.max_images)
    seed = int_arg("seed", random_seed(), 0, MAX_SEED - num)
    class_index = class_arg(model)
    truncation = truncation_arg()
    seeds = range(seed, seed + num)
    images = [(s, "data:image/png;base64," + png_base64(img))
              for s, img in zip(seeds, shared.generate(model, seeds, class_index, truncation))]  # one batch
    class_name = model.classes[class_index] if class_index is not None else ""
    truncation_text = request.args.get("truncation", "") if truncation is not None else ""
    extra_query = (f"&class={quote(class_name)}" if class_name else "") + \
        (f"&truncation={truncation_text}" if truncation_text else "")
    return render_template("gallery.html", models=list(shared.models), model=model.name, num=num, seed=seed,
                           description=model.description, card=model.shipped is not None,
                           images=images, max_images=shared.max_images, has_runs=shared.runs_root is not None,
                           classes=model.classes, class_name=class_name, extra_query=extra_query,
                           truncation=truncation_text, truncation_choices=TRUNCATION_CHOICES,
                           nearest=model.training is not None)


def served_card(name: str) -> ShippedModel:
    model = state().models.get(name)
    if model is None or model.shipped is None:
        raise BadRequest(f"no shipped model named {name[:60]!r} is served here", 404)
    return model.shipped


@blueprint.get("/models/<name>")
def model_card(name: str):
    """A shipped model's card: its data, command, hardware, time, held-out scores, limits and grid."""
    shipped = served_card(name)
    return render_template("card.html", models=list(state().models), model=name, card=shipped.card,
                           card_text=shipped.card_path.read_text(encoding="utf-8"),
                           has_samples=(shipped.folder / "samples.png").is_file(),
                           has_runs=state().runs_root is not None)


@blueprint.get("/models/<name>/samples.png")
def model_samples(name: str):
    folder = served_card(name).folder
    if not (folder / "samples.png").is_file():
        raise BadRequest(f"{name} has no sample grid", 404)
    return send_from_directory(folder, "samples.png", max_age=3600)
