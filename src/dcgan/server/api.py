"""The JSON/PNG API: /healthz, /api/models, /api/generate, /api/interpolate, /api/nearest."""

from __future__ import annotations

import io

import torch
from flask import Blueprint, jsonify, request, send_file

from dcgan.sampling import MAX_SEED, image_to_pil, interpolate, make_grid, save_gif, to_pil
from dcgan.server.state import (
    BadRequest,
    cacheable,
    class_arg,
    format_arg,
    generating,
    int_arg,
    model_arg,
    not_modified,
    png_base64,
    png_bytes,
    random_seed,
    state,
    truncation_arg,
)

blueprint = Blueprint("api", __name__)


@blueprint.get("/healthz")
def healthz():
    return jsonify(status="ok", models=len(state().models))


@blueprint.get("/api/models")
def api_models():
    return jsonify(models=[m.describe() for m in state().models.values()], max_images=state().max_images)


@blueprint.get("/api/generate")
@generating
def api_generate():
    max_images = state().max_images
    model = model_arg()
    num = int_arg("num", 1, 1, max_images)
    seed = int_arg("seed", random_seed(), 0, MAX_SEED - num + 1)  # seeds seed .. seed + num - 1
    fmt = format_arg("png", "json")
    nrow = int_arg("nrow", 0, 0, max_images) or None
    class_index = class_arg(model)
    truncation = truncation_arg()
    seeds = range(seed, seed + num)
    if (cached := not_modified(model)) is not None:
        return cached
    images = state().generate(model, seeds, class_index, truncation)
    if fmt == "json":
        extra = {"class": model.classes[class_index]} if class_index is not None else {}
        return cacheable(jsonify(model=model.name, seeds=list(seeds), **extra,
                                 images=[png_base64(img) for img in images]), model)
    data = png_bytes(to_pil(make_grid(images, nrow=nrow)))
    download = request.args.get("download") in ("1", "true")
    return cacheable(send_file(io.BytesIO(data), mimetype="image/png", as_attachment=download,
                               download_name=f"{model.name}-seed{seed}-n{num}.png", etag=False), model)


@blueprint.get("/api/interpolate")
@generating
def api_interpolate():
    model = model_arg()
    seed_from = int_arg("from", None, 0, MAX_SEED)
    seed_to = int_arg("to", None, 0, MAX_SEED)
    steps = int_arg("steps", 8, 2, state().max_steps)
    fmt = format_arg("png", "gif")
    class_from, class_to = class_arg(model), class_arg(model, "to_class")
    if class_to is not None and class_from is None:
        raise BadRequest("'to_class' needs 'class' (the class the walk starts from)")
    truncation = truncation_arg()
    images = state().queue.run(lambda: interpolate(model.generator, seed_from, seed_to, steps, class_from, class_to,
                                                   truncation))
    if fmt == "gif":
        frames = [image_to_pil(img).resize((128, 128), 0) for img in images]
        frames += frames[-2:0:-1]  # there and back
        buffer = io.BytesIO()
        save_gif(frames, buffer, duration_ms=120)
        buffer.seek(0)
        return send_file(buffer, mimetype="image/gif")
    return send_file(io.BytesIO(png_bytes(to_pil(make_grid(images, nrow=steps)))), mimetype="image/png")


MAX_NEIGHBOURS = 16


@blueprint.get("/api/nearest")
@generating
def api_nearest():
    """One seed's image, then its `k` nearest training images in pixels (mirror images included),
    as a PNG strip: is this sample a copy? Needs `dcgan serve --nearest`."""
    from dcgan.metrics.nearest import nearest_in_pixels

    model = model_arg()
    if model.training is None:
        raise BadRequest(f"{model.name!r} has no training images loaded: start the server with --nearest (a run "
                         f"folder's data) or --nearest-ref (the data of a shipped model)", 404)
    seed = int_arg("seed", None, 0, MAX_SEED)
    k = int_arg("k", 5, 1, MAX_NEIGHBOURS)
    class_index = class_arg(model)
    truncation = truncation_arg()
    if (cached := not_modified(model)) is not None:
        return cached
    [image] = state().generate(model, range(seed, seed + 1), class_index, truncation)
    neighbours = state().queue.run(lambda: nearest_in_pixels(image, model.training, k))
    strip = to_pil(make_grid(torch.cat([image[None], neighbours]), nrow=k + 1))
    strip = strip.resize((strip.width * 4, strip.height * 4), 0)  # big pixels, as on the gallery
    return cacheable(send_file(io.BytesIO(png_bytes(strip)), mimetype="image/png", etag=False), model)
