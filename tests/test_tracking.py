"""Metrics during training: scores in the CSV, the best checkpoint, and no effect on training itself."""

import csv
import json

import pytest
import torch

from dcgan.checkpoint import load_checkpoint, load_generator
from dcgan.data import ImageData
from dcgan.metrics.evaluate import generated_features
from dcgan.metrics.fast import FastExtractor
from dcgan.metrics.frechet import frechet_distance
from dcgan.metrics.reference import RealSource, reference_features
from dcgan.training.loop import train
from test_train import small_config


@pytest.fixture(scope="module")
def few_cars(cars):
    return ImageData(cars.images[:160], cars.labels[:160], cars.class_names)


def metric_rows(run, column):
    with open(run / "metrics.csv") as handle:
        return [(int(row["step"]), float(row[column])) for row in csv.DictReader(handle) if row[column]]


def test_best_checkpoint_is_the_step_with_the_best_score(tmp_path, few_cars, fast_extractor_file, cifar_root):
    config = small_config(tmp_path, kimg=0.64, metric="fid-fast", metric_every="0.064kimg", metric_samples=200,
                          fast_extractor=str(fast_extractor_file), data_root=str(cifar_root / "train"))
    run = train(config, data=few_cars, show_progress=False)
    rows = metric_rows(run, "fid_fast")
    assert [step for step, _ in rows] == list(range(4, 41, 4))  # every 64 images = 4 steps of 16
    best_step, best_value = min(rows, key=lambda row: row[1])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best"]["step"] == best_step and summary["best"]["value"] == pytest.approx(best_value, rel=1e-5)
    assert summary["best"]["metric"] == "fid_fast" and summary["best"]["feature_extractor"] == "dcgan-fast-v1"
    assert 0 < summary["metric_fraction"] < 1 and summary["metric_protocol"]["samples"] == 200
    assert load_checkpoint(run / "checkpoint-best.pt")["step"] == best_step
    assert load_checkpoint(run / "checkpoint-last.pt")["step"] == 40
    assert (run / "metric.png").is_file()

    # The best generator, scored again from its file, gives the score training recorded for it.
    generator, _ = load_generator(run / "generator-best.safetensors")
    extractor = FastExtractor(fast_extractor_file)
    reference = reference_features(extractor, RealSource("folder", str(cifar_root / "train"), "train",
                                                         ["automobile"]), few_cars, progress=False)
    again = generated_features(generator, extractor, 200, progress=False)
    assert frechet_distance(again.mu, again.sigma, reference.mu, reference.sigma) == pytest.approx(best_value, rel=1e-5)


def test_tracking_a_metric_does_not_change_the_training_run(tmp_path, few_cars, fast_extractor_file):
    plain = train(small_config(tmp_path / "a", kimg=0.32), data=few_cars, show_progress=False)
    tracked = train(small_config(tmp_path / "b", kimg=0.32, metric="fid-fast", metric_every="0.1kimg",
                                 metric_samples=100, fast_extractor=str(fast_extractor_file)),
                    data=few_cars, show_progress=False)
    a, b = load_checkpoint(plain / "checkpoint-last.pt"), load_checkpoint(tracked / "checkpoint-last.pt")
    for key in ("G", "D", "G_ema"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name}"
    assert torch.equal(a["rng_cpu"], b["rng_cpu"])
    assert len(metric_rows(tracked, "fid_fast")) == 4  # at 0.1, 0.2, 0.3 kimg and at the end


def test_resume_continues_the_schedule_and_keeps_the_best(tmp_path, few_cars, fast_extractor_file):
    config = dict(metric="fid-fast", metric_every="0.064kimg", metric_samples=100,
                  fast_extractor=str(fast_extractor_file))
    half = train(small_config(tmp_path, kimg=0.32, **config), data=few_cars, show_progress=False)
    state = load_checkpoint(half / "checkpoint-last.pt")
    run = train(small_config(tmp_path, kimg=0.64, **config), data=few_cars, run_dir=half, resume_state=state,
                show_progress=False)
    rows = metric_rows(run, "fid_fast")
    assert [step for step, _ in rows] == list(range(4, 41, 4))
    best_step, _ = min(rows, key=lambda row: row[1])
    assert json.loads((run / "summary.json").read_text())["best"]["step"] == best_step
    assert load_checkpoint(run / "checkpoint-best.pt")["step"] == best_step


def test_inception_fid_tracks_the_same_way(tmp_path, cars, stand_in_inception_weights):
    tiny = ImageData(cars.images[:32], cars.labels[:32], cars.class_names)
    run = train(small_config(tmp_path, kimg=0.032, metric="fid", metric_samples=8,
                             inception_weights=str(stand_in_inception_weights)), data=tiny, show_progress=False)
    rows = metric_rows(run, "fid")
    assert len(rows) == 1 and rows[0][0] == 2  # evaluated once, at the end
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best"]["metric"] == "fid" and summary["best"]["feature_extractor"] == "inception-v3-tf-2015-12-05"
    assert (run / "generator-best.safetensors").is_file()


def test_missing_inception_weights_fail_before_the_run_folder_is_made(tmp_path, few_cars, monkeypatch):
    from dcgan.errors import UserError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("DCGAN_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    monkeypatch.setattr("dcgan.metrics.inception_package.package_weights", lambda: None)  # as if not installed
    with pytest.raises(UserError, match="pt_inception-2015-12-05-6726825d.pth"):
        train(small_config(tmp_path / "runs", kimg=0.032, metric="fid"), data=few_cars, show_progress=False)
    assert not (tmp_path / "runs").exists()


def test_is_fast_and_precision_recall_are_tracked_beside_fid_fast(tmp_path, few_cars, fast_extractor_file):
    run = train(small_config(tmp_path, kimg=0.32, metric="fid-fast,is-fast,pr-fast,kid-fast", metric_every="0.16kimg",
                             metric_samples=100, fast_extractor=str(fast_extractor_file)),
                data=few_cars, show_progress=False)
    fids, scores = metric_rows(run, "fid_fast"), metric_rows(run, "is_fast")
    assert [step for step, _ in scores] == [step for step, _ in fids] == [10, 20]
    # The logged IS-fast is the Inception Score of the tracker's images on the extractor's logits.
    from dcgan.metrics.inception_score import inception_score

    generator, _ = load_generator(run / "generator.safetensors")
    logits = generated_features(generator, FastExtractor(fast_extractor_file), 100, progress=False).logits
    assert inception_score(logits, splits=10, seed=2020)[0] == pytest.approx(scores[-1][1], rel=1e-4)
    precision, recall = metric_rows(run, "precision_fast"), metric_rows(run, "recall_fast")
    assert [step for step, _ in precision] == [step for step, _ in recall] == [10, 20]
    assert all(0 <= value <= 1 for _, value in precision + recall)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best"]["metric"] == "fid_fast"
    assert summary["metric_protocol"]["also"] == ["is_fast", "precision_fast", "recall_fast", "kid_fast"]
    kids = metric_rows(run, "kid_fast")  # the names of evaluate --metrics, tracked as they train
    assert [step for step, _ in kids] == [10, 20] and all(value > -0.1 for _, value in kids)


@pytest.mark.parametrize("metric, problem", [("fid-fast,is", "uses another extractor"), ("is-fast", "exactly one of"),
                                              ("fid,fid-fast", "exactly one of"), ("psnr", "unknown: psnr")])
def test_bad_metric_lists_are_refused(metric, problem):
    from dcgan.config import resolve_config
    from dcgan.errors import UserError

    with pytest.raises(UserError, match=problem):
        resolve_config("cpu-v1", overrides={"metric": metric})


@pytest.mark.slow
def test_torchrun_processes_share_each_evaluation_and_score_as_one_process(tmp_path, cifar_root, fast_extractor_file):
    from test_train import torchrun

    result = torchrun("--dataset", "folder", "--data-root", cifar_root / "train", "--classes", "automobile",
                      "--g-channels", "8", "--d-channels", "8", "--batch-size", "16", "--kimg", "0.32",
                      "--metric", "fid-fast", "--metric-every", "0.16kimg", "--metric-samples", "101",
                      "--fast-extractor", fast_extractor_file, "--outdir", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = tmp_path.iterdir()
    rows = metric_rows(run, "fid_fast")
    assert [step for step, _ in rows] == [5, 10]  # 2 processes x 16 images per step
    # The last score, of 101 seeds split 51/50 between the ranks, is what one process gives the final generator.
    generator, _ = load_generator(run / "generator.safetensors")
    extractor = FastExtractor(fast_extractor_file)
    source = RealSource("folder", str(cifar_root / "train"), "train", ["automobile"])
    reference = reference_features(extractor, source, source.load(32, 3), progress=False)
    again = generated_features(generator, extractor, 101, progress=False)
    again_fid = frechet_distance(again.mu, again.sigma, reference.mu, reference.sigma)
    assert again_fid == pytest.approx(rows[-1][1], rel=1e-4)


def test_resume_with_another_score_starts_a_new_best(tmp_path, few_cars, fast_extractor_file, capsys):
    config = dict(metric="fid-fast", metric_every="0.064kimg", fast_extractor=str(fast_extractor_file))
    half = train(small_config(tmp_path, kimg=0.32, metric_samples=100, **config), data=few_cars, show_progress=False)
    old_best = json.loads((half / "summary.json").read_text())["best"]
    state = load_checkpoint(half / "checkpoint-last.pt")
    capsys.readouterr()
    run = train(small_config(tmp_path, kimg=0.64, metric_samples=60, **config), data=few_cars, run_dir=half,
                resume_state=state, show_progress=False)
    assert "the best starts again" in capsys.readouterr().out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["previous_best"] == old_best and summary["best"]["samples"] == 60
    new_rows = [(step, value) for step, value in metric_rows(run, "fid_fast") if step > 20]
    best_step, best_value = min(new_rows, key=lambda row: row[1])
    assert summary["best"]["step"] == best_step and summary["best"]["value"] == pytest.approx(best_value, rel=1e-5)
    assert load_checkpoint(run / "checkpoint-best.pt")["step"] == best_step


@pytest.mark.slow
def test_torchrun_ranks_wait_out_a_long_metric_set_up_without_a_collective_timeout(tmp_path, cifar_root,
                                                                                   stand_in_inception_weights):
    # Rank 0 computes Inception statistics of the training images (about 200 x 0.25 s at one thread)
    # while the others wait; with collectives timing out after 20 s (the rest of the run, snapshots
    # and evaluations included, stays well within it), they must wait elsewhere.
    import shutil

    from test_train import torchrun

    folder = tmp_path / "data" / "cars"
    folder.mkdir(parents=True)
    for path in sorted((cifar_root / "train" / "automobile").iterdir())[:200]:
        shutil.copy(path, folder / path.name)
    result = torchrun("--dataset", "folder", "--data-root", tmp_path / "data", "--g-channels", "8",
                      "--d-channels", "8", "--batch-size", "16", "--kimg", "0.064", "--metric", "fid",
                      "--inception-weights", stand_in_inception_weights, "--metric-samples", "8",
                      "--outdir", tmp_path / "runs",
                      env={"DCGAN_CACHE": str(tmp_path / "cache"), "DCGAN_COLLECTIVE_TIMEOUT_S": "20"})
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = (tmp_path / "runs").iterdir()
    assert metric_rows(run, "fid")  # the final evaluation, scored by both ranks
