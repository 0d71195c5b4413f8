"""--on-collapse revert: a run whose tracked score has fallen apart goes back to its best weights
with a slower D, deterministically and resumably."""

import csv
import json

import pytest
import torch

from dcgan.checkpoint import load_checkpoint
from dcgan.config import resolve_config
from dcgan.data import ImageData
from dcgan.errors import UserError
from dcgan.training.collapse import CollapseGuard
from dcgan.training.loop import train
from dcgan.training.tracking import MetricTracker
from test_train import all_state_tensors, small_config

GUARD = dict(metric="fid-fast", metric_every="0.064kimg", metric_samples=16, on_collapse="revert",
             collapse_patience=3, collapse_margin=0.25, collapse_lr_factor=0.5, lr_decay="none")
# One score per evaluation (every 4 steps of 16 images): best 3.0 at step 8, then three scores above
# 3.0 x 1.25 = 3.75 in a row (steps 12, 16, 20): the guard goes back to step 8's weights at step 20.
SCORES = [5.0, 3.0, 4.0, 4.0, 4.0, 3.5, 3.5, 3.5]


@pytest.fixture(scope="module")
def few_cars(cars):
    return ImageData(cars.images[:160], cars.labels[:160], cars.class_names)


@pytest.fixture
def scripted_scores(monkeypatch):
    """Make the tracker report the given scores in turn, so that a run collapses on cue; everything
    else (the schedule, the best checkpoint, the loop) is the real thing."""
    def script(scores):
        remaining = iter(scores)

        def evaluate(self, generator, cur_nimg):
            self.schedule_next(cur_nimg)
            return {self.column: next(remaining)}

        monkeypatch.setattr(MetricTracker, "evaluate", evaluate)
    return script


def lr_d_by_step(run):
    with open(run / "metrics.csv") as handle:
        return {int(row["step"]): float(row["lr_d"]) for row in csv.DictReader(handle) if row["lr_d"]}


def test_the_guard_acts_after_patience_evaluations_worse_than_the_margin():
    summary = {}
    guard = CollapseGuard(summary, patience=2, margin=0.25, lr_factor=0.5)
    assert [guard.observe(value, best) for value, best in
            [(4.0, None), (2.0, 2.0), (2.4, 2.0), (2.6, 2.0), (2.4, 2.0), (2.6, 2.0), (float("nan"), 2.0)]] \
        == [False, False, False, False, False, False, True]  # 2.5 is the bar; 2.4 resets the count
    assert guard.record_revert(1.0, float("nan"), {"value": 2.0, "kimg": 0.5}).startswith("collapse guard:")
    assert summary["collapse_guard"]["lr_d_factor"] == 0.5 and summary["collapse_guard"]["worse_in_a_row"] == 0
    guard.record_revert(2.0, 9.0, {"value": 2.0, "kimg": 0.5})
    assert summary["collapse_guard"]["lr_d_factor"] == 0.25 and len(summary["collapse_guard"]["reverts"]) == 2


def test_a_collapsing_run_goes_back_to_its_best_weights_slows_D_and_resumes_exactly(
        tmp_path, few_cars, untrained_fast_extractor, scripted_scores, capsys):
    options = dict(fast_extractor=str(untrained_fast_extractor), **GUARD)
    scripted_scores(SCORES[:5])
    half = train(small_config(tmp_path / "b", kimg=0.32, **options), data=few_cars)
    best, last = load_checkpoint(half / "checkpoint-best.pt"), load_checkpoint(half / "checkpoint-last.pt")
    assert best["step"] == 8 and last["step"] == 20
    # The last checkpoint holds the best's networks, EMA and optimizers, and the run's own counters.
    for key in ("G", "D", "G_ema"):
        for name, tensor in best[key].items():
            assert torch.equal(tensor, last[key][name]), f"{key}.{name}"
    assert last["opt_D"]["state"][0]["step"] == best["opt_D"]["state"][0]["step"]
    summary = json.loads((half / "summary.json").read_text())
    assert summary["collapse_guard"]["reverts"] == [{"kimg": 0.32, "value": 4.0, "best_value": 3.0, "best_kimg": 0.128,
                                                    "lr_d_factor": 0.5}]
    assert "collapse guard: the tracked score (4.000) has been above 3.750" in capsys.readouterr().out

    # Going on from there, D trains at half its rate; the run stopped at the revert and resumed ends
    # with the same weights as one that went straight on.
    scripted_scores(SCORES)
    straight = train(small_config(tmp_path / "a", kimg=0.48, **options), data=few_cars, show_progress=False)
    rates = lr_d_by_step(straight)
    assert {rates[step] for step in rates if step <= 20} == {8e-4}
    assert {rates[step] for step in rates if step > 20} == {4e-4}
    scripted_scores(SCORES[5:])
    resumed = train(small_config(tmp_path / "b", kimg=0.48, **options), data=few_cars, run_dir=half,
                    resume_state=load_checkpoint(half / "checkpoint-last.pt"), show_progress=False)
    a, b = load_checkpoint(straight / "checkpoint-last.pt"), load_checkpoint(resumed / "checkpoint-last.pt")
    tensors_a, tensors_b = all_state_tensors(a), all_state_tensors(b)
    assert tensors_a.keys() == tensors_b.keys()
    for name in tensors_a:
        assert torch.equal(tensors_a[name], tensors_b[name]), name
    assert a["summary"]["collapse_guard"] == b["summary"]["collapse_guard"]
    assert lr_d_by_step(resumed) == rates


def test_without_the_guard_the_same_scores_change_nothing(tmp_path, few_cars, untrained_fast_extractor,
                                                          scripted_scores):
    scripted_scores(SCORES[:5])
    options = {**GUARD, "on_collapse": ""}
    run = train(small_config(tmp_path, kimg=0.32, fast_extractor=str(untrained_fast_extractor), **options),
                data=few_cars, show_progress=False)
    best, last = load_checkpoint(run / "checkpoint-best.pt"), load_checkpoint(run / "checkpoint-last.pt")
    assert not torch.equal(best["G"]["main.0.weight"], last["G"]["main.0.weight"])
    assert "collapse_guard" not in last["summary"]


@pytest.mark.parametrize("overrides, problem", [
    (dict(on_collapse="revert"), "add --metric"),
    (dict(on_collapse="stop", metric="fid-fast"), "--on-collapse must be revert"),
    (dict(on_collapse="revert", metric="fid-fast", collapse_patience=0), "--collapse-patience"),
    (dict(on_collapse="revert", metric="fid-fast", collapse_margin=0), "--collapse-margin"),
    (dict(on_collapse="revert", metric="fid-fast", collapse_lr_factor=1.5), "--collapse-lr-factor"),
])
def test_bad_guard_settings_are_refused(overrides, problem):
    with pytest.raises(UserError, match=problem):
        resolve_config("cpu-v1", overrides=overrides)


SCRIPTED_TORCHRUN = """
import json, os, sys
from dcgan.training.tracking import MetricTracker
remaining = iter(json.loads(os.environ["SCRIPTED_SCORES"]))

def evaluate(self, generator, cur_nimg):
    self.schedule_next(cur_nimg)
    return {self.column: next(remaining)}

MetricTracker.evaluate = evaluate
from dcgan.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_under_torchrun_every_process_goes_back_and_slows_D_alike(tmp_path, cifar_root, untrained_fast_extractor):
    import os
    import subprocess
    import sys

    script = tmp_path / "scripted.py"
    script.write_text(SCRIPTED_TORCHRUN)
    # Two processes of 16 images: an evaluation every 2 steps, the revert at step 10 of 15.
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), "train",
         "--dataset", "folder", "--data-root", str(cifar_root / "train"), "--classes", "automobile",
         "--g-channels", "8", "--d-channels", "8", "--batch-size", "16", "--lr-decay", "none", "--kimg", "0.48",
         "--metric", "fid-fast", "--metric-every", "0.064kimg", "--metric-samples", "16",
         "--fast-extractor", str(untrained_fast_extractor), "--on-collapse", "revert",
         "--outdir", str(tmp_path / "runs"),
         "--device", "cpu", "--threads", "1", "--log-every", "1"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "SCRIPTED_SCORES": json.dumps(SCORES)})
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert [revert["kimg"] for revert in summary["collapse_guard"]["reverts"]] == [0.32]
    assert summary["processes"] == {"count": 2, "weights_identical": True}
    rates = lr_d_by_step(run)
    assert {rates[step] for step in rates if step <= 10} == {8e-4}
    assert {rates[step] for step in rates if step > 10} == {4e-4}
