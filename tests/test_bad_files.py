"""Every file the toolkit reads answers a bad file with one line naming the file and what was expected.

Each reader gets each kind of bad input: garbage text, random bytes, an empty file, a truncated
copy of a valid file (cut at half and at nine tenths) and a valid file of another format.
"""

import io
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan.checkpoint import load_checkpoint, load_generator, save_checkpoint, save_generator
from dcgan.cli import main
from dcgan.config import read_config_file
from dcgan.data import load_dataset
from dcgan.errors import UserError
from dcgan.metrics.fast import FastClassifier, FastExtractor, save_fast_extractor
from dcgan.metrics.features import FeatureSet
from dcgan.metrics.inception_weights import read_state_dict
from dcgan.metrics.reference import load_stats, save_stats
from dcgan.models import build_generator

KWARGS = dict(z_dim=16, img_resolution=32, img_channels=3, base_channels=8, norm="batch", num_classes=0)
# Internals of torch, numpy, zipfile and safetensors that must never reach a user.
LEAKS = ("weights_only", "Traceback", "allow_pickle", "miniz", "codec can't decode", "HeaderTooLarge",
         "PytorchStreamReader", "Weights only load failed")
KINDS = ["garbage-text", "random-bytes", "empty", "truncated-half", "truncated-most", "wrong-format"]


# ----------------------------------------------------------------------------------------------
# Valid files, written by the toolkit's own writers.

def png_bytes(size: int = 32) -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    return buffer.getvalue()


def edit_metadata(path, changes: dict) -> None:
    """Rewrite a safetensors file with some metadata fields changed (None: removed)."""
    if not changes:
        return
    from safetensors.torch import load_file, safe_open, save_file

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    metadata = {k: v for k, v in {**metadata, **changes}.items() if v is not None}
    save_file(load_file(str(path)), str(path), metadata=metadata)


def write_checkpoint(path):
    G = build_generator(**KWARGS)
    save_checkpoint({"step": 1, "generator_kwargs": KWARGS, "G": G.state_dict(), "G_ema": None}, path)


def write_generator(path, **metadata_changes):
    torch.manual_seed(0)
    save_generator(build_generator(**KWARGS), KWARGS, path)
    edit_metadata(path, metadata_changes)


def write_fast_extractor(path, **metadata_changes):
    torch.manual_seed(0)
    save_fast_extractor(FastClassifier(base_channels=4), path, resolution=32, class_names=list("abcdefghij"),
                        trained_on={"dataset": "folder", "root": "data", "resolution": 32, "channels": 3},
                        report={"test_accuracy": 0.5})
    edit_metadata(path, metadata_changes)


def write_stats(path):
    features = np.random.default_rng(0).standard_normal((64, 16)).astype(np.float32)
    save_stats(path, FeatureSet.from_features(features, metadata={"format": "dcgan-stats-v1"}))


def write_weights(path):
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(32, 3, 3, 3), "fc.weight": torch.zeros(1008, 2048)}, path)


def write_config(path):
    path.write_text(json.dumps({"batch-size": 64, "lr": 0.0002, "classes": ["airplane", "automobile"]}))


def make_bad(path, kind, write_valid, other_format: bytes | None = None):
    """Write a bad file of `kind` at `path`; `write_valid(path)` writes a good one to cut."""
    if kind == "garbage-text":
        path.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n")
    elif kind == "random-bytes":
        path.write_bytes(os.urandom(4096))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind.startswith("truncated"):
        write_valid(path)
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2] if kind == "truncated-half" else data[:len(data) * 9 // 10])
    elif kind == "wrong-format":
        path.write_bytes(other_format)
    return path


def assert_one_line(error, path):
    message = str(error)
    assert "\n" not in message, message
    assert path.name in message, message
    assert "expected" in message, message
    for leak in LEAKS:
        assert leak not in message, message


def other_file(tmp_path, write) -> bytes:
    """The bytes of a valid file of another kind."""
    path = tmp_path / "other"
    write(path)
    data = path.read_bytes()
    path.unlink()
    return data


# ----------------------------------------------------------------------------------------------
# One test per reader, each over all kinds.

@pytest.mark.parametrize("kind", KINDS)
def test_checkpoint(tmp_path, kind):
    path = make_bad(tmp_path / "bad.pt", kind, write_checkpoint, png_bytes())
    with pytest.raises(UserError) as info:
        load_checkpoint(path)
    assert_one_line(info.value, path)


@pytest.mark.parametrize("kind", KINDS)
def test_generate_command(tmp_path, kind, capsys):
    """A file that is not a checkpoint, named .pt (as `cp /etc/passwd bad.pt; dcgan generate --checkpoint bad.pt`)."""
    path = make_bad(tmp_path / "bad.pt", kind, write_checkpoint, png_bytes())
    assert main(["generate", "--checkpoint", str(path), "--out", str(tmp_path / "grid.png")]) == 2
    stderr = capsys.readouterr().err
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("dcgan generate: error: ") and path.name in stderr
    for leak in LEAKS:
        assert leak not in stderr, stderr


@pytest.mark.parametrize("kind", KINDS)
def test_generator_file(tmp_path, kind):
    path = make_bad(tmp_path / "generator.safetensors", kind, write_generator,
                    other_file(tmp_path, write_checkpoint))
    with pytest.raises(UserError) as info:
        load_generator(path)
    assert_one_line(info.value, path)


@pytest.mark.parametrize("changes, fragment", [
    ({"generator_kwargs": None}, "no generator_kwargs"),
    ({"generator_kwargs": "{not json"}, "not valid JSON"),
    ({"generator_kwargs": "[1, 2]"}, "not a mapping"),
    ({"generator_kwargs": json.dumps({**KWARGS, "wings": 2})}, "do not build a generator"),
    ({"generator_kwargs": json.dumps({**KWARGS, "family": "unicorn"})}, "do not build a generator"),
    ({"generator_kwargs": json.dumps({**KWARGS, "base_channels": 16})}, "has shape"),
    # Sizes that would allocate until the process dies are refused before anything is built ...
    ({"generator_kwargs": json.dumps({**KWARGS, "num_classes": 400_000_000})}, "num_classes=400000000 is not a whole"),
    ({"generator_kwargs": json.dumps({**KWARGS, "base_channels": 10 ** 9})}, "base_channels=1000000000 is not"),
    ({"generator_kwargs": json.dumps({**KWARGS, "z_dim": -3})}, "z_dim=-3 is not a whole number"),
    ({"generator_kwargs": json.dumps({**KWARGS, "z_dim": "100"})}, "z_dim=100 is not a whole number"),
    # ... and sizes within bounds that the file's tensors do not have, before they are allocated.
    ({"generator_kwargs": json.dumps({**KWARGS, "num_classes": 90_000})}, "the checkpoint has no embed.weight"),
    ({"generator_kwargs": json.dumps({**KWARGS, "base_channels": 4000})}, "has shape"),
    ({"format": None}, "not a dcgan generator"),
])
def test_generator_file_metadata(tmp_path, changes, fragment):
    path = tmp_path / "generator.safetensors"
    write_generator(path, **changes)
    with pytest.raises(UserError, match=fragment) as info:
        load_generator(path)
    message = str(info.value)
    assert "\n" not in message and path.name in message and "Traceback" not in message


def test_generator_file_with_other_tensor_names(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "generator.safetensors"
    save_file({"stranger.weight": torch.zeros(3)}, str(path),
              metadata={"format": "dcgan-generator-v1", "generator_kwargs": json.dumps(KWARGS)})
    with pytest.raises(UserError, match="the checkpoint has no main") as info:
        load_generator(path)
    assert "\n" not in str(info.value) and path.name in str(info.value)


def test_checkpoint_without_generator(tmp_path):
    path = tmp_path / "checkpoint-last.pt"
    save_checkpoint({"step": 1, "generator_kwargs": "not a mapping"}, path)
    with pytest.raises(UserError, match="no generator_kwargs mapping"):
        load_generator(path)
    save_checkpoint({"step": 1, "generator_kwargs": KWARGS}, path)
    with pytest.raises(UserError, match=r"no generator weights \(G\)"):
        load_generator(path)
    save_checkpoint({"step": 1, "generator_kwargs": KWARGS, "G": {"main.0.weight": [1, 2]}}, path)
    with pytest.raises(UserError, match="is a list in the checkpoint, not a tensor"):
        load_generator(path, use_ema=False)


@pytest.mark.parametrize("kind", KINDS)
def test_fast_extractor(tmp_path, kind):
    path = make_bad(tmp_path / "fast.safetensors", kind, write_fast_extractor, other_file(tmp_path, write_stats))
    with pytest.raises(UserError) as info:
        FastExtractor(path)
    assert_one_line(info.value, path)


@pytest.mark.parametrize("changes, fragment", [
    ({"kwargs": None}, "has no 'kwargs' in its metadata"),
    ({"kwargs": "{oops"}, "damaged metadata"),
    ({"kwargs": json.dumps({"img_channels": 3, "num_classes": 10, "depth": 9})}, "damaged metadata"),
    ({"resolution": "big"}, "damaged metadata"),
    ({"report": "{}"}, "has no 'test_accuracy'"),
    ({"trained_on": "[]"}, "damaged metadata"),
])
def test_fast_extractor_metadata(tmp_path, changes, fragment):
    path = tmp_path / "fast.safetensors"
    write_fast_extractor(path, **changes)
    with pytest.raises(UserError, match=fragment) as info:
        FastExtractor(path)
    assert_one_line(info.value, path)


@pytest.mark.parametrize("kind", KINDS)
def test_statistics_file(tmp_path, kind):
    path = make_bad(tmp_path / "stats.npz", kind, write_stats, other_file(tmp_path, write_generator))
    with pytest.raises(UserError) as info:
        load_stats(path)
    assert_one_line(info.value, path)


def test_statistics_file_with_damaged_contents(tmp_path):
    path = tmp_path / "stats.npz"
    np.savez(path, mu=np.zeros(4), sigma=np.eye(4), metadata=np.array("{not json"))
    with pytest.raises(UserError, match="metadata is not valid JSON") as info:
        load_stats(path)
    assert_one_line(info.value, path)
    np.savez(path, mu=np.array(["a", "b"]), sigma=np.eye(2))
    with pytest.raises(UserError, match="not numbers") as info:
        load_stats(path)
    assert_one_line(info.value, path)
    np.save(tmp_path / "array.npy", np.zeros(3))
    os.replace(tmp_path / "array.npy", path)  # one .npy array named .npz
    with pytest.raises(UserError, match="it is a NumPy .npy array"):
        load_stats(path)


@pytest.mark.parametrize("kind", KINDS)
def test_inception_weights(tmp_path, kind):
    path = make_bad(tmp_path / "inception.pth", kind, write_weights, other_file(tmp_path, write_generator))
    with pytest.raises(UserError) as info:
        read_state_dict(path)
    assert_one_line(info.value, path)


@pytest.mark.parametrize("kind", KINDS)
def test_image_in_a_folder(tmp_path, kind):
    folder = tmp_path / "images" / "cats"
    folder.mkdir(parents=True)
    (folder / "good.png").write_bytes(png_bytes())
    path = make_bad(folder / "bad.png", kind, lambda p: p.write_bytes(png_bytes(64)),
                    other_file(tmp_path, write_checkpoint))
    with pytest.raises(UserError, match="cannot read image") as info:
        load_dataset("folder", tmp_path / "images", resolution=32, use_cache=False)
    message = str(info.value)
    assert "\n" not in message and path.name in message and "remove or replace it" in message


def test_truncated_jpeg_in_a_folder(tmp_path):
    folder = tmp_path / "images" / "cats"
    folder.mkdir(parents=True)
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "a.jpg", quality=95)
    data = (folder / "a.jpg").read_bytes()
    (folder / "b.jpg").write_bytes(data[:len(data) // 2])
    with pytest.raises(UserError, match=r"cannot read image .*b.jpg: the image is truncated; remove or replace it"):
        load_dataset("folder", tmp_path / "images", resolution=32, use_cache=False)


def test_damaged_dataset_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("DCGAN_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "images" / "cats"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(png_bytes())
    first = load_dataset("folder", tmp_path / "images")
    entries = list((tmp_path / "cache").rglob("*.safetensors"))
    assert entries
    for damage in (b"", b"garbage", entries[0].read_bytes()[:100]):
        for entry in entries:
            entry.write_bytes(damage)
        again = load_dataset("folder", tmp_path / "images")
        assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)


@pytest.mark.parametrize("kind", ["random-bytes", "truncated-half", "wrong-format"])
def test_config_file(tmp_path, kind):
    path = tmp_path / "config.yaml"
    make_bad(path, kind, write_config, png_bytes())
    with pytest.raises(UserError) as info:
        read_config_file(path)
    message = str(info.value)
    assert "\n" not in message and path.name in message and "Traceback" not in message


def test_config_file_of_text_or_nothing(tmp_path):
    path = tmp_path / "config.yaml"
    make_bad(path, "garbage-text", write_config)  # /etc/passwd is YAML: a string, not a mapping
    with pytest.raises(UserError, match="must hold a mapping") as info:
        read_config_file(path)
    assert path.name in str(info.value)
    make_bad(path, "empty", write_config)
    assert read_config_file(path) == {}  # an empty file sets nothing, as an empty YAML document


def test_checkpoint_with_pickled_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "dcgan-checkpoint-v1", "obj": torch.nn.Linear(1, 1)}, path)
    with pytest.raises(UserError, match="holds Python objects besides tensors") as info:
        load_checkpoint(path)
    assert_one_line(info.value, path)


def test_a_generator_of_another_model_family_is_one_line(tmp_path, capsys):
    """The family recorded in a generator file picks the class that builds it; an unknown one is refused."""
    from dcgan.checkpoint import load_generator, save_generator
    from dcgan.models import build_generator

    kwargs = dict(z_dim=8, img_resolution=32, img_channels=3, base_channels=8, norm="batch", num_classes=0)
    save_generator(build_generator(**kwargs), kwargs, tmp_path / "ok.safetensors")
    assert load_generator(tmp_path / "ok.safetensors")[0].z_dim == 8
    save_generator(build_generator(**kwargs), kwargs, tmp_path / "other.safetensors", family="stylegan3")
    with pytest.raises(UserError, match="model family 'stylegan3'; this version of dcgan builds dcgan"):
        load_generator(tmp_path / "other.safetensors")


def test_a_damaged_cached_fast_extractor_is_trained_again(tmp_path, monkeypatch, capsys):
    from dcgan.metrics.fast import FastExtractor, ensure_fast_extractor

    monkeypatch.setenv("DCGAN_CACHE", str(tmp_path / "cache"))
    for name in ("cats", "dogs"):
        (tmp_path / "images" / name).mkdir(parents=True)
        for index in range(10):
            noise = np.random.default_rng(index + 10 * (name == "dogs")).integers(0, 256, (16, 16, 3), np.uint8)
            Image.fromarray(noise).save(tmp_path / "images" / name / f"{index}.png")
    path = tmp_path / "fast.safetensors"
    path.write_bytes(b"half a file")  # a copy killed mid-way
    built = ensure_fast_extractor("folder", str(tmp_path / "images"), resolution=16, channels=3, epochs=1,
                                  progress=False, out=path)
    assert built == path and FastExtractor(path).class_names == ["cats", "dogs"]
    assert "the cached fast extractor is not usable" in capsys.readouterr().out
