"""The web app: a gallery of generated images, a live view of training runs and a JSON/PNG API.

`create_app` loads each generator once (EMA weights) into one shared state and wires three
blueprints over it: `api` (api.py), `pages` (pages.py: the gallery and the model cards) and `runs`
(runs.py); `dcgan serve` runs the app under waitress. Routes only parse and check input, call
`dcgan.sampling` and answer; bad input gets a 4xx with a one-line JSON message. Models are chosen
by name among those loaded at start.

Generation runs one request at a time (concurrent ones would fight over the cores); past a short
queue a request gets 503 with Retry-After at once, so a burst never holds every server thread and
`/healthz` and `/runs` always answer. Images are a pure function of (model, seed, num, ...), so a
request with an explicit seed carries an ETag and may be cached by the browser.

Class-conditional models take `class=` (a name or an index) on the gallery, `/api/generate` and
`/api/interpolate` (with `to_class=` the walk goes from one class to another: at one seed, the
same latent changes class); `/api/models` lists each model's classes.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from dcgan.server import api, pages, runs
from dcgan.server.state import BadRequest, GenerationQueue, ServerState, load_models


def create_app(checkpoints: list[str], runs_dir: str | None = None, *, shipped: list[str] = (), max_images: int = 64,
               max_steps: int = 32, device: str = "cpu", max_waiting: int = 2) -> Flask:
    """The app. `shipped`: names of the package's generators to serve beside `checkpoints`.
    `max_waiting`: generation requests that may wait behind the running one (keep it below the
    server's thread count, so a thread is always free for pages and /healthz)."""
    app = Flask(__name__)
    app.extensions["dcgan"] = ServerState(models=load_models(checkpoints, device, shipped),
                                          runs_root=Path(runs_dir).resolve() if runs_dir else None,
                                          queue=GenerationQueue(max_waiting), max_images=max_images,
                                          max_steps=max_steps)
    for blueprint in (api.blueprint, pages.blueprint, runs.blueprint):
        app.register_blueprint(blueprint)

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

    return app


def serve(app: Flask, host: str, port: int, threads: int = 4) -> None:
    from waitress import serve as waitress_serve

    waitress_serve(app, host=host, port=port, threads=threads, ident="dcgan")
