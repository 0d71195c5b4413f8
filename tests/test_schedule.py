"""`--lr-decay auto`: the tail decay for long runs only, decided once and kept across a resume."""

import csv
import json
import math

import pytest

from dcgan.checkpoint import load_checkpoint
from dcgan.config import resolve_config
from dcgan.errors import UserError
from dcgan.training import schedule
from dcgan.training.loop import train
from dcgan.training.schedule import auto_decision, lr_factor, run_fraction
from test_train import few_cars, small_config  # noqa: F401  (a fixture and a helper shared with test_train)


def test_run_fraction_by_hand():
    assert run_fraction(500, 1000, 0.0, math.inf) == 0.5  # --kimg 1
    assert run_fraction(100, math.inf, 30.0, 60.0) == 0.5  # --minutes 1, half the clock gone
    assert run_fraction(900, 1000, 30.0, 60.0) == 0.9  # both budgets: the nearer end counts
    assert run_fraction(1200, 1000, 0.0, math.inf) == 1.0
    assert run_fraction(10_000, math.inf, 1e6, math.inf) == 0.0  # no budget: never decays


def test_auto_decision_by_hand():
    # --kimg 2000: half-way at 1,000 kimg, the expected length is the budget itself.
    long_run = auto_decision(1_000_000, 0.5, min_kimg=600)
    assert long_run["schedule"] == "linear" and long_run["expected_kimg"] == 2000.0
    # --kimg 400 (the 15-minute cars' length): constant rates.
    assert auto_decision(200_000, 0.5, min_kimg=600)["schedule"] == "none"
    # --minutes: 320 kimg seen in half the clock -> 640 kimg expected; 280 -> 560.
    assert auto_decision(320_000, 0.5, min_kimg=600) == {
        "schedule": "linear", "expected_kimg": 640.0, "decided_at_kimg": 320.0, "min_kimg": 600}
    assert auto_decision(280_000, 0.5, min_kimg=600)["schedule"] == "none"
    assert auto_decision(300_000, 0.5, min_kimg=600)["schedule"] == "linear"  # the boundary is long
    assert auto_decision(200_000, 0.5)["min_kimg"] == schedule.AUTO_DECAY_MIN_KIMG == 600


def test_auto_is_the_default_presets_decay_and_needs_a_start():
    default, classic = resolve_config("cpu-v1"), resolve_config("classic")
    assert (default.lr_decay, default.lr_decay_start) == ("auto", 0.5)
    assert (classic.lr_decay, classic.lr_decay_start) == ("none", 0.0)
    # Turning the preset's decay off takes its start with it (no "--lr-decay-start needs a schedule").
    assert resolve_config("cpu-v1", overrides={"lr_decay": "none"}).lr_decay_start == 0.0
    with pytest.raises(UserError, match="needs a schedule"):
        resolve_config("cpu-v1", overrides={"lr_decay": "none", "lr_decay_start": 0.5})
    with pytest.raises(UserError, match="auto decides at --lr-decay-start"):
        resolve_config("cpu-v1", overrides={"lr_decay_start": 0.0})


def test_the_auto_decay_threshold_is_a_setting():
    """--lr-decay-min-kimg moves the line between a long run and a short one; cpu-v1's is 600 kimg."""
    from dcgan.training.schedule import scheduled_rates

    assert resolve_config("cpu-v1").lr_decay_min_kimg == schedule.AUTO_DECAY_MIN_KIMG
    fifteen_fast_minutes = dict(done=0.5, cur_nimg=360_000, decision=None)  # ~720 kimg expected
    assert scheduled_rates(resolve_config("cpu-v1"), **fifteen_fast_minutes).decision["schedule"] == "linear"
    later = resolve_config("cpu-v1", overrides={"lr_decay_min_kimg": 1200})
    rates = scheduled_rates(later, **fifteen_fast_minutes)
    assert rates.decision == {"schedule": "none", "expected_kimg": 720.0, "decided_at_kimg": 360.0, "min_kimg": 1200}
    assert rates.lr_factor == 1.0 and scheduled_rates(later, 0.9, 648_000, rates.decision).lr_factor == 1.0
    with pytest.raises(UserError, match="--lr-decay-min-kimg must be between 0 and 1e9"):
        resolve_config("cpu-v1", overrides={"lr_decay_min_kimg": -1})


def learning_rates(run):
    with open(run / "metrics.csv") as handle:
        return [float(row["lr_g"]) for row in csv.DictReader(handle) if row["lr_g"]]


def test_auto_keeps_a_short_run_constant(tmp_path, few_cars):  # noqa: F811
    run = train(small_config(tmp_path, kimg=0.32), data=few_cars, show_progress=False)
    rates = learning_rates(run)
    assert len(rates) >= 8 and set(rates) == {4e-4}
    decision = json.loads((run / "summary.json").read_text())["lr_decay_auto"]
    assert decision["schedule"] == "none" and decision["expected_kimg"] == pytest.approx(0.32, abs=0.02)


def test_auto_decays_a_long_run_and_a_resume_keeps_the_decision(tmp_path, few_cars):  # noqa: F811
    run = train(small_config(tmp_path, kimg=0.32, lr_decay_min_kimg=0.1),  # 0.32 kimg counts as long here
                data=few_cars, show_progress=False)
    rates = learning_rates(run)  # 20 steps of 16 images, a row every 2 steps
    half = len(rates) // 2
    assert set(rates[:half - 1]) == {4e-4}  # constant over the first half of the budget
    assert rates[half:] == sorted(rates[half:], reverse=True) and rates[-1] < 0.15 * 4e-4
    assert rates[-1] == pytest.approx(4e-4 * lr_factor("linear", 19 / 20, 0.5))  # the last row's step
    state = load_checkpoint(run / "checkpoint-last.pt")
    assert state["summary"]["lr_decay_auto"]["schedule"] == "linear"

    # Extended to twice the budget with the threshold back at 600 kimg: the run keeps its decision
    # (a linear decay over the second half of the new length), it does not decide again.
    resumed = train(small_config(tmp_path, kimg=0.64, lr_decay_min_kimg=600), data=few_cars, run_dir=run,
                    resume_state=state, show_progress=False)
    later = learning_rates(resumed)[len(rates):]
    assert later and later[-1] < 0.15 * 4e-4
    assert json.loads((resumed / "summary.json").read_text())["lr_decay_auto"]["schedule"] == "linear"
