"""`dcgan export --format web`: the page's random numbers are PyTorch's, and in a real browser
(headless Chromium) the page's images for seeds 0-15 are `dcgan generate`'s within one uint8 level."""

import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
import torch

import dcgan
from dcgan.checkpoint import save_generator
from dcgan.models import build_generator
from dcgan.sampling import labels_from_seeds, latents_from_seeds
from dcgan.web import ORT_VERSION, runtime_package
from test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, playwright_or_skip
from test_cli import assert_one_line_error, dcgan_here
from test_cli import dcgan as run_dcgan

RANDOM_JS = Path(dcgan.__file__).parent / "web" / "site" / "dcgan-random.js"
NODE = shutil.which("node")
SEEDS = ["0", "1", "7", "42", "999", str(2**31 + 5), str(2**32 + 3), "123456789012", str(2**63 - 1)]


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_the_pages_latents_and_classes_are_pytorchs():
    script = f"""
    const r = require({json.dumps(str(RANDOM_JS))});
    const seeds = {json.dumps(SEEDS)}.map(BigInt), out = {{}};
    for (const [zDim, t] of [[100, null], [128, null], [7, null], [100, 2.0], [100, 1.0], [100, 0.5], [20, 0.3]])
      out[zDim + "/" + t] = seeds.map(s => Array.from(r.latentFromSeed(s, zDim, t)));
    out.labels = seeds.map(s => r.classFromSeed(s, 10));
    console.log(JSON.stringify(out));
    """
    result = json.loads(subprocess.run([NODE, "-e", script], capture_output=True, text=True, check=True).stdout)
    seeds = [int(s) for s in SEEDS]
    assert result.pop("labels") == labels_from_seeds(seeds, 10).tolist()
    for key, values in result.items():
        z_dim, truncation = key.split("/")  # the n < 16 path (z_dim 7, small redraws) and the 16-blocks path
        expected = latents_from_seeds(seeds, int(z_dim), None if truncation == "null" else float(truncation))
        assert torch.allclose(torch.tensor(values), expected, atol=1e-5), key


def runtime_or_skip() -> bytes:
    try:
        return runtime_package()
    except dcgan.UserError as error:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs onnxruntime-web {ORT_VERSION} from the npm registry: {error}")
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def conditional_file(tmp_path_factory):
    kwargs = dict(z_dim=16, img_resolution=32, img_channels=3, base_channels=8, norm="batch", num_classes=3,
                  class_names=["cat", "dog", "emu"])
    torch.manual_seed(0)
    generator = build_generator(**kwargs).eval()
    with torch.no_grad():
        for weight in (p for p in generator.parameters() if p.dim() > 1):
            weight.mul_(10)  # untrained, but images that vary with the seed and the class
    path = tmp_path_factory.mktemp("conditional") / "generator.safetensors"
    save_generator(generator, kwargs, path)
    return path


def serve(folder: Path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize("source", ["shipped", "conditional"])
def test_the_page_makes_dcgan_generates_images(tmp_path, source, conditional_file):
    playwright = playwright_or_skip()
    runtime_or_skip()
    where = ["--model", "cifar10-cars"] if source == "shipped" else ["--checkpoint", conditional_file]
    site = tmp_path / "site"
    code, stdout, stderr = run_dcgan("export", *where, "--format", "web", "--out", site)
    assert code == 0, stderr
    assert "differ from PyTorch's by at most" in stdout
    generator = dcgan.load_generator("cifar10-cars" if source == "shipped" else conditional_file)
    server = serve(site)
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            requests = []
            page.on("request", lambda request: requests.append(request.url))
            page.goto(url)
            page.wait_for_function("window.dcgan && window.dcgan.timeToFirstImageMs !== null", timeout=60_000)
            assert page.locator("#grid canvas").count() == 16
            seeds = [str(s) for s in range(16)]
            for options, label, truncation in [({}, None, None), ({"truncation": 1.0}, None, 1.0),
                                               ({"label": 2}, 2, None)]:
                if label is not None and source == "shipped":
                    continue
                pixels = page.evaluate("async ([seeds, options]) => Array.from((await window.dcgan.generate("
                                       "seeds, options)).pixels)", [seeds, options])
                page_images = torch.tensor(pixels, dtype=torch.int32).reshape(16, 3, 32, 32)
                expected = dcgan.generate(generator, range(16), label=label, truncation=truncation).int()
                assert expected.float().std() > 20  # images worth comparing, not flat grey
                assert (page_images - expected).abs().max() <= 1, options
            if source == "conditional":  # the class picker lists the model's classes
                assert page.eval_on_selector_all("#class option", "o => o.map(e => e.textContent)")[1:] == \
                    ["cat", "dog", "emu"]
            # The walk: the interpolation strip's frames (a conditional model within seed 0's class).
            frames = page.evaluate("async () => Array.from((await window.dcgan.walkFrames('0', '7', 5, "
                                   "null)).pixels)")
            strip = dcgan.sampling.interpolate(generator, 0, 7, 5).int()
            assert (torch.tensor(frames, dtype=torch.int32).reshape(5, 3, 32, 32) - strip).abs().max() <= 1
            page.click("#walk")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"web-export-{source}.png"), full_page=True)
            time_to_first_image = page.evaluate("window.dcgan.timeToFirstImageMs")
            browser.close()
    finally:
        server.shutdown()
    assert all(request.startswith(url) for request in requests)  # nothing from elsewhere (no CDN)
    (ARTIFACTS / f"web-export-{source}.json").write_text(json.dumps(
        {"time_to_first_image_ms": time_to_first_image, "site_bytes": sum(
            f.stat().st_size for f in site.rglob("*") if f.is_file())}))


def test_web_export_writes_beside_the_users_files_and_replaces_only_its_own(tmp_path, capsys, monkeypatch):
    cli = functools.partial(dcgan_here, capsys)
    mine = tmp_path / "mine"
    (mine / ".git").mkdir(parents=True)
    (mine / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (mine / "CNAME").write_text("gan.example.org\n")
    code, out, _ = cli("export", "--model", "cifar10-cars", "--format", "web", "--out", mine)
    assert code == 0, out
    assert (mine / "index.html").is_file() and (mine / "generator.onnx").is_file()
    code, out, _ = cli("export", "--model", "cifar10-cars", "--format", "web", "--out", mine)  # its own files: replaced
    assert code == 0, out
    assert (mine / "CNAME").read_text() == "gan.example.org\n"
    assert (mine / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n"
    (mine / "index.html").write_text("<p>my edited page</p>")  # changed since dcgan wrote it: the user's now
    before = {path: path.read_bytes() for path in mine.rglob("*") if path.is_file()}
    assert_one_line_error(cli("export", "--model", "cifar10-cars", "--format", "web", "--out", mine),
                          "already holds index.html, not written by dcgan")
    assert {path: path.read_bytes() for path in mine.rglob("*") if path.is_file()} == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.json").write_text('{"name": "a TensorFlow.js model"}')  # not ours: kept
    assert_one_line_error(cli("export", "--model", "cifar10-cars", "--format", "web", "--out", other),
                          "already holds model.json")
    assert sorted(p.name for p in other.iterdir()) == ["model.json"]
    (tmp_path / "page").write_text("a file")
    assert_one_line_error(cli("export", "--model", "cifar10-cars", "--format", "web", "--out", tmp_path / "page"),
                          "not a folder")


def test_web_export_refuses_a_wrong_runtime_and_other_formats_flags(tmp_path, capsys):
    cli = functools.partial(dcgan_here, capsys)
    fake = tmp_path / "onnxruntime-web.tgz"
    fake.write_bytes(b"not the package")
    assert_one_line_error(cli("export", "--model", "cifar10-cars", "--format", "web", "--out", tmp_path / "s",
                                    "--runtime", fake), f"is not onnxruntime-web {ORT_VERSION}")
    assert_one_line_error(cli("export", "--model", "cifar10-cars", "--format", "onnx", "--out",
                                    tmp_path / "g.onnx", "--offline"), "go with --format web")
    assert not (tmp_path / "s").exists()
    assert_one_line_error(cli("export", "--model", "cifar10-cars", "--format", "web", "--out", tmp_path / "s",
                              "--batch", 4), "the web page takes any batch")
    assert_one_line_error(cli("export", "--model", "cifar10-cars", "--format", "pt2", "--out", tmp_path / "g.onnx"),
                          "writes a .pt2 file")
