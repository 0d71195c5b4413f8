"""The `dcgan` command as a user runs it: in a subprocess, checking exit codes and messages."""

import functools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan.checkpoint import save_generator
from dcgan.models import build_generator


def dcgan(*args, cwd=None):
    result = subprocess.run([sys.executable, "-m", "dcgan", *map(str, args)], capture_output=True, text=True,
                            cwd=cwd, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return result.returncode, result.stdout, result.stderr


def dcgan_here(capsys, *args):
    """`dcgan ARGS` in this process, without starting an interpreter: (exit code, stdout, stderr)."""
    from dcgan.cli import main

    capsys.readouterr()
    try:
        code = main([str(arg) for arg in args])
    except SystemExit as leaving:  # argparse's own errors
        code = leaving.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(result, *fragments):
    code, _, stderr = result
    assert code != 0
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory):
    kwargs = dict(z_dim=16, img_resolution=32, img_channels=3, base_channels=8, norm="batch", num_classes=0)
    path = tmp_path_factory.mktemp("gen") / "generator.safetensors"
    torch.manual_seed(0)
    save_generator(build_generator(**kwargs), kwargs, path)
    return path


def test_missing_data_folder(tmp_path):
    assert_one_line_error(dcgan("train", "--dataset", "folder", "--data-root", tmp_path / "nope", "--outdir", tmp_path),
                          "does not exist", "put images in")
    assert not any(p.name.startswith("0") for p in tmp_path.iterdir())  # no half-made run folder


def test_missing_torchvision_dataset_with_no_download_names_the_folder(tmp_path):
    assert_one_line_error(dcgan("train", "--dataset", "mnist", "--data-root", tmp_path, "--no-download",
                                "--outdir", tmp_path), "mnist not found under", str(tmp_path), "--no-download")


def test_unknown_class_lists_valid_ones(cifar_root, tmp_path):
    assert_one_line_error(dcgan("train", "--dataset", "folder", "--data-root", cifar_root / "train",
                                "--classes", "car", "--outdir", tmp_path), "unknown class 'car'", "automobile")


def test_unreadable_image(tmp_path):
    folder = tmp_path / "data" / "x"
    folder.mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(folder / "a.png")
    (folder / "b.png").write_bytes(b"garbage")
    assert_one_line_error(dcgan("train", "--dataset", "folder", "--data-root", tmp_path / "data",
                                "--outdir", tmp_path), "cannot read image", "b.png")


@pytest.mark.parametrize("args, fragment", [
    (["--batch-size", "abc"], "--batch-size expects int"),
    (["--preset", "fancy"], "--preset must be one of cpu-v1, classic, default"),
    (["--resolution", "48"], "--resolution must be 32 or 64"),
    (["--no-such-flag"], "unrecognized arguments"),
    (["--config", "missing.yaml"], "config file not found"),
])
def test_invalid_flag_values(tmp_path, monkeypatch, capsys, args, fragment):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(dcgan_here(capsys, "train", "--dry-run", *args), fragment)


def test_dry_run_prints_the_resolved_config(tmp_path):
    code, stdout, _ = dcgan("train", "--dry-run", "--preset", "classic", "--lr-d", "1e-4", cwd=tmp_path)
    assert code == 0 and '"lr_d": 0.0001' in stdout and '"loss": "bce"' in stdout


def test_generate_grid_and_files(generator_file, tmp_path):
    code, stdout, stderr = dcgan("generate", "--checkpoint", generator_file, "--num", 9, "--seed", 5,
                                 "--out", tmp_path / "grid.png")
    assert code == 0, stderr
    assert Image.open(tmp_path / "grid.png").size == (3 * 34 + 2, 3 * 34 + 2)
    code, _, stderr = dcgan("generate", "--checkpoint", generator_file, "--num", 3, "--seed", 6,
                            "--outdir", tmp_path / "each")
    assert code == 0, stderr
    assert sorted(p.name for p in (tmp_path / "each").iterdir()) == [".dcgan-files.json", "seed000006.png",
                                                                      "seed000007.png", "seed000008.png"]
    # Seed 6 is the same image alone or as the second image of a grid that starts at seed 5.
    grid = Image.open(tmp_path / "grid.png").crop((36, 2, 68, 34))
    assert np.array_equal(np.asarray(grid), np.asarray(Image.open(tmp_path / "each" / "seed000006.png")))


def test_generate_bad_input(generator_file, tmp_path, capsys):
    cli = functools.partial(dcgan_here, capsys)
    assert_one_line_error(cli("generate", "--checkpoint", generator_file, "--num", 0), "--num must be between 1")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    assert_one_line_error(cli("generate", "--checkpoint", junk), "not a readable dcgan checkpoint")
    assert_one_line_error(cli("generate", "--checkpoint", tmp_path / "absent.pt"), "checkpoint not found")
    assert_one_line_error(cli("generate", "--checkpoint", generator_file, "--seed", -1), "--seed")


def test_summary_prints_both_networks():
    code, stdout, _ = dcgan("summary", "--preset", "classic", "--resolution", "64")
    assert code == 0 and "Generator: 3,576,704 parameters" in stdout and "Discriminator" in stdout


def test_summary_of_a_conditional_model_shows_its_class_inputs():
    code, stdout, stderr = dcgan("summary", "--conditional", "acgan", "--num-classes", 7)
    assert code == 0, stderr
    generator = build_generator(z_dim=100, base_channels=64, num_classes=7)
    assert "acgan over 7 classes" in stdout
    assert f"Generator: {sum(p.numel() for p in generator.parameters()):,}" in stdout
    assert "Embedding" in stdout and "[2, 7, 1, 1]" in stdout  # G's label embedding, D's class head
    assert_one_line_error(dcgan("summary", "--conditional", "acgan", "--num-classes", 1), "--num-classes")


def small_cars_run(cifar_root, tmp_path):
    """A two-step run of `dcgan train` on the cars (narrow networks): its run folder."""
    common = ["--dataset", "folder", "--data-root", cifar_root / "train", "--classes", "automobile",
              "--g-channels", 8, "--d-channels", 8, "--batch-size", 16, "--outdir", tmp_path]
    code, _, stderr = dcgan("train", *common, "--kimg", 0.032)
    assert code == 0, stderr
    return tmp_path / "00000-folder-cpu-v1"


def test_resume_with_another_architecture_names_both_shapes(cifar_root, tmp_path):
    run = small_cars_run(cifar_root, tmp_path)
    assert (run / "checkpoint-last.pt").is_file()
    assert_one_line_error(dcgan("train", "--resume", run, "--g-channels", 16, "--kimg", 0.064),
                          "has shape", "in the checkpoint but", "in the model")
    code, stdout, stderr = dcgan("train", "--resume", run, "--kimg", 0.064)
    assert code == 0, stderr
    assert "4 steps" in stdout


def test_resume_on_other_data_is_refused_unless_asked_for(cifar_root, tmp_path):
    run = small_cars_run(cifar_root, tmp_path)
    assert_one_line_error(dcgan("train", "--resume", run, "--classes", "truck", "--kimg", 0.064),
                          "was trained on other data", "classes ['automobile'] -> ['truck']", "--allow-new-data")
    code, stdout, stderr = dcgan("train", "--resume", run, "--classes", "truck", "--kimg", 0.064, "--allow-new-data")
    assert code == 0, stderr
    assert "on other data (classes ['automobile'] -> ['truck'])" in stdout and "4 steps" in stdout


def test_serve_bad_input(generator_file, tmp_path, capsys):
    cli = functools.partial(dcgan_here, capsys)
    assert_one_line_error(cli("serve", "--model", "mnist"), "train it yourself: dcgan train --dataset mnist")
    assert_one_line_error(cli("serve", "--port", 99999), "--port must be between")  # no arguments: shipped models
    assert_one_line_error(cli("serve", "--checkpoint", tmp_path / "absent"), "checkpoint not found")
    assert_one_line_error(cli("serve", "--checkpoint", generator_file, "--port", 99999), "--port must be between")
    assert_one_line_error(cli("serve", "--checkpoint", generator_file, "--runs", tmp_path / "nope"),
                          "--runs folder", "does not exist")
    assert_one_line_error(cli("serve", "--checkpoint", generator_file, "--nearest"),
                          "found no training images for any model", "no run folder")
    assert_one_line_error(cli("serve", "--nearest-ref", tmp_path), "is one model's training data")
    assert_one_line_error(cli("serve", "--nearest-classes", "car"), "--nearest-classes goes with --nearest-ref")


def test_the_cli_reference_names_every_flag_of_every_command():
    """docs/cli.md is generated from the parsers (scripts/cli_reference.py): a flag added without
    regenerating it fails here."""
    import argparse

    from dcgan.cli import build_parser

    reference = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text(encoding="utf-8")
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = [f"{name} {flag}" for name, sub in subparsers.choices.items() for action in sub._actions
               for flag in action.option_strings if f"## dcgan {name}" not in reference or flag not in
               reference.split(f"## dcgan {name}")[1].split("\n## ")[0]]
    assert not missing, f"docs/cli.md lacks {missing[:5]}: run python scripts/cli_reference.py"
