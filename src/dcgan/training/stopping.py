"""When a run stops, every process stops at the same step with a checkpoint that resumes exactly.

SIGTERM (what a scheduler or a closing laptop sends) and the first Ctrl-C only set a flag: the loop
finishes the step it is in, writes `checkpoint-last.pt` and ends, so no work since the last
snapshot is lost and the checkpoint is at a step boundary. A second Ctrl-C stops at once.

Under torchrun each process has its own clock and its own signals, so `stop_vote` makes one decision
for all each step: rank 0 decides the time budget, divergence (it alone reads the losses) and when
a tracked metric is due (every process then makes a share of the samples), any rank's signal stops
them all; rank 0's clock also keys every process's learning-rate schedule. One all-reduce of five
numbers per step.
"""

from __future__ import annotations

import enum
import signal
import threading
from typing import NamedTuple

import torch
import torch.distributed as dist


class Stop(enum.Enum):
    """Why a run ended (summary.json's `stop_reason` is its words)."""

    LENGTH = "length reached"
    TIME = "time budget reached"
    SIGNAL = "stopped by a signal"
    INTERRUPTED = "interrupted"

    def describe(self, *, minutes: float = 0.0, signal_name: str | None = None) -> str:
        if self is Stop.TIME:
            return f"time budget of {minutes:g} minutes reached"
        if self is Stop.SIGNAL:
            return f"stopped by {signal_name or 'a signal to another process'}"
        return self.value


class StopSignals:
    """A context that turns SIGTERM and the first SIGINT into a request (`self.received`)."""

    def __init__(self):
        self.received: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: stop now
        self.received = signal.Signals(signum).name

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # handlers only install there
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


class StopDecision(NamedTuple):
    """What all processes agreed on after a step."""

    out_of_time: bool  # the --minutes budget is spent
    diverged: bool  # a non-finite loss
    signalled: bool  # SIGTERM or a first Ctrl-C reached some process
    evaluate: bool  # a tracked metric is due
    seconds: float  # rank 0's training seconds, which key every process's schedule


def stop_vote(out_of_time: bool, diverged: bool, signalled: bool, evaluate: bool = False, *, seconds: float = 0.0,
              distributed: bool, is_main: bool, device: torch.device) -> StopDecision:
    """One decision for all processes: rank 0's clock, losses and metric schedule, anyone's signal."""
    if not distributed:
        return StopDecision(out_of_time, diverged, signalled, evaluate, seconds)
    votes = torch.tensor([float(out_of_time and is_main), float(diverged and is_main), float(signalled),
                          float(evaluate and is_main), seconds if is_main else 0.0], dtype=torch.float64,
                         device=device)
    dist.all_reduce(votes, op=dist.ReduceOp.MAX)
    return StopDecision(bool(votes[0]), bool(votes[1]), bool(votes[2]), bool(votes[3]), float(votes[4]))


def gather_rng_states(state: torch.Tensor, device: torch.device, distributed: bool) -> list[torch.Tensor]:
    """Every process's generator `state` (each rank draws its own noise), gathered on all ranks."""
    if not distributed:
        return [state]
    on_device = state.to(device)
    gathered = [torch.empty_like(on_device) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, on_device)
    return [s.cpu() for s in gathered]
