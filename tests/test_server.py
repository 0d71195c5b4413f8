"""Every route of the web app and every kind of bad input, through Flask's test client."""

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan.checkpoint import save_generator
from dcgan.models import build_generator
from dcgan.server import create_app

KWARGS = dict(z_dim=16, img_resolution=32, img_channels=3, base_channels=8, norm="batch", num_classes=0)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    paths = []
    for index, name in enumerate(("cars", "trucks")):
        torch.manual_seed(index)
        path = folder / f"{name}.safetensors"
        save_generator(build_generator(**KWARGS), KWARGS, path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory, generated_cars, untrained_fast_extractor):
    """A run folder with every file the runs page shows, trained on the shipped generator's images."""
    from dcgan.config import resolve_config
    from dcgan.training.loop import train

    root = tmp_path_factory.mktemp("runs")
    config = resolve_config("cpu-v1", overrides=dict(g_channels=8, d_channels=8, batch_size=16, kimg=0.064,
                                                     log_every=1, dataset="folder", outdir=str(root),
                                                     metric="fid-fast", metric_samples=32,
                                                     fast_extractor=str(untrained_fast_extractor)))
    train(config, data=generated_cars, show_progress=False)
    (root / "secret.txt").write_text("not for the web")
    return root


@pytest.fixture(scope="module")
def client(model_files, runs_dir):
    return create_app(model_files, str(runs_dir), max_images=64).test_client()


def png(response) -> np.ndarray:
    assert response.mimetype == "image/png", response.data[:200]
    return np.asarray(Image.open(io.BytesIO(response.data)))


def test_healthz_and_models(client):
    assert client.get("/healthz").get_json() == {"status": "ok", "models": 2}
    models = client.get("/api/models").get_json()["models"]
    assert [m["name"] for m in models] == ["cars", "trucks"]
    assert models[0]["resolution"] == 32 and models[0]["z_dim"] == 16


def test_generate_png_grid_and_json(client):
    grid = png(client.get("/api/generate?model=cars&seed=3&num=4"))
    assert grid.shape == (2 * 34 + 2, 2 * 34 + 2, 3)
    body = client.get("/api/generate?model=cars&seed=3&num=4&format=json").get_json()
    assert body["seeds"] == [3, 4, 5, 6] and body["model"] == "cars"
    first = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["images"][0]))))
    assert first.shape == (32, 32, 3)
    assert np.array_equal(first, grid[2:34, 2:34])  # the grid's first cell is seed 3


def test_same_seed_same_image_across_requests_and_restarts(client, model_files, runs_dir):
    a = client.get("/api/generate?model=trucks&seed=42").data
    b = client.get("/api/generate?model=trucks&seed=42").data
    restarted = create_app(model_files, str(runs_dir)).test_client()
    assert a == b == restarted.get("/api/generate?model=trucks&seed=42").data
    assert a != client.get("/api/generate?model=cars&seed=42").data  # another model, another image


def test_download_is_an_attachment(client):
    response = client.get("/api/generate?model=cars&seed=1&num=2&download=1")
    assert "attachment" in response.headers["Content-Disposition"]


def test_interpolation_strip_and_gif(client):
    strip = png(client.get("/api/interpolate?model=cars&from=1&to=2&steps=5"))
    assert strip.shape == (36, 5 * 34 + 2, 3)
    ends = png(client.get("/api/generate?model=cars&seed=1"))
    assert np.array_equal(strip[2:34, 2:34], ends)  # the strip starts at seed 1's image
    gif = client.get("/api/interpolate?model=cars&from=1&to=2&steps=5&format=gif")
    assert gif.mimetype == "image/gif" and Image.open(io.BytesIO(gif.data)).n_frames == 8


def test_gallery_page_shows_seeded_images(client):
    page = client.get("/?model=trucks&seed=10&num=3").get_data(as_text=True)
    assert page.count('class="sample"') == 3
    for seed in (10, 11, 12):
        assert f'data-seed="{seed}"' in page and f"seed={seed}&num=1" in page
    assert '<option value="cars"' in page and "New samples" in page and "Download PNG" in page
    assert "/api/interpolate?model=trucks&from=10&to=12" in page
    # No seed: a fresh random one each time, so a refresh shows new images.
    seeds = {client.get("/").get_data(as_text=True).split('data-seed="')[1].split('"')[0] for _ in range(3)}
    assert len(seeds) == 3


def test_runs_page_and_files(client, runs_dir):
    run = next(p.name for p in runs_dir.iterdir() if p.is_dir())
    page = client.get("/runs").get_data(as_text=True)
    assert run in page and f"/runs/{run}/progress.gif" in page and "losses.png" in page
    assert f"/runs/{run}/metric.png" in page and "best fid_fast" in page and "checkpoint-best.pt" in page
    assert client.get(f"/runs/{run}/progress.gif").mimetype == "image/gif"
    assert json.loads(client.get(f"/runs/{run}/config.json").data)["batch_size"] == 16


@pytest.mark.parametrize("url, status, fragment", [
    ("/api/generate?num=10000", 400, "'num' must be between 1 and 64"),
    ("/api/generate?num=0", 400, "'num' must be between 1 and 64"),
    ("/api/generate?seed=-1", 400, "'seed' must be between 0"),
    ("/api/generate?seed=abc", 400, "'seed' must be an integer"),
    ("/api/generate?seed=1e5", 400, "'seed' must be an integer"),
    ("/api/generate?model=nope", 404, "unknown model 'nope'; loaded: cars, trucks"),
    ("/api/generate?model=../../etc/passwd", 404, "unknown model"),
    ("/api/generate?format=bmp", 400, "'format' must be one of png, json"),
    ("/api/interpolate?to=3", 400, "missing parameter 'from'"),
    ("/api/interpolate?from=1&to=2&steps=1000", 400, "'steps' must be between 2 and 32"),
    ("/?num=65", 400, "'num' must be between 1 and 64"),
    ("/runs/..%2fsecret.txt/x.png", 404, "no run named"),
    ("/runs/../secret.txt", 404, "no run named"),
    ("/runs/./secret.txt", 404, "no run named"),
    ("/runs/%2E/secret.txt", 404, "no run named"),
    ("/runs/not-a-run/grid.png", 404, "no run named"),
    ("/runs/nope/progress.gif", 404, "no run named"),
    ("/no/such/page", 404, "404 Not Found"),
])
def test_bad_input_gets_a_one_line_json_error(client, url, status, fragment):
    response = client.get(url)
    assert response.status_code == status
    message = response.get_json()["error"]
    assert fragment in message and "\n" not in message and "Traceback" not in message


def test_run_files_only_those_a_run_page_shows(client, runs_dir):
    run = next(p.name for p in runs_dir.iterdir() if p.is_dir() and (p / "config.json").is_file())
    (runs_dir / run / "wandb").mkdir(exist_ok=True)
    (runs_dir / run / "wandb" / "wandb-metadata.json").write_text('{"host": "secret"}')
    for name in ("checkpoint-last.pt", "environment.json", "wandb/wandb-metadata.json", "samples/../environment.json"):
        response = client.get(f"/runs/{run}/{name}")
        assert response.status_code == 404 and "secret" not in response.get_data(as_text=True), name
    grid = next((runs_dir / run / "samples").glob("fakes*.png")).name
    for name in ("metrics.csv", "summary.json", "losses.png", f"samples/{grid}"):
        assert client.get(f"/runs/{run}/{name}").status_code == 200, name


def test_a_torn_run_file_shows_a_broken_run_not_a_500(model_files, tmp_path):
    (tmp_path / "00000-good").mkdir()
    (tmp_path / "00000-good" / "config.json").write_text('{"dataset": "folder", "batch_size": 16}')
    (tmp_path / "00001-torn").mkdir()
    (tmp_path / "00001-torn" / "config.json").write_text('{"dataset": "fol')
    response = create_app(model_files, str(tmp_path)).test_client().get("/runs")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "00000-good" in page
    assert "00001-torn" in page and "cannot be read" in page


def test_runs_page_reads_a_run_again_only_when_it_changed(model_files, runs_dir, monkeypatch):
    import os

    import dcgan.server.runs

    reads = []
    original = dcgan.server.runs.csv_tail
    monkeypatch.setattr(dcgan.server.runs, "csv_tail", lambda path: reads.append(path) or original(path))
    client = create_app(model_files, str(runs_dir)).test_client()
    assert client.get("/runs").status_code == 200
    first = len(reads)
    assert first >= 1
    client.get("/runs")
    assert len(reads) == first  # nothing changed: served from the cache
    csv_path = next(runs_dir.glob("*/metrics.csv"))
    stat = csv_path.stat()
    os.utime(csv_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    client.get("/runs")
    assert len(reads) == first + 1 and reads[-1] == csv_path


def test_csv_tail_reads_the_last_rows_of_a_long_file(tmp_path):
    from dcgan.server.runs import CSV_TAIL_BYTES, csv_tail

    path = tmp_path / "metrics.csv"
    lines = ["step,loss_d"] + [f"{step},{step / 10}" for step in range(1, 40_000)]
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size > 4 * CSV_TAIL_BYTES
    rows = csv_tail(path)
    assert rows[-1] == {"step": "39999", "loss_d": "3999.9"}
    assert [int(r["step"]) for r in rows] == list(range(int(rows[0]["step"]), 40_000))  # whole rows only


def test_a_burst_past_the_queue_gets_503_and_healthz_still_answers(model_files, monkeypatch):
    import threading

    import dcgan.server.state

    release, started = threading.Event(), threading.Event()
    original = dcgan.server.state.generate_images

    def slow(*args, **kwargs):
        started.set()
        release.wait(10)
        return original(*args, **kwargs)

    monkeypatch.setattr(dcgan.server.state, "generate_images", slow)
    app = create_app(model_files, max_waiting=0)
    statuses = []
    worker = threading.Thread(target=lambda: statuses.append(app.test_client().get("/api/generate?seed=1").status_code))
    worker.start()
    assert started.wait(10)
    busy = app.test_client().get("/api/generate?seed=2")
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "1" and "busy" in busy.get_json()["error"]
    assert app.test_client().get("/healthz").status_code == 200
    release.set()
    worker.join(10)
    assert statuses == [200]
    assert app.test_client().get("/api/generate?seed=2").status_code == 200  # free again


def test_seeded_images_carry_an_etag_and_a_repeat_is_304(client):
    first = client.get("/api/generate?seed=5&num=4")
    assert first.status_code == 200 and first.headers["ETag"] and "max-age=86400" in first.headers["Cache-Control"]
    again = client.get("/api/generate?seed=5&num=4", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and not again.data
    other = client.get("/api/generate?seed=6&num=4", headers={"If-None-Match": first.headers["ETag"]})
    assert other.status_code == 200 and other.headers["ETag"] != first.headers["ETag"]
    assert "ETag" not in client.get("/api/generate?num=4").headers  # a random seed: nothing to cache


def test_runs_page_needs_runs_folder(model_files):
    response = create_app(model_files).test_client().get("/runs")
    assert response.status_code == 404 and "without --runs" in response.get_json()["error"]


def test_only_the_hosts_it_was_started_for_are_answered(model_files):
    from dcgan.server import allowed_host_names

    client = create_app(model_files).test_client()
    for host in ("localhost", "127.0.0.1:5000", "[::1]:5000", "LOCALHOST:80"):
        assert client.get("/healthz", headers={"Host": host}).status_code == 200, host
    response = client.get("/healthz", headers={"Host": "attacker.example:5000"})  # DNS rebinding
    assert response.status_code == 403 and "--allowed-hosts attacker.example" in response.get_json()["error"]
    proxied = create_app(model_files, allowed_hosts=allowed_host_names("127.0.0.1", ["gan.example.org"]))
    assert proxied.test_client().get("/healthz", headers={"Host": "gan.example.org"}).status_code == 200
    assert "10.1.2.3" in allowed_host_names("10.1.2.3", [])


def test_links_in_a_run_folder_read_nothing_outside_it(model_files, runs_dir, tmp_path):
    import shutil

    run = next(p for p in runs_dir.iterdir() if p.is_dir() and (p / "config.json").is_file())
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.png").write_text("secret")
    (outside / "config.json").write_text('{"dataset": "secret"}')
    root = tmp_path / "runs"
    shutil.copytree(run, root / run.name)
    (root / run.name / "losses.png").unlink()
    (root / run.name / "losses.png").symlink_to(outside / "secret.png")  # planted in a run folder
    (root / "00099-linked").symlink_to(outside)  # a run folder that is a link out of --runs
    client = create_app(model_files, str(root)).test_client()
    assert client.get(f"/runs/{run.name}/losses.png").status_code == 404
    assert client.get("/runs/00099-linked/config.json").status_code == 404
    page = client.get("/runs").get_data(as_text=True)
    assert run.name in page and "00099-linked" not in page and "secret" not in page
    assert client.get(f"/runs/{run.name}/progress.gif").status_code == 200  # a real file still is


def test_served_run_json_carries_no_paths_of_the_training_machine(client, runs_dir):
    run = next(p.name for p in runs_dir.iterdir() if p.is_dir() and (p / "config.json").is_file())
    config = client.get(f"/runs/{run}/config.json").get_json()
    summary = client.get(f"/runs/{run}/summary.json").get_json()
    assert config["batch_size"] == 16 and config["outdir"] == runs_dir.name
    assert str(runs_dir.parent) not in json.dumps([config, summary]) and "/" not in config["fast_extractor"]


def test_odd_queries_and_hostile_run_files_are_4xx_or_a_broken_row(model_files, tmp_path, client):
    assert client.get('/api/generate?seed=1&x="').status_code == 200  # a quote in the ETag's query
    raw = client.get("/api/generate", environ_overrides={"QUERY_STRING": "seed=1&x=\xff"})  # a byte, not UTF-8
    assert raw.status_code == 400 and "not UTF-8" in raw.get_json()["error"]
    assert client.get("/api/generate?seed=1&x=%FF").status_code == 200
    assert client.get("/api/generate?seed=%20%35").status_code == 400  # int() would take ' 5'
    assert client.get("/api/generate?seed=%D9%A3").status_code == 400  # and an Arabic-Indic 3
    (tmp_path / "00000-odd").mkdir()
    (tmp_path / "00000-odd" / "config.json").write_text('{"dataset": "folder", "batch_size": 16}')
    (tmp_path / "00000-odd" / "summary.json").write_text('{"best": {"value": "abc", "metric": "fid"}}')
    (tmp_path / "00001-list").mkdir()
    (tmp_path / "00001-list" / "config.json").write_text('[1, 2]')
    response = create_app(model_files, str(tmp_path)).test_client().get("/runs")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "00000-odd" in page and "00001-list" in page


@pytest.fixture(scope="module")
def run_with_data(tmp_path_factory, generated_cars):
    """A run folder whose config.json names an image folder: 40 of the shipped generator's cars."""
    root = tmp_path_factory.mktemp("nearest")
    (root / "data" / "car").mkdir(parents=True)
    for index, image in enumerate(generated_cars.images[:40]):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(root / "data" / "car" / f"{index:02d}.png")
    run = root / "00000-folder-cpu-v1"
    run.mkdir()
    torch.manual_seed(0)
    save_generator(build_generator(**KWARGS), KWARGS, run / "generator.safetensors")
    (run / "config.json").write_text(json.dumps({"dataset": "folder", "data_root": str(root / "data"),
                                                 "split": "train", "classes": [], "download": False}))
    return run


def test_nearest_training_images_of_a_sample(run_with_data, model_files, generated_cars):
    from dcgan.metrics.nearest import nearest_in_pixels
    from dcgan.sampling import generate_images

    app = create_app([str(run_with_data), model_files[0]], nearest=True)
    client = app.test_client()
    models = {m["name"]: m["nearest"] for m in client.get("/api/models").get_json()["models"]}
    assert models == {"00000-folder-cpu-v1": True, "cars": False}  # a lone generator file has no training data
    strip = png(client.get("/api/nearest?model=00000-folder-cpu-v1&seed=3&k=4"))
    assert strip.shape == (4 * 36, 4 * (5 * 34 + 2), 3)  # 1 + 4 images of 32 px, padding 2, scaled 4x
    tiles = torch.from_numpy(strip[::4, ::4].copy()).permute(2, 0, 1)  # back to 1x
    generator = app.extensions["dcgan"].models["00000-folder-cpu-v1"].generator
    image = generate_images(generator, [3])[0]
    expected = nearest_in_pixels(image, generated_cars.images[:40], 4)
    for index, tile in enumerate([image, *expected]):
        assert torch.equal(tiles[:, 2:34, 2 + 34 * index:34 + 34 * index], tile)
    # The gallery links each sample there; a model without training images gets a 404 saying why.
    page = client.get("/?model=00000-folder-cpu-v1&seed=0&num=2").get_data(as_text=True)
    assert page.count('class="nearest-link"') == 2
    assert 'class="nearest-link"' not in client.get("/?model=cars&seed=0&num=2").get_data(as_text=True)
    response = client.get("/api/nearest?model=cars&seed=3")
    assert response.status_code == 404 and "--nearest" in response.get_json()["error"]
    assert client.get("/api/nearest?model=00000-folder-cpu-v1&seed=3&k=99").status_code == 400


def test_a_mirrored_copy_is_found_as_the_nearest(generated_cars):
    from dcgan.metrics.nearest import nearest_in_pixels

    training = generated_cars.images[:40]
    found = nearest_in_pixels(training[7].flip(-1), training, k=3)
    assert torch.equal(found[0], training[7].flip(-1))
    assert torch.equal(nearest_in_pixels(training[7], training, k=1)[0], training[7])


def test_the_api_takes_every_seed_the_static_page_takes(client):
    """Seeds up to 2**63 - 1 (19 digits), as `dcgan generate` and the exported page; past it, a 400."""
    top = 2**63 - 1
    body = client.get(f"/api/generate?model=cars&seed={top}&num=1&format=json").get_json()
    assert body["seeds"] == [top]
    assert client.get(f"/api/generate?model=cars&seed={top}&num=2").status_code == 400
    assert client.get(f"/api/generate?model=cars&seed={top + 1}").status_code == 400
    assert client.get("/api/generate?model=cars&seed=12345678901234567890").status_code == 400
