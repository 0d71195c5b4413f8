"""A run survives SIGTERM, Ctrl-C, a full disk, torn files and temp files left by a killed process."""

import csv
import errno
import os
import signal

import pytest
import torch

from dcgan.checkpoint import load_checkpoint, save_checkpoint
from dcgan.errors import UserError
from dcgan.files import atomic_write, remove_stale_temp_files
from dcgan.losses import GANLoss
from dcgan.training.loop import train
from dcgan.training.report import COLUMNS, _truncate_csv
from test_train import all_state_tensors, few_cars, small_config  # noqa: F401 (few_cars is a fixture)

STEPS = 20
KIMG = STEPS * 16 / 1000


def test_disk_full_is_one_line_and_the_previous_file_survives(tmp_path):
    path = tmp_path / "checkpoint-last.pt"
    save_checkpoint({"step": 1}, path)

    def disk_full(tmp):
        tmp.write_bytes(b"half a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(UserError, match="could not write .*checkpoint-last.pt .*No space left on device.*intact"):
        atomic_write(path, disk_full)
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-last.pt"]


def test_written_files_have_the_usual_permissions_whatever_the_writer_makes(tmp_path):
    from safetensors.torch import save_file

    atomic_write(tmp_path / "g.safetensors", lambda tmp: save_file({"w": torch.zeros(2)}, str(tmp)))  # 0600 alone
    atomic_write(tmp_path / "a.txt", lambda tmp: tmp.write_text("a"))
    umask = os.umask(0o022)
    os.umask(umask)
    for name in ("g.safetensors", "a.txt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_stale_temp_files_are_removed_and_only_they(tmp_path):
    (tmp_path / "samples").mkdir()
    stale = [tmp_path / ".checkpoint-last.pt.tmp4242", tmp_path / "samples" / ".fakes-kimg0000001.00.png.tmp7"]
    kept = [tmp_path / "checkpoint-last.pt", tmp_path / ".hidden", tmp_path / "notes.tmp3"]
    for path in stale + kept:
        path.write_bytes(b"x")
    assert sorted(remove_stale_temp_files(tmp_path)) == sorted(stale)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in stale)


def test_a_torn_csv_row_is_dropped_when_resuming(tmp_path):
    path = tmp_path / "metrics.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for step in (2, 4, 6):
            writer.writerow({name: step if name == "step" else 0.5 for name in COLUMNS})
    with open(path, "a") as handle:
        handle.write("8,0.12")  # killed mid-row
    _truncate_csv(path, last_step=8)
    with open(path, newline="") as handle:
        assert [int(row["step"]) for row in csv.DictReader(handle)] == [2, 4, 6]
    _truncate_csv(path, last_step=4)
    with open(path, newline="") as handle:
        assert [int(row["step"]) for row in csv.DictReader(handle)] == [2, 4]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_a_checkpoint_that_resumes_exactly(tmp_path, few_cars, monkeypatch, signum):  # noqa: F811
    # A real signal at step 7: the loop ends that step, writes checkpoint-last.pt (no snapshot is due
    # before step 20) and returns; resumed to 20 steps it equals a run never stopped, bit for bit.
    config = dict(kimg=KIMG, lr_decay="none")
    straight = train(small_config(tmp_path / "a", **config), data=few_cars, show_progress=False)
    original, calls = GANLoss.generator_step, []

    def signalled_at_step_7(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 7:
            os.kill(os.getpid(), signum)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GANLoss, "generator_step", signalled_at_step_7)
    stopped = train(small_config(tmp_path / "b", **config), data=few_cars, show_progress=False)
    monkeypatch.setattr(GANLoss, "generator_step", original)
    state = load_checkpoint(stopped / "checkpoint-last.pt")
    assert state["step"] == 7
    summary = (stopped / "summary.json").read_text()
    assert f"stopped by {signal.Signals(signum).name}" in summary
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the run's handlers are gone again
    resumed = train(small_config(tmp_path / "b", **config), data=few_cars, run_dir=stopped, resume_state=state,
                    show_progress=False)
    a = all_state_tensors(load_checkpoint(straight / "checkpoint-last.pt"))
    b = all_state_tensors(load_checkpoint(resumed / "checkpoint-last.pt"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_survives_torn_files_and_temp_files_of_a_killed_process(tmp_path, few_cars):  # noqa: F811
    config = dict(lr_decay="none", snapshot_kimg=0.08)
    run = train(small_config(tmp_path, kimg=KIMG / 2, **config), data=few_cars, show_progress=False)
    samples = sorted((run / "samples").glob("fakes*.png"))
    torn = run / "samples" / "fakes-kimg00000.01.png"  # sorts first, as an old version's torn grid would
    torn.write_bytes(samples[0].read_bytes()[:60])
    leftover = run / ".checkpoint-last.pt.tmp99999"
    leftover.write_bytes(b"half a checkpoint")
    with open(run / "metrics.csv", "a") as handle:
        handle.write("12,0.19")  # a row torn by the kill
    state = load_checkpoint(run / "checkpoint-last.pt")
    train(small_config(tmp_path, kimg=KIMG, **config), data=few_cars, run_dir=run, resume_state=state,
          show_progress=False)
    assert not leftover.exists()
    assert not [p for p in run.rglob(".*.tmp*")]
    with open(run / "metrics.csv", newline="") as handle:
        assert [int(row["step"]) for row in csv.DictReader(handle)] == list(range(2, STEPS + 1, 2))
    from PIL import Image

    with Image.open(run / "progress.gif") as gif:
        assert gif.n_frames == len(list((run / "samples").glob("fakes*.png"))) - 1  # the torn one skipped


@pytest.mark.parametrize("device, message", [("cuda:1", "uses the GPU of its LOCAL_RANK"), ("mps", "not --device mps")])
def test_torchrun_refuses_devices_it_would_silently_ignore(monkeypatch, device, message):
    from dcgan.training.distributed import init_process

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(UserError, match=message):
        init_process(device)


def test_a_run_folder_has_one_writer_and_a_killed_one_leaves_no_lock(tmp_path, few_cars):  # noqa: F811
    import subprocess
    import sys

    from dcgan.files import RunFolderLock

    config = dict(lr_decay="none", snapshot_kimg=0.08)
    run = train(small_config(tmp_path, kimg=KIMG / 2, **config), data=few_cars, show_progress=False)
    state = load_checkpoint(run / "checkpoint-last.pt")
    leftover = run / ".checkpoint-last.pt.tmp4242"  # a live writer's temporary file
    leftover.write_bytes(b"being written")
    csv_before = (run / "metrics.csv").read_bytes()

    # Another process trains in the folder: a resume is refused, naming it, and touches nothing.
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from dcgan.files import RunFolderLock; "
                               "lock = RunFolderLock(sys.argv[1]); print('locked', flush=True); time.sleep(60)",
                               str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match=f"is being trained by process {holder.pid} on "):
            train(small_config(tmp_path, kimg=KIMG, **config), data=few_cars, run_dir=run, resume_state=state,
                  show_progress=False)
        assert leftover.exists() and (run / "metrics.csv").read_bytes() == csv_before
    finally:
        holder.kill()  # SIGKILL: the OS releases its lock
        holder.wait()
    train(small_config(tmp_path, kimg=KIMG, **config), data=few_cars, run_dir=run, resume_state=state,
          show_progress=False)
    assert not leftover.exists()
    RunFolderLock(run).release()  # the finished run let go of it too


def test_the_progress_gif_keeps_a_bounded_number_of_frames(tmp_path):
    from PIL import Image

    from dcgan.training.report import save_progress_gif

    for index in range(12):
        Image.new("RGB", (4, 4), (index * 20, 0, 0)).save(tmp_path / f"fakes-kimg{index:09.2f}.png")
    save_progress_gif(tmp_path, tmp_path / "progress.gif", max_frames=5)
    with Image.open(tmp_path / "progress.gif") as gif:
        assert gif.n_frames == 5
        gif.seek(0)
        first = gif.convert("RGB").getpixel((0, 0))
        gif.seek(4)
        last = gif.convert("RGB").getpixel((0, 0))
    assert first[0] == 0 and abs(last[0] - 220) <= 4  # the first and the last grid are kept


WRITERS_ON_A_FULL_DISK = r"""
import resource, signal, sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from dcgan.checkpoint import load_checkpoint, save_checkpoint
from dcgan.errors import UserError
from dcgan.files import atomic_write, save_image

folder = Path(sys.argv[1])
big = {"w": torch.randn(300_000)}  # 1.2 MB each way
writers = {
    "torch.save": (folder / "checkpoint-last.pt", lambda path, value: save_checkpoint(value, path)),
    "safetensors": (folder / "generator.safetensors",
                    lambda path, value: atomic_write(path, lambda tmp: save_file(value, str(tmp)))),
    "numpy": (folder / "stats.npz", lambda path, value: atomic_write(
        path, lambda tmp: np.savez(open(tmp, "wb"), w=value["w"].numpy()))),
    "pillow": (folder / "grid.png", lambda path, value: save_image(square_image(value["w"]), path)),
}


def square_image(values):
    side = int(values.numel() ** 0.5)
    return Image.fromarray((values.numpy()[:side * side].reshape(side, side) * 50).astype("uint8"))

for name, (path, write) in writers.items():
    write(path, {"w": torch.zeros(4)})  # the last good file
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
for name, (path, write) in writers.items():
    try:
        write(path, big)
        print(name, "| written")
    except UserError as error:
        print(name, "|", error)
"""


def test_a_write_that_does_not_fit_is_one_line_whatever_the_writer(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", WRITERS_ON_A_FULL_DISK, str(tmp_path)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" | ", 1) for line in result.stdout.splitlines())
    assert sorted(lines) == ["numpy", "pillow", "safetensors", "torch.save"]
    for name, line in lines.items():
        assert "File too large" in line and "is intact" in line and "\n" not in line, (name, line)
    assert load_checkpoint(tmp_path / "checkpoint-last.pt")["w"].shape == (4,)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-last.pt", "generator.safetensors",
                                                          "grid.png", "stats.npz"]  # no temporary file left
