"""Learning-rate schedules over a run's length, and `--lr-decay auto` (the default preset's).

A run's length is its budget: `--kimg`, `--epochs` or `--minutes`, whichever ends it first; the
fraction done is the larger of the image and clock fractions. `linear` and `cosine` take both
learning rates from 1x to 0 over the run, or only over its part after `--lr-decay-start`.

`auto` is the linear tail decay for long runs only. At `--lr-decay-start` (0.5 in the preset) it
estimates the run's whole length in images, images so far / fraction done (the `--kimg` budget
itself, or what the `--minutes` budget will give at the speed so far), and decays from there if that
is at least `--lr-decay-min-kimg` (AUTO_DECAY_MIN_KIMG in cpu-v1), else keeps the rates constant.
The decision is taken once and kept in the run's summary, so a resumed run follows it. Why
(docs/recipe.md): on all of CIFAR-10 the constant rates stop improving after ~900 kimg and one of
two seeds collapsed near 2,000 kimg, where the tail decay kept improving (0.77x classic's held-out
FID-fast, two seeds) and gained 11% at ~700 kimg; at 400 kimg on the cars the same decay cost 1.8x
(two seeds), the EMA generator already giving what a falling rate gives.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

AUTO_DECAY_MIN_KIMG = 600.0
MIN_SNAPSHOT_NIMG = 20_000


class RunClock:
    """Training seconds of a run: those of the processes before a resume plus this one's, on the
    monotonic clock (a suspended laptop or an NTP step neither ends a run nor jumps its schedule)."""

    def __init__(self, seconds_before: float = 0.0):
        self.seconds_before = seconds_before
        self.started = time.monotonic()

    def seconds(self) -> float:
        return self.seconds_before + time.monotonic() - self.started


@dataclass
class Budget:
    """When a run ends (`--kimg`, `--epochs`, `--minutes`: the first reached) and how often it snapshots."""

    total_nimg: float  # math.inf without --kimg or --epochs
    deadline: float  # seconds; math.inf without --minutes
    snapshot_nimg: int

    @classmethod
    def from_config(cls, config, dataset_size: int, epoch_nimg: int) -> Budget:
        """The budget of `config` (a TrainConfig). `epoch_nimg`: images in one epoch of all
        processes' batches. Without --snapshot-kimg, snapshots come every few whole epochs, at least
        MIN_SNAPSHOT_NIMG images apart, so tiny datasets do not snapshot constantly."""
        total_nimg = min(config.kimg * 1000 if config.kimg else math.inf,
                         config.epochs * dataset_size if config.epochs else math.inf)
        if config.snapshot_kimg:
            snapshot_nimg = config.snapshot_kimg * 1000
        else:
            snapshot_nimg = epoch_nimg * math.ceil(MIN_SNAPSHOT_NIMG / epoch_nimg)
        return cls(total_nimg, config.minutes * 60 if config.minutes else math.inf, snapshot_nimg)

    def fraction(self, cur_nimg: int, seconds: float) -> float:
        return run_fraction(cur_nimg, self.total_nimg, seconds, self.deadline)

    def next_snapshot(self, cur_nimg: int) -> int:
        return (cur_nimg // self.snapshot_nimg + 1) * self.snapshot_nimg


@dataclass
class Rates:
    """The learning-rate multiplier and instance-noise level at one step, and `--lr-decay auto`'s
    decision if it has been taken (`new`: at this step)."""

    lr_factor: float
    instance_noise: float
    decision: dict | None = None
    new: bool = False


def scheduled_rates(config, done: float, cur_nimg: int, decision: dict | None) -> Rates:
    """The rates of `config` (a TrainConfig) after a fraction `done` of the run; `decision` is
    `--lr-decay auto`'s earlier decision, if one was taken."""
    schedule, start, new = config.lr_decay, config.lr_decay_start, False
    if schedule == "auto":  # decided once, at the decay's start, and kept in the run's summary
        if decision is None and done >= start:
            decision, new = auto_decision(cur_nimg, done, config.lr_decay_min_kimg), True
        schedule = decision["schedule"] if decision else "none"
    return Rates(lr_factor(schedule, done, start), config.instance_noise * (1.0 - done), decision, new)


def run_fraction(cur_nimg: int, total_nimg: float, seconds: float, deadline: float) -> float:
    """How much of the budget is spent, in [0, 1]: the larger of images / --kimg (or --epochs) and
    seconds / --minutes; 0 for a run without a budget."""
    return min(1.0, max(cur_nimg / total_nimg, seconds / deadline))


def auto_decision(cur_nimg: int, done: float, min_kimg: float | None = None) -> dict:
    """`--lr-decay auto`, once the fraction `done` reaches the decay's start: the schedule for the
    rest of the run ('linear' or 'none') and the expected length in kimg it was chosen by."""
    min_kimg = AUTO_DECAY_MIN_KIMG if min_kimg is None else min_kimg
    expected_kimg = cur_nimg / done / 1000 if done > 0 else math.inf
    return {"schedule": "linear" if expected_kimg >= min_kimg else "none",
            "expected_kimg": round(expected_kimg, 3), "decided_at_kimg": round(cur_nimg / 1000, 3),
            "min_kimg": min_kimg}


def describe_decision(decision: dict) -> str:
    """One line for the log: what `--lr-decay auto` chose and why."""
    if decision["schedule"] == "linear":
        return (f"lr decay (auto): a long run (~{decision['expected_kimg']:,.0f} kimg >= {decision['min_kimg']:g}): "
                f"both learning rates now fall linearly to 0 by the end of the budget")
    return (f"lr decay (auto): a short run (~{decision['expected_kimg']:,.0f} kimg < {decision['min_kimg']:g}): "
            f"the learning rates stay constant")


def lr_factor(schedule: str, done: float, start: float = 0.0) -> float:
    """The learning-rate multiplier after a fraction `done` of the run: 1 until `start`, then 1 -> 0
    linearly or on a cosine over the rest of the run."""
    done = max(0.0, done - start) / (1.0 - start)
    if schedule == "linear":
        return 1.0 - done
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * done))
    return 1.0
