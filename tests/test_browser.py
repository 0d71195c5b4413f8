"""A real browser (headless Chromium via Playwright) against the real server (waitress)."""

import base64
import io
import os
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan.checkpoint import save_generator
from dcgan.models import build_generator
from dcgan.pretrained import shipped_model

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    from waitress.server import create_server

    from dcgan.server import create_app

    kwargs = dict(z_dim=16, img_resolution=32, img_channels=3, base_channels=8, norm="batch", num_classes=0)
    path = tmp_path_factory.mktemp("model") / "cars.safetensors"
    torch.manual_seed(0)
    generator = build_generator(**kwargs)
    with torch.no_grad():
        generator.main[-2].weight.mul_(30)  # untrained but visibly varied images
    save_generator(generator, kwargs, path)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = create_server(create_app([str(path)]), host="127.0.0.1", port=port, threads=2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.close()


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def playwright_or_skip():
    """playwright's sync API; without Chromium the test is skipped here and fails in CI."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs Chromium (apt-get install chromium) for the browser test")
        pytest.skip("Chromium is not installed")
    return pytest.importorskip("playwright.sync_api")


def decode(data_uri: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_uri.split(",", 1)[1]))))


def test_gallery_new_samples_and_permalink(server_url):
    playwright = playwright_or_skip()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{server_url}/?num=8")
        before = page.eval_on_selector_all("img.sample", "els => els.map(e => [e.dataset.seed, e.src])")
        assert len(before) == 8
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "gallery.png"), full_page=True)

        page.click("#new-samples")
        page.wait_for_load_state("load")
        after = page.eval_on_selector_all("img.sample", "els => els.map(e => [e.dataset.seed, e.src])")
        assert len(after) == 8
        assert [s for s, _ in after] != [s for s, _ in before]  # new seeds
        assert sum(a[1] != b[1] for a, b in zip(after, before)) >= 7  # and new pictures

        # The third image's own permalink shows it alone, pixel for pixel.
        seed, src = after[2]
        page.click(f'figure:has(img[data-seed="{seed}"]) a.seed-link')
        page.wait_for_load_state("load")
        alone = page.eval_on_selector_all("img.sample", "els => els.map(e => [e.dataset.seed, e.src])")
        assert [s for s, _ in alone] == [seed]
        assert np.array_equal(decode(alone[0][1]), decode(src))
        # Interpolation images loaded in the browser.
        width = page.eval_on_selector("#interpolation", "e => e.naturalWidth")
        assert width > 0
        browser.close()


@pytest.fixture(scope="module")
def shipped_server_url(tmp_path_factory, generated_cars):
    """`dcgan serve` as a new user starts it: the shipped generators, and a runs folder with one run."""
    from waitress.server import create_server

    from dcgan.config import resolve_config
    from dcgan.server import create_app
    from dcgan.training.loop import train

    runs = tmp_path_factory.mktemp("runs")
    config = resolve_config("cpu-v1", overrides=dict(g_channels=8, d_channels=8, batch_size=16, kimg=0.32,
                                                     log_every=2, grid_size=16, outdir=str(runs), dataset="folder"))
    train(config, data=generated_cars, show_progress=False)
    (runs / "00001-torn").mkdir()
    (runs / "00001-torn" / "config.json").write_text('{"dataset": "fol')  # a run killed mid-write
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = create_server(create_app([], str(runs), shipped=["cifar10-cars"]), host="127.0.0.1", port=port,
                           threads=2)
    threading.Thread(target=server.run, daemon=True).start()
    yield f"http://127.0.0.1:{port}"
    server.close()


def test_pages_as_a_person_sees_them(shipped_server_url):
    playwright = playwright_or_skip()
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        # The gallery: the shipped model by its card name, its one line, a link to its card, big pixels.
        page.goto(f"{shipped_server_url}/?num=12&seed=0")
        assert page.input_value("#model") == "cifar10-cars"
        assert "2-core CPU" in page.inner_text("#model-description")
        shown = page.eval_on_selector_all("img.sample", "els => els.map(e => [e.getBoundingClientRect().width, "
                                                        "e.naturalWidth, getComputedStyle(e).imageRendering])")
        assert len(shown) == 12 and all(width == 128 and natural == 32 and rendering == "pixelated"
                                        for width, natural, rendering in shown)
        page.screenshot(path=str(ARTIFACTS / "gallery-shipped.png"), full_page=True)
        # One click away: the true-size image.
        true_size = page.eval_on_selector("figure a", "e => e.href")
        page.goto(true_size)
        assert page.eval_on_selector("img", "e => e.naturalWidth") == 32
        # The model card.
        page.goto(f"{shipped_server_url}/models/cifar10-cars")
        card = shipped_model("cifar10-cars").card
        assert f"held-out FID-fast\t{card['scores']['fid_fast']}\n" in page.inner_text("#card")
        assert page.eval_on_selector("#card-samples", "e => e.naturalWidth") > 200
        page.screenshot(path=str(ARTIFACTS / "model-card.png"), full_page=True)
        # The runs page: plots at a readable size, not thumbnails.
        page.goto(f"{shipped_server_url}/runs")
        widths = page.eval_on_selector_all(".run img", "els => els.map(e => [e.alt, e.getBoundingClientRect().width])")
        plots = [width for alt, width in widths if alt in ("losses.png", "loss_variance.png")]
        assert len(plots) == 2 and all(width >= 480 for width in plots), widths
        assert "cannot be read" in page.inner_text(".broken")  # the torn run is one line, not a 500
        page.screenshot(path=str(ARTIFACTS / "runs.png"), full_page=True)
        browser.close()


OVERFLOWING = """(selectors) => {
  const out = [];
  const page = document.documentElement;
  if (page.scrollWidth > window.innerWidth) out.push(`the page: ${page.scrollWidth} > ${window.innerWidth}`);
  for (const selector of selectors) {
    for (const frame of document.querySelectorAll(selector)) {
      const box = frame.getBoundingClientRect();
      for (const child of frame.querySelectorAll("img, figure, canvas")) {
        const r = child.getBoundingClientRect();
        if (r.right > box.right + 1 || r.left < box.left - 1 || r.bottom > box.bottom + 1)
          out.push(`${selector} ${child.id || child.alt || child.tagName}: `
                   + `${Math.round(r.left)}-${Math.round(r.right)} `
                   + `in ${Math.round(box.left)}-${Math.round(box.right)}`);
      }
    }
  }
  return out;
}"""


@pytest.mark.parametrize("width", [1200, 800])
def test_the_gallery_fits_its_frames_at_every_width(shipped_server_url, width):
    """The interpolation strip and the sample grid stay inside their frames (they wrap or shrink)."""
    playwright = playwright_or_skip()
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.goto(f"{shipped_server_url}/?num=16&seed=0")
        page.wait_for_function("Array.from(document.querySelectorAll('.strip img')).every(i => i.complete "
                               "&& i.naturalWidth > 0)", timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / f"gallery-{width}px.png"), full_page=True)
        assert page.evaluate(OVERFLOWING, [".strip", "#gallery"]) == []
        strip = page.eval_on_selector("#interpolation", "e => e.getBoundingClientRect().width")
        assert strip > 200  # still a readable strip, not a thumbnail
        browser.close()
