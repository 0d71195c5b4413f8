"""The web app: a gallery of generated images, a live view of training runs and a JSON/PNG API.

`create_app` loads each generator once (EMA weights) into one shared state and wires three
blueprints over it: `api` (api.py), `pages` (pages.py: the gallery and the model cards) and `runs`
(runs.py); `dcgan serve` runs the app under waitress. Routes only parse and check input, call
`dcgan.sampling` and answer; bad input gets a 4xx with a one-line JSON message. Models are chosen
by name among those loaded at start.

Generation runs one request at a time (concurrent ones would fight over the cores); a request
waits up to a second for its turn. The requests that generate may hold all the server's threads
but two (`dcgan serve --threads`, 10 by default: 8 such requests at once, generating, waiting or
encoding their images); past them a request gets 503 with Retry-After at once, so a burst never
holds every thread and `/healthz` and `/runs` always answer. Images are a pure function of (model, seed, num, ...), so a
request with an explicit seed carries an ETag and may be cached by the browser.

Class-conditional models take `class=` (a name or an index) on the gallery, `/api/generate` and
`/api/interpolate` (with `to_class=` the walk goes from one class to another: at one seed, the
same latent changes class); `/api/models` lists each model's classes.
"""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from dcgan.server import api, pages, runs
from dcgan.server.state import BadRequest, GenerationQueue, ServerState, attach_training_images, load_models


def create_app(checkpoints: list[str], runs_dir: str | None = None, *, shipped: list[str] = (), max_images: int = 64,
               max_steps: int = 32, device: str = "cpu", max_waiting: int = 2,
               allowed_hosts: set[str] | None = None, nearest: bool = False, nearest_reference=None) -> Flask:
    """The app. `shipped`: names of the package's generators to serve beside `checkpoints`.
    `max_waiting`: generation requests that may wait behind the running one (keep it below the
    server's thread count, so a thread is always free for pages and /healthz). `allowed_hosts`:
    the host names requests may be addressed to (default: the loopback names; "*" for any).
    `nearest`: load each model's training images (its run's data, else `nearest_reference`, a
    RealSource) so /api/nearest and the gallery show a sample's nearest training images."""
    app = Flask(__name__)
    allowed = set(allowed_hosts or LOOPBACK_NAMES)
    models = load_models(checkpoints, device, shipped)
    without_nearest = attach_training_images(models, nearest_reference) if nearest else {}
    for name, reason in without_nearest.items():
        print(f"{name}: no nearest training images ({reason})", flush=True)
    app.extensions["dcgan"] = ServerState(models=models,
                                          runs_root=Path(runs_dir).resolve() if runs_dir else None,
                                          queue=GenerationQueue(max_waiting), max_images=max_images,
                                          max_steps=max_steps, without_nearest=without_nearest)
    for blueprint in (api.blueprint, pages.blueprint, runs.blueprint):
        app.register_blueprint(blueprint)

    @app.before_request
    def check_request():
        name = host_name(request.host)  # a page elsewhere that rebinds its DNS name to us still says its name
        if "*" not in allowed and name not in allowed:
            return jsonify(error=f"this server does not answer to the host name {name[:60]!r}; start it with "
                                 f"--allowed-hosts {name[:60]} if that is meant (a proxy)"), 403
        try:
            request.query_string.decode()  # werkzeug parses the arguments as UTF-8, and fails on other bytes
        except UnicodeDecodeError:
            return jsonify(error="the query string is not UTF-8 (percent-encode its bytes)"), 400

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


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def host_name(host_header: str) -> str:
    """'Example.com:5000' -> 'example.com', '[::1]:5000' -> '::1'; '' for a header that is no host."""
    try:
        return (urlsplit("//" + host_header).hostname or "").rstrip(".")
    except ValueError:
        return ""


def allowed_host_names(bind: str, extra: list[str]) -> set[str]:
    """The names a server bound to `bind` answers to: the loopback names, `bind` itself, `extra`;
    bound to every interface, also the machine's own names and addresses."""
    names = {*LOOPBACK_NAMES, *(name.strip().lower() for name in extra if name.strip())}
    if bind in ("0.0.0.0", "::", ""):
        own = socket.gethostname()
        names |= {own.lower(), socket.getfqdn().lower()}
        try:
            names |= {info[4][0] for info in socket.getaddrinfo(own, None)}
        except OSError:
            pass
    else:
        names.add(bind.strip("[]").lower())
    return names


def serve(app: Flask, host: str, port: int, threads: int = 10) -> None:
    from waitress import serve as waitress_serve

    waitress_serve(app, host=host, port=port, threads=threads, ident="dcgan")
