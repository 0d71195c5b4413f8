"""A generator in a static web page: `dcgan export --format web`.

The folder it writes needs no server of ours: any static host (a course page, GitHub Pages,
`python -m http.server`) serves it, and the page works offline once loaded.

- `generator.onnx`: the generator as `dcgan export --format onnx` writes it; its weights stored as
  float16 (Cast to float32 at load, so the arithmetic stays float32) when onnxruntime's images of
  seeds 0-63 stay within one uint8 level of PyTorch's, float32 otherwise (`--precision`).
- `dcgan-random.js`: seeds -> latents and classes by PyTorch's CPU generator rules (mt19937,
  torch.randn's Box-Muller blocks, the truncation redraw), so seed s is the image `dcgan generate`
  makes from seed s; `app.js` and `index.html`: the page; `model.json`: what the page reads.
- `ort/`: the browser runtime, onnxruntime-web's WebAssembly build, taken from its npm package at
  a pinned version whose SHA-512 is checked (downloaded once from the npm registry into the cache,
  or given as a file with `--runtime`), never from a CDN when the page runs.

Written here rather than with a bundler: three static files need no build step, and the page
stays readable for a student who opens it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
from importlib import resources
from pathlib import Path

import torch

from dcgan import __version__
from dcgan.choices import WEB_PRECISIONS, must_be_one_of
from dcgan.errors import UserError
from dcgan.files import atomic_write

ORT_VERSION = "1.22.0"
ORT_URL = f"https://registry.npmjs.org/onnxruntime-web/-/onnxruntime-web-{ORT_VERSION}.tgz"
ORT_INTEGRITY = "sha512-Ud/+EBo6mhuaQWt/OjaOk0iNWjXqJoeeMFr6xQEERZdIZH2OWpGzuujz7lfuOBjUa6TEE/sc4nb7Da5dNL34fg=="
ORT_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")  # of package/dist/
PAGE_FILES = ("index.html", "app.js", "dcgan-random.js")
MARKER = "model.json"  # a folder holding it (with our keys) is a previous export, which a new one may replace
CHECK_SEEDS = 64


def integrity(data: bytes) -> str:
    """npm's integrity string of `data`: sha512-<base64 digest>."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def runtime_package(runtime: str | Path | None = None, *, allow_download: bool = True) -> bytes:
    """The pinned onnxruntime-web npm tarball: `runtime` (a .tgz), the cached copy, or a download
    from the npm registry (then cached). Its SHA-512 must be the pinned one."""
    from dcgan.data import cache_dir

    cached = cache_dir("web") / f"onnxruntime-web-{ORT_VERSION}.tgz"
    if runtime is not None:
        path = Path(runtime).expanduser()
        if not path.is_file():
            raise UserError(f"--runtime {path}: no such file (the onnxruntime-web {ORT_VERSION} npm tarball, "
                            f"from `npm pack onnxruntime-web@{ORT_VERSION}`)")
        data, source = path.read_bytes(), str(path)
    elif cached.is_file():
        data, source = cached.read_bytes(), str(cached)
    elif not allow_download:
        raise UserError(f"the web page needs onnxruntime-web {ORT_VERSION}, not in the cache ({cached}) and "
                        f"--offline forbids a download: pass --runtime with the file of "
                        f"`npm pack onnxruntime-web@{ORT_VERSION}`")
    else:
        data, source = download(ORT_URL), ORT_URL
    if integrity(data) != ORT_INTEGRITY:
        raise UserError(f"{source} is not onnxruntime-web {ORT_VERSION} (its SHA-512 differs from the pinned one)")
    if source != str(cached):
        atomic_write(cached, lambda tmp: tmp.write_bytes(data))
    return data


def download(url: str) -> bytes:
    import urllib.error
    import urllib.request

    print(f"downloading {url} (about 20 MB, once; cached)")
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            return response.read()
    except (urllib.error.URLError, OSError) as error:
        raise UserError(f"could not download {url} ({error}); pass --runtime with the file of "
                        f"`npm pack onnxruntime-web@{ORT_VERSION}`") from None


def runtime_files(package: bytes) -> dict[str, bytes]:
    """The browser runtime's files from the npm tarball."""
    with tarfile.open(fileobj=io.BytesIO(package), mode="r:gz") as archive:
        return {name: archive.extractfile(f"package/dist/{name}").read() for name in ORT_FILES}


def weights_to_float16(model) -> None:
    """Store `model`'s float32 weight tensors (an onnx ModelProto) as float16, each Cast back to
    float32 where the graph reads it: half the file, float32 arithmetic."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    casts = []
    for index, tensor in enumerate(model.graph.initializer):
        if tensor.data_type != onnx.TensorProto.FLOAT:
            continue
        half = numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), f"{tensor.name}.float16")
        casts.append(helper.make_node("Cast", [half.name], [tensor.name], to=onnx.TensorProto.FLOAT,
                                      name=f"{tensor.name}.to_float32"))
        model.graph.initializer[index].CopyFrom(half)
    nodes = casts + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def onnx_bytes(generator: torch.nn.Module, kwargs: dict, precision: str) -> bytes:
    """The generator as an ONNX file (dynamic batch), its weights in `precision`."""
    import tempfile

    import onnx

    from dcgan.export import export_onnx

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "generator.onnx"
        export_onnx(generator, path, kwargs=kwargs)
        if precision == "float16":
            model = onnx.load(str(path))
            weights_to_float16(model)
            onnx.checker.check_model(model)
            onnx.save(model, str(path))
        return path.read_bytes()


def largest_difference(generator: torch.nn.Module, model: bytes) -> int | None:
    """The largest |onnxruntime - PyTorch| over the uint8 images of seeds 0..CHECK_SEEDS-1 (None
    without onnxruntime)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    from dcgan.export import onnx_difference

    return onnx_difference(generator, model, CHECK_SEEDS)


def choose_model(generator: torch.nn.Module, kwargs: dict, precision: str) -> tuple[bytes, str, int | None]:
    """(ONNX bytes, precision, largest difference): float16 for "auto" when its images stay within
    one uint8 level of PyTorch's, else float32. Images further off than one level are refused."""
    if precision == "auto":
        half = onnx_bytes(generator, kwargs, "float16")
        difference = largest_difference(generator, half)
        if difference is not None and difference <= 1:
            return half, "float16", difference
        precision = "float32"
    model = onnx_bytes(generator, kwargs, precision)
    difference = largest_difference(generator, model)
    if difference is not None and difference > 1:
        raise UserError(f"onnxruntime's images differ from PyTorch's by {difference} uint8 levels in {precision} "
                        f"(more than 1) on seeds 0-{CHECK_SEEDS - 1}" + (": try --precision float32"
                                                                         if precision == "float16" else ""))
    return model, precision, difference


def is_previous_export(folder: Path) -> bool:
    """A folder an export wrote before the toolkit kept a record of its files (model.json with our keys)."""
    try:
        metadata = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(metadata, dict) and {"dcgan", "onnxruntime_web", "precision"} <= set(metadata)


def export_web(generator: torch.nn.Module, kwargs: dict, out: str | Path, *, name: str, precision: str = "auto",
               runtime: str | Path | None = None, allow_download: bool = True, force: bool = False) -> dict:
    """Write the static page for `generator` into the folder `out`, each file atomically, model.json
    last. Only the page's own files are written: a file of that name that dcgan did not write is
    refused before anything is written (replaced with `force`), and every other file in the folder
    (a CNAME, a .git/, notes) is left as it is. Returns what model.json says."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise UserError('the web export writes ONNX, which needs the onnx package: pip install "dcgan[export]"') \
            from None
    if precision not in WEB_PRECISIONS:
        raise UserError(must_be_one_of("--precision", precision, WEB_PRECISIONS))
    from dcgan.outputs import FolderOutput

    output = FolderOutput(out, force=force, option="--out", legacy=is_previous_export)
    package = runtime_package(runtime, allow_download=allow_download)
    model, chosen, difference = choose_model(generator, kwargs, precision)
    metadata = {"name": name, "z_dim": kwargs["z_dim"], "resolution": kwargs["img_resolution"],
                "channels": kwargs["img_channels"], "num_classes": kwargs.get("num_classes", 0),
                "class_names": kwargs.get("class_names") or [], "precision": chosen, "onnx_bytes": len(model),
                "largest_difference_from_pytorch": difference,
                "checked_seeds": f"0-{CHECK_SEEDS - 1}" if difference is not None else "not checked (no onnxruntime)",
                "onnxruntime_web": ORT_VERSION, "dcgan": __version__}

    files = {name: resources.files("dcgan.web").joinpath("site", name).read_bytes() for name in PAGE_FILES}
    files.update({f"ort/{name}": data for name, data in runtime_files(package).items()})
    files["ort/NOTICE.txt"] = f"onnxruntime-web {ORT_VERSION} (npm), MIT License, (c) Microsoft Corporation.\n"
    files["generator.onnx"] = model
    files[MARKER] = json.dumps(metadata, indent=2) + "\n"
    output.claim(files)
    for file_name, data in files.items():  # model.json, the marker, last
        payload = data.encode() if isinstance(data, str) else data
        output.write(file_name, lambda tmp, payload=payload: tmp.write_bytes(payload))
    output.finish()
    return metadata


def folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in Path(folder).rglob("*") if path.is_file())
