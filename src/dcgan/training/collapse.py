"""The collapse guard, `--on-collapse revert`: a run that has fallen apart goes back to its best
checkpoint with a slower discriminator, instead of training on from the wreck.

A conditional discriminator that wins (each class becomes one image whatever the noise) shows in
the tracked FID as a climb that does not come back. When the tracked FID has been worse than the
best so far by more than `--collapse-margin` (a share of the best) at `--collapse-patience`
evaluations in a row, the loop loads `checkpoint-best.pt`'s networks, EMA generator and
optimizers, multiplies D's learning rate by `--collapse-lr-factor` for the rest of the run (on top
of any `--lr-decay`), and goes on: the run's counters, clock and place in the data go forward,
only the weights go back. The guard's state (evaluations worse in a row, D's rate factor, each
revert and why) lives in the run's summary, so it is saved with every checkpoint, resumes exactly
and ends up in summary.json.
"""

from __future__ import annotations

import math

SUMMARY_KEY = "collapse_guard"


class CollapseGuard:
    """Counts evaluations worse than the best, decides when to revert, and records reverts in
    `summary` (the run's summary dict, saved with each checkpoint)."""

    def __init__(self, summary: dict, patience: int, margin: float, lr_factor: float):
        self.patience, self.margin, self.lr_factor = patience, margin, lr_factor
        self.state = summary.setdefault(SUMMARY_KEY, {"worse_in_a_row": 0, "lr_d_factor": 1.0, "reverts": []})

    @classmethod
    def from_config(cls, config, summary: dict) -> CollapseGuard | None:
        if config.on_collapse != "revert":
            return None
        return cls(summary, config.collapse_patience, config.collapse_margin, config.collapse_lr_factor)

    def bar(self, best: float) -> float:
        """The tracked FID above which an evaluation counts as worse."""
        return best * (1.0 + self.margin)

    def observe(self, value: float, best: float | None) -> bool:
        """After an evaluation that scored `value` (the best so far is `best`, which may be this
        one): whether to revert now."""
        if best is None:
            return False
        worse = not math.isfinite(value) or value > self.bar(best)
        self.state["worse_in_a_row"] = self.state["worse_in_a_row"] + 1 if worse else 0
        return self.state["worse_in_a_row"] >= self.patience

    def record_revert(self, kimg: float, value: float, best: dict) -> str:
        """Note a revert (on every process: D's rate factor must agree); returns the line to print."""
        self.state["worse_in_a_row"] = 0
        self.state["lr_d_factor"] *= self.lr_factor
        self.state["reverts"].append({"kimg": round(kimg, 3), "value": value, "best_value": best["value"],
                                      "best_kimg": best["kimg"], "lr_d_factor": self.state["lr_d_factor"]})
        return (f"collapse guard: the tracked score ({value:.3f}) has been above {self.bar(best['value']):.3f} "
                f"(the best, {best['value']:.3f} at {best['kimg']:g} kimg, + {self.margin:.0%}) for "
                f"{self.patience} evaluations in a row; back to checkpoint-best.pt's weights at {kimg:g} kimg, "
                f"D's learning rate now x{self.state['lr_d_factor']:g}")


def lr_d_factor(summary: dict) -> float:
    """The factor the guard has put on D's learning rate so far (1 without reverts)."""
    return summary.get(SUMMARY_KEY, {}).get("lr_d_factor", 1.0)
