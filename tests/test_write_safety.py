"""Nothing the user made is changed or lost: every command that writes, pointed at an existing file of
another kind, a folder holding a user's files, its own input and a path through a symbolic link.

Each case snapshots every file under the test's folder (bytes and symlink targets) before the
command and compares after it: a refusal must be one line with a non-zero exit and leave the
snapshot unchanged; a command that may write (a new file in a user's folder) must leave every file
that was there as it was.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dcgan.checkpoint import save_generator
from dcgan.models import build_generator
from test_cli import assert_one_line_error, dcgan_here, generator_file  # noqa: F401 (a fixture)

ROOT = Path(__file__).resolve().parents[1]


def snapshot(folder: Path) -> dict[str, object]:
    """{relative path: bytes, or ('link', target)} of everything under `folder`."""
    state = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            state[key] = ("link", os.readlink(path))
        elif path.is_file():
            state[key] = path.read_bytes()
    return state


@pytest.fixture
def user(tmp_path):
    """A user's folder: notes, a data folder of images, a generator file and a few other files."""
    (tmp_path / "notes.md").write_text("# my notes\n")
    (tmp_path / "package.json").write_text('{"name": "my-site"}\n')
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "CNAME").write_text("gan.example.org\n")
    (tmp_path / "site" / "index.html").write_text("<p>my page</p>\n")
    (tmp_path / "link-to-notes.md").symlink_to(tmp_path / "notes.md")
    (tmp_path / "linked-site").symlink_to(tmp_path / "site")
    kwargs = dict(z_dim=16, img_resolution=32, img_channels=3, base_channels=8, norm="batch", num_classes=0)
    torch.manual_seed(0)
    save_generator(build_generator(**kwargs), kwargs, tmp_path / "generator.safetensors")
    data = tmp_path / "data" / "cats"
    data.mkdir(parents=True)
    from PIL import Image
    for i in range(4):
        Image.new("RGB", (32, 32), (60 * i, 20, 200)).save(data / f"{i}.png")
    return tmp_path


def refused(cli, user: Path, args: list, *fragments: str) -> None:
    before = snapshot(user)
    assert_one_line_error(cli(*args), *fragments)
    assert snapshot(user) == before


# (command, its output flag, what kind it writes: "file" or "folder") -> the command line for an output.
GEN = ["--checkpoint", "{user}/generator.safetensors"]
FILE_OUTPUTS = {
    "generate grid": ["generate", *GEN, "--num", 4, "--out", "{out}"],
    "generate walk": ["generate", *GEN, "--walk", "0,1", "--frames", 4, "--out", "{out}"],
    "evaluate": ["evaluate", *GEN, "--ref", "{user}/data", "--features", "fast", "--num-gen", 8, "--out", "{out}"],
    "evaluate --nearest grid": ["evaluate", *GEN, "--ref", "{user}/data", "--real", "{user}/data", "--nearest",
                                "--num-gen", 8, "--grid", "{out}"],
    "export onnx": ["export", *GEN, "--format", "onnx", "--out", "{out}"],
    "export pt2": ["export", *GEN, "--format", "pt2", "--out", "{out}"],
    "export torchscript": ["export", *GEN, "--format", "torchscript", "--out", "{out}"],
    "features": ["features", "train", "--dataset", "folder", "--data-root", "{user}/data", "--out", "{out}"],
}
SUFFIX = {"generate grid": ".png", "generate walk": ".gif", "evaluate": ".json", "evaluate --nearest grid": ".png",
          "export onnx": ".onnx", "export pt2": ".pt2", "export torchscript": ".pt", "features": ".safetensors"}


def command(template: list, user: Path, out) -> list[str]:
    return [str(part).format(user=user, out=out) for part in template]


@pytest.mark.parametrize("name", FILE_OUTPUTS)
def test_a_file_output_never_replaces_what_the_user_made(name, user, capsys):
    cli = functools.partial(dcgan_here, capsys)
    template, suffix = FILE_OUTPUTS[name], SUFFIX[name]
    # An existing file of another kind (the user's notes under the output's name).
    other = user / f"mine{suffix}"
    other.write_text("my own words\n")
    refused(cli, user, command(template, user, other), "not ", "--force")
    # A folder holding the user's files (named as the output would be).
    folder = user / f"folder{suffix}"
    folder.mkdir()
    (folder / "mine.txt").write_text("mine\n")
    refused(cli, user, command(template, user, folder), "folder")
    # The command's own input (the generator file; for `features`, a file inside its data folder).
    own = user / "data" / "cats" / "0.png" if name == "features" else user / "generator.safetensors"
    refused(cli, user, command(template, user, own), "")
    # A path through a symbolic link: the link is refused, the file it points to untouched.
    link = user / f"link{suffix}"
    link.symlink_to(user / "notes.md")
    refused(cli, user, command(template, user, link), "symbolic link")


def test_export_refuses_the_runs_own_checkpoint(tmp_path, capsys):
    """`export --out run/checkpoint-last.pt` once overwrote the checkpoint it exported."""
    from dcgan.checkpoint import save_checkpoint

    cli = functools.partial(dcgan_here, capsys)
    run = tmp_path / "run"
    run.mkdir()
    kwargs = dict(z_dim=16, img_resolution=32, img_channels=3, base_channels=8, norm="batch", num_classes=0)
    save_checkpoint({"G": build_generator(**kwargs).state_dict(), "generator_kwargs": kwargs},
                    run / "checkpoint-last.pt")
    refused(cli, tmp_path, ["export", "--checkpoint", run, "--format", "torchscript", "--out",
                            run / "checkpoint-last.pt"], "--force")
    code, out, err = cli("export", "--checkpoint", run, "--format", "torchscript", "--out", run / "generator.pt")
    assert code == 0, err
    again = cli("export", "--checkpoint", run, "--format", "torchscript", "--out", run / "generator.pt")
    assert again[0] == 0, again[2]  # its own earlier export is replaced


def test_generate_outdir_writes_beside_the_users_files_and_replaces_only_its_own(user, capsys):
    cli = functools.partial(dcgan_here, capsys)
    site = user / "site"
    before = snapshot(user)
    code, _, err = cli("generate", "--checkpoint", user / "generator.safetensors", "--num", 2, "--outdir", site)
    assert code == 0, err
    after = snapshot(user)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing that was there changed
    code, _, err = cli("generate", "--checkpoint", user / "generator.safetensors", "--num", 2, "--seed", 0,
                       "--outdir", site)
    assert code == 0, err  # its own files: replaced
    (site / "seed000001.png").write_bytes(b"my edit")
    (site / "seed000002.png").write_text("a file of mine that has the name of a generated one")
    refused(cli, user, ["generate", "--checkpoint", user / "generator.safetensors", "--num", 3, "--outdir", site],
            "seed000001.png, seed000002.png", "not written by dcgan")
    # Through a symbolic link to the folder: the same rules, nothing of the user's replaced.
    refused(cli, user, ["generate", "--checkpoint", user / "generator.safetensors", "--num", 3, "--outdir",
                        user / "linked-site"], "not written by dcgan")
    code, _, err = cli("generate", "--checkpoint", user / "generator.safetensors", "--num", 3, "--outdir",
                       user / "linked-site", "--force")
    assert code == 0, err
    assert (site / "CNAME").read_text() == "gan.example.org\n" and (user / "notes.md").read_text() == "# my notes\n"
    # A file as --outdir.
    refused(cli, user, ["generate", "--checkpoint", user / "generator.safetensors", "--num", 2, "--outdir",
                        user / "notes.md"], "not a folder")


def test_a_generator_file_whose_class_names_are_paths_is_refused(tmp_path, capsys):
    cli = functools.partial(dcgan_here, capsys)
    for bad in ["../../escaped", "a/b", "..", "tab\there", "x" * 101]:
        kwargs = dict(z_dim=16, img_resolution=32, img_channels=3, base_channels=8, norm="batch", num_classes=2,
                      class_names=["cat", bad])
        path = tmp_path / "conditional.safetensors"
        save_generator(build_generator(**kwargs), kwargs, path)
        refused(cli, tmp_path, ["generate", "--checkpoint", path, "--class", "all", "--num", 1, "--outdir",
                                tmp_path / "out" / "a"], "class name")
    assert not (tmp_path / "out").exists() and not (tmp_path / "escaped").exists()


def test_train_outdir(user, capsys):
    cli = functools.partial(dcgan_here, capsys)
    base = ["train", "--dataset", "folder", "--data-root", user / "data", "--kimg", 0.008, "--batch-size", 4,
            "--g-channels", 8, "--d-channels", 8, "--threads", 1, "--grid-size", 4]
    refused(cli, user, [*base, "--outdir", user / "notes.md"], "not a folder")
    refused(cli, user, [*base, "--outdir", user / "data" / "runs"], "inside this command's input")
    before = snapshot(user)
    code, _, err = cli(*base, "--outdir", user / "linked-site")  # a new run folder in the link's target
    assert code == 0, err
    after = snapshot(user)
    assert {k: v for k, v in after.items() if k in before} == before
    assert len(list((user / "site").glob("00000-folder-*"))) == 1


def test_resume_outside_a_run_folder_is_refused(tmp_path, capsys):
    from dcgan.checkpoint import save_checkpoint

    cli = functools.partial(dcgan_here, capsys)
    folder = tmp_path / "downloads"
    folder.mkdir()
    (folder / ".notes.tmp123").write_text("looks temporary, is mine")
    save_checkpoint({"config": {}}, folder / "x.pt")
    refused(cli, tmp_path, ["train", "--resume", folder / "x.pt"], "not a run folder")


@pytest.mark.parametrize("script", ["budget_sweep", "memorization", "truncation", "fast_trust", "peers",
                                    "crash_resume", "serve_load", "train_throughput"])
def test_benchmark_out_refuses_a_file_a_users_folder_and_a_link(script, user):
    arguments = {"budget_sweep": ["benchmarks/sweeps/tail-decay-15min.yaml", "--data-root", user / "data",
                                  "--kimg", 1],
                 "memorization": ["--model", "cifar10-cars", "--data-root", user / "data"],
                 "truncation": ["--model", "cifar10-cars", "--data-root", user / "data"],
                 "fast_trust": ["--data-root", user / "data", "--recipe", "cpu-v1"],
                 "peers": ["--data-root", user / "data"],
                 "crash_resume": ["--kills", 1],
                 "serve_load": ["--seconds", 1],
                 "train_throughput": ["--data-root", user / "data"]}[script]
    for out in [user / "notes.md", user / "site", user / "linked-site", user / "data"]:
        before = snapshot(user)
        result = subprocess.run([sys.executable, f"benchmarks/{script}.py", *map(str, arguments), "--out", str(out)],
                                capture_output=True, text=True, cwd=ROOT)
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "--out" in lines[0], result.stderr
        assert snapshot(user) == before


# ----------------------------------------------------------------------------------------------
# Resume: the lock before any read, run folders only, pruning by images reached, one-line mismatches.

def run_folder_of(tmp_path: Path, checkpoint: bytes) -> Path:
    """A folder with what makes a run folder (config.json, samples/) and `checkpoint` as its checkpoint."""
    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "checkpoint-last.pt").write_bytes(checkpoint)
    return run


def test_resume_takes_the_lock_before_it_reads_the_checkpoint(tmp_path, capsys):
    """A run still writing its folder is named before its (perhaps half-written) checkpoint is read."""
    cli = functools.partial(dcgan_here, capsys)
    run = run_folder_of(tmp_path, b"being written")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from dcgan.files import RunFolderLock; "
                               "lock = RunFolderLock(sys.argv[1]); print('locked', flush=True); time.sleep(60)",
                               str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        refused(cli, tmp_path, ["train", "--resume", run], f"is being trained by process {holder.pid}")
    finally:
        holder.kill()
        holder.wait()


def test_a_run_folder_that_cannot_be_written_is_one_line(tmp_path, capsys):
    cli = functools.partial(dcgan_here, capsys)
    run = run_folder_of(tmp_path, b"x")
    (run / ".lock").mkdir()  # the lock file cannot be opened (as in a read-only folder)
    refused(cli, tmp_path, ["train", "--resume", run], "cannot write the run folder")


def test_pruning_keeps_the_snapshot_resumed_from_and_the_abandoned_later_ones(tmp_path):
    from dcgan.training.run_dir import keep_snapshot

    for kimg in (100, 200, 300):  # the run reached 300 kimg; it is resumed from 100
        (tmp_path / f"checkpoint-kimg{kimg:06d}.pt").write_text(str(kimg))
    (tmp_path / "checkpoint-last.pt").write_text("150")
    keep_snapshot(tmp_path, 150_000, keep=2)
    assert sorted(p.name for p in tmp_path.glob("checkpoint-kimg*")) == [
        "checkpoint-kimg000100.pt", "checkpoint-kimg000150.pt", "checkpoint-kimg000200.pt", "checkpoint-kimg000300.pt"]
    (tmp_path / "checkpoint-last.pt").write_text("250")
    keep_snapshot(tmp_path, 250_000, keep=2)  # the line reached 250: of those it reached, 200 (rewritten) and 250
    assert sorted(p.name for p in tmp_path.glob("checkpoint-kimg*")) == [
        "checkpoint-kimg000200.pt", "checkpoint-kimg000250.pt", "checkpoint-kimg000300.pt"]


def test_resume_with_another_freeze_d_is_one_line(user, capsys):
    cli = functools.partial(dcgan_here, capsys)
    code, _, err = cli("train", "--dataset", "folder", "--data-root", user / "data", "--kimg", 0.008,
                       "--batch-size", 4, "--g-channels", 8, "--d-channels", 8, "--threads", 1, "--grid-size", 4,
                       "--outdir", user / "runs")
    assert code == 0, err
    (run,) = (user / "runs").iterdir()
    refused(cli, user, ["train", "--resume", run, "--freeze-d", 1, "--kimg", 0.016], "--freeze-d 0")


def test_seeds_are_bounded_where_they_are_parsed(generator_file, capsys, tmp_path):  # noqa: F811
    cli = functools.partial(dcgan_here, capsys)
    for args in (["--seed", 2**63], ["--walk", f"0,{2**64}", "--out", tmp_path / "w.gif"], ["--seed", -1],
                 ["--num", 10**9]):
        assert_one_line_error(cli("generate", "--checkpoint", generator_file, *args), "")
    assert_one_line_error(cli("evaluate", "--checkpoint", generator_file, "--seed", 2**64), "")
    assert not any(tmp_path.iterdir())
