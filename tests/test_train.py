"""Training runs on real data: exact resume, the run folder, divergence, and learning itself."""

import csv
import json

import pytest
import torch

from dcgan.checkpoint import load_checkpoint
from dcgan.config import resolve_config
from dcgan.data import ImageData
from dcgan.errors import UserError
from dcgan.metrics.frechet import pixel_frechet_distance
from dcgan.sampling import generate_images
from dcgan.training.loop import train
from dcgan.training.state import state_tensors


def small_config(tmp_path, preset="cpu-v1", **overrides):
    values = dict(g_channels=8, d_channels=8, batch_size=16, log_every=2, grid_size=16, outdir=str(tmp_path),
                  dataset="folder", classes=["automobile"], seed=3)
    values.update(overrides)
    return resolve_config(preset, overrides=values)


@pytest.fixture(scope="module")
def few_cars(cars):
    return ImageData(cars.images[:160], cars.labels[:160], cars.class_names)


def all_state_tensors(state):
    """Every tensor of a checkpoint's training state (weights, EMA, optimizers, RNG, data order)."""
    return state_tensors(state)


@pytest.mark.parametrize("preset, extra", [
    ("cpu-v1", dict(diffaugment="color,translation,cutout")),
    ("classic", {}),
    # ADA's probability and LeCam's anchors are training state too; a BatchNorm-free spectral-norm D
    # takes the fused real+fake forward, with lazy R1 and R2 (every 16 D steps).
    ("cpu-v1", dict(ada_target=0.6, ada_kimg=1.0, lecam_weight=0.1, loss="rpgan", r1_gamma=0.1,
                    r2_gamma=0.1, d_mbstd=4, d_norm="none", spectral_norm=True)),
])
def test_resume_is_exact(tmp_path, few_cars, preset, extra):
    # 20 steps of 16 images, or 10 + restart + 10: the same weights, optimizer state and RNG, bit for bit.
    # The default preset runs EMA (and here DiffAugment) across the restart. An lr decay is keyed to the
    # run's length, which the shorter first half changes, so it is off here.
    adaptive = "ada_target" in extra
    extra = {**extra, "lr_decay": "none"}
    steps = 20
    kimg = steps * 16 / 1000
    straight = train(small_config(tmp_path / "a", preset, kimg=kimg, **extra), data=few_cars, show_progress=False)
    half = train(small_config(tmp_path / "b", preset, kimg=kimg / 2, **extra), data=few_cars, show_progress=False)
    state = load_checkpoint(half / "checkpoint-last.pt")
    assert state["step"] == steps // 2
    resumed = train(small_config(tmp_path / "b", preset, kimg=kimg, **extra), data=few_cars, run_dir=half,
                    resume_state=state, show_progress=False)
    final_a, final_b = load_checkpoint(straight / "checkpoint-last.pt"), load_checkpoint(resumed / "checkpoint-last.pt")
    a, b = all_state_tensors(final_a), all_state_tensors(final_b)
    assert a.keys() == b.keys() and len(a) > 20
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert final_a["augment"] == final_b["augment"] and final_a["loss"] == final_b["loss"]
    if adaptive:
        assert final_a["augment"]["p"] > 0 and final_a["loss"]["lecam_ema"]["real"] != 0
    # The CSV of the resumed run tells one history, with no duplicated steps.
    with open(resumed / "metrics.csv") as handle:
        logged = [int(row["step"]) for row in csv.DictReader(handle)]
    assert logged == list(range(2, steps + 1, 2))


def test_run_folder_holds_every_artifact(tmp_path, few_cars):
    run = train(small_config(tmp_path, kimg=0.64, snapshot_kimg=0.16, log=["tensorboard"]), data=few_cars,
                show_progress=False)
    assert run.name == "00000-folder-cpu-v1"
    for name in ("config.json", "environment.json", "model.json", "model_summary.txt", "metrics.csv",
                 "losses.png", "loss_variance.png", "progress.gif", "real_vs_fake.png", "checkpoint-last.pt",
                 "generator.safetensors", "summary.json"):
        assert (run / name).is_file(), name
    assert len(list((run / "samples").glob("fakes*.png"))) == 4  # every 0.16 kimg of 0.64
    assert "Generator" in (run / "model_summary.txt").read_text()
    environment = json.loads((run / "environment.json").read_text())
    assert environment["cpu"] and "cores" in environment["cpu"]  # the machine a figure came from, named
    assert environment["precision"] in ("fp32", "bf16") and environment["precision_reason"]  # and its precision
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    with open(run / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 20 and float(rows[-1]["images_per_s"]) > 0
    assert all(rows[-1][name] for name in ("loss_d", "loss_g", "d_real", "d_fake", "grad_norm_g", "lr_g"))
    again = train(small_config(tmp_path, kimg=0.032), data=few_cars, show_progress=False)
    assert again.name == "00001-folder-cpu-v1"


def test_divergence_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path, few_cars, monkeypatch):
    from dcgan.losses import GANLoss

    run = train(small_config(tmp_path, kimg=0.16), data=few_cars, show_progress=False)
    good = load_checkpoint(run / "checkpoint-last.pt")
    original = GANLoss.discriminator_step

    def poisoned(self, *args):
        stats = original(self, *args)
        stats["loss_d"] = torch.tensor(float("nan"))
        return stats

    monkeypatch.setattr(GANLoss, "discriminator_step", poisoned)
    with pytest.raises(UserError, match="training diverged at step"):
        train(small_config(tmp_path, kimg=0.32), data=few_cars, run_dir=run, resume_state=good,
              show_progress=False)
    assert load_checkpoint(run / "checkpoint-last.pt")["step"] == good["step"]


@pytest.mark.slow
def test_training_on_cars_moves_samples_toward_the_data(tmp_path, cars):
    config = resolve_config("cpu-v1", overrides=dict(dataset="folder", classes=["automobile"], kimg=25,
                                                     outdir=str(tmp_path), seed=0))
    torch.manual_seed(config.seed)
    from dcgan.models import build_generator, generator_kwargs

    untrained = build_generator(**generator_kwargs(config, 32, 3))
    run = train(config, data=cars, show_progress=False)
    from dcgan.checkpoint import load_generator

    trained, _ = load_generator(run)
    seeds = range(1000)
    before = pixel_frechet_distance(generate_images(untrained, seeds), cars.images[:2000])
    after = pixel_frechet_distance(generate_images(trained, seeds), cars.images[:2000])
    print(f"8x8 pixel Fréchet distance to the cars: untrained {before:.3f}, after 25 kimg {after:.3f}")
    assert after < 0.6 * before


def test_wandb_logs_offline_without_login(tmp_path, few_cars, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = train(small_config(tmp_path, kimg=0.064, log=["wandb"]), data=few_cars, show_progress=False)
    offline_runs = list((run / "wandb").glob("offline-run-*"))
    assert offline_runs and list(offline_runs[0].glob("*.wandb"))


def torchrun(*args, timeout=600, env=None):
    import os
    import subprocess
    import sys

    return subprocess.run(  # `torchrun` is `python -m torch.distributed.run`
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "dcgan", "train",
         *map(str, args), "--device", "cpu", "--threads", "1"], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})})


@pytest.mark.slow
def test_torchrun_two_processes_resume_exactly_and_draw_their_own_noise(tmp_path, cifar_root):
    small = ["--dataset", "folder", "--data-root", cifar_root / "train", "--classes", "automobile",
             "--g-channels", "8", "--d-channels", "8", "--batch-size", "16", "--lr-decay", "none", "--seed", "1"]
    result = torchrun(*small, "--kimg", "0.64", "--outdir", tmp_path / "a")
    assert result.returncode == 0, result.stderr[-2000:]
    (straight,) = (tmp_path / "a").iterdir()  # only rank 0 writes
    result = torchrun(*small, "--kimg", "0.32", "--outdir", tmp_path / "b")
    assert result.returncode == 0, result.stderr[-2000:]
    (half,) = (tmp_path / "b").iterdir()
    state = load_checkpoint(half / "checkpoint-last.pt")
    assert state["step"] == 10  # 320 images, 2 processes x 16 per step
    rng = state["rng_cpu_ranks"]  # each rank's own generator state, so ranks keep drawing different noise
    assert len(rng) == 2 and not torch.equal(rng[0], rng[1]) and torch.equal(rng[0], state["rng_cpu"])
    import json

    summary = json.loads((half / "summary.json").read_text())  # the two replicas ended bit-identical
    assert summary["processes"] == {"count": 2, "weights_identical": True}
    result = torchrun("--resume", half, "--kimg", "0.64")
    assert result.returncode == 0, result.stderr[-2000:]
    a = all_state_tensors(load_checkpoint(straight / "checkpoint-last.pt"))
    b = all_state_tensors(load_checkpoint(half / "checkpoint-last.pt"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.slow
def test_torchrun_with_a_time_budget_ends_on_time_with_its_summary(tmp_path, cifar_root):
    import json

    # A cosine decay keyed to the clock changes the rates every step: the processes take rank 0's
    # clock, so they apply the same rates and end with the same weights.
    result = torchrun("--dataset", "folder", "--data-root", cifar_root / "train", "--classes", "automobile",
                      "--g-channels", "8", "--d-channels", "8", "--batch-size", "16", "--minutes", "0.1",
                      "--lr-decay", "cosine", "--lr-decay-start", "0", "--outdir", tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = tmp_path.iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stop_reason"] == "time budget of 0.1 minutes reached" and summary["step"] > 0
    assert summary["processes"] == {"count": 2, "weights_identical": True}
    assert load_checkpoint(run / "checkpoint-last.pt")["step"] == summary["step"]


@pytest.mark.parametrize("overrides", [
    dict(loss="wgan-gp", n_dis=2, g_norm="none", d_norm="none", diffaugment=""),
    dict(preset="classic", label_smoothing=0.1, lr_g=1e-4, lr_d=4e-4, g_norm="instance"),
])
def test_other_objectives_train_with_finite_losses(tmp_path, few_cars, overrides):
    preset = overrides.pop("preset", "cpu-v1")
    run = train(small_config(tmp_path, preset, kimg=0.128, **overrides), data=few_cars, show_progress=False)
    with open(run / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    import json
    import math

    losses = [float(row[name]) for row in rows if row["loss_d"] for name in ("loss_d", "loss_g")]
    assert len(losses) >= 4 and all(math.isfinite(value) for value in losses)
    assert json.loads((run / "summary.json").read_text())["stop_reason"] == "length reached"
    if overrides.get("loss") == "wgan-gp":
        assert rows[-1]["gp"] and float(rows[-1]["gp"]) >= 0
        assert int(rows[-1]["step"]) == 4  # 128 images, 2 D batches of 16 per step


def test_lr_decay_schedules_by_hand():
    from dcgan.training.schedule import lr_factor

    assert [lr_factor("linear", t) for t in (0, 0.25, 1)] == [1.0, 0.75, 0.0]
    assert [round(lr_factor("cosine", t), 6) for t in (0, 0.5, 1)] == [1.0, 0.5, 0.0]
    assert lr_factor("none", 0.9) == 1.0
    # Decay over the last half only: constant, then the whole schedule squeezed into the rest.
    assert [lr_factor("linear", t, start=0.5) for t in (0, 0.5, 0.75, 1)] == [1.0, 1.0, 0.5, 0.0]
    assert round(lr_factor("cosine", 0.8, start=0.6), 6) == 0.5


def test_lr_decay_start_is_validated():
    from dcgan.config import TrainConfig

    with pytest.raises(UserError, match="--lr-decay-start"):
        TrainConfig(lr_decay="linear", lr_decay_start=1.0).validate()
    with pytest.raises(UserError, match="needs a schedule"):
        TrainConfig(lr_decay="none", lr_decay_start=0.5).validate()
    assert TrainConfig(lr_decay="cosine", lr_decay_start=0.5).validate().lr_decay_start == 0.5


def test_lr_decay_reaches_the_csv(tmp_path, few_cars):
    run = train(small_config(tmp_path, kimg=0.32, lr_decay="linear", lr_decay_start=0), data=few_cars,
                show_progress=False)
    with open(run / "metrics.csv") as handle:
        rates = [float(row["lr_g"]) for row in csv.DictReader(handle)]
    assert rates == sorted(rates, reverse=True) and rates[-1] < 0.2 * rates[0]


def test_instance_noise_is_annealed_to_zero_and_reaches_D(tmp_path, few_cars):
    run = train(small_config(tmp_path, kimg=0.32, instance_noise=0.2), data=few_cars, show_progress=False)
    with open(run / "metrics.csv") as handle:
        noise = [float(row["instance_noise"]) for row in csv.DictReader(handle)]
    assert noise == sorted(noise, reverse=True) and noise[0] > 0.15 and noise[-1] < 0.03

    from dcgan.losses import GANLoss
    from dcgan.models import build_discriminator

    D = build_discriminator(base_channels=8, norm="none").eval()
    loss = GANLoss(generator=None, discriminator=D, loss="bce")
    images = torch.zeros(4, 3, 32, 32)
    def logits():
        return loss.discriminate([images], [None])[0][0]

    assert torch.equal(logits(), logits())  # no noise: the same logits
    loss.instance_noise = 0.5
    assert not torch.equal(logits(), logits())


def test_keep_snapshots_keeps_the_newest_n(tmp_path, few_cars):
    run = train(small_config(tmp_path, kimg=5.12, snapshot_kimg=1.024, keep_snapshots=2, g_channels=4,
                             d_channels=4), data=few_cars, show_progress=False)
    kept = sorted(p.name for p in run.glob("checkpoint-kimg*.pt"))
    assert kept == ["checkpoint-kimg000004.pt", "checkpoint-kimg000005.pt"]
    assert load_checkpoint(run / kept[0])["step"] == 4096 // 16
    assert load_checkpoint(run / kept[1])["step"] == load_checkpoint(run / "checkpoint-last.pt")["step"] == 320


def test_the_progress_line_shows_D_of_fakes_before_and_after_D_steps(tmp_path, few_cars, capsys):
    train(small_config(tmp_path, kimg=0.32), data=few_cars, show_progress=True)
    captured = capsys.readouterr()
    epoch_line = next(line for line in (captured.out + captured.err).splitlines() if line.startswith("epoch 1:"))
    assert " / " in epoch_line.split("D(G(z))")[1].split("img/s")[0]
