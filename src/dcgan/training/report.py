"""One `report(name, value)` call per statistic; `flush` writes one row to every sink.

Sinks: `metrics.csv` in the run folder (always), TensorBoard and Weights & Biases (optional).
Values may be tensors: they are summed on their device and read back only at `flush`, so
reporting costs no device synchronization per step.
"""

from __future__ import annotations

import csv
import math
import os
from collections import defaultdict
from pathlib import Path

import torch

from dcgan.errors import UserError
from dcgan.files import atomic_write

COLUMNS = ["step", "kimg", "epoch", "seconds", "loss_d", "loss_g", "d_real", "d_fake", "r1", "gp",
           "grad_norm_g", "grad_norm_d", "lr_g", "lr_d", "ema_beta", "images_per_s", "fid", "fid_fast",
           "d_fake_g", "r2", "lecam", "augment_p",  # d_fake_g: D(G(z)) after D's update, in G's step
           "ac_d", "ac_g", "ac_accuracy", "instance_noise", "is", "is_fast",  # ac_*: AC-GAN class losses
           "precision", "recall", "precision_fast", "recall_fast"]
METRIC_COLUMNS = {"fid": "FID (Inception)", "fid_fast": "FID-fast (fast features, not Inception FID)"}
SCORE_COLUMNS = {"is": "IS (Inception)", "is_fast": "IS-fast (fast features, not Inception IS)",  # higher is better
                 "precision": "precision (Inception)", "recall": "recall (Inception)",
                 "precision_fast": "precision-fast", "recall_fast": "recall-fast"}


class RunLog:
    def __init__(self, run_dir: Path | None, sinks: list[str], config: dict, resume_step: int | None = None):
        self.run_dir = run_dir
        self.sums: dict[str, torch.Tensor | float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        self.tensorboard = self.wandb = None
        if run_dir is None:  # Not the main process: collect nothing, write nothing.
            return
        self.csv_path = run_dir / "metrics.csv"
        if resume_step is not None and self.csv_path.exists():
            _truncate_csv(self.csv_path, resume_step)
        new_file = not self.csv_path.exists()
        self.csv_file = open(self.csv_path, "a", newline="")
        self.writer = csv.DictWriter(self.csv_file, fieldnames=COLUMNS, extrasaction="ignore")
        if new_file:
            self.writer.writeheader()
        if "tensorboard" in sinks:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise UserError("--log tensorboard needs TensorBoard: pip install tensorboard") from None
            self.tensorboard = SummaryWriter(str(run_dir / "tensorboard"))
        if "wandb" in sinks:
            try:
                import wandb
            except ImportError:
                raise UserError("--log wandb needs Weights & Biases: pip install wandb") from None
            if not os.environ.get("WANDB_API_KEY") and "WANDB_MODE" not in os.environ:
                os.environ["WANDB_MODE"] = "offline"  # No login: log locally, `wandb sync` later.
            self.wandb = wandb.init(project="dcgan", name=run_dir.name, dir=str(run_dir), config=config,
                                    resume="allow", id=run_dir.name.replace("/", "-"))

    def report(self, name: str, value) -> None:
        if self.run_dir is None:
            return
        self.sums[name] = self.sums[name] + (value.detach().float() if torch.is_tensor(value) else float(value))
        self.counts[name] += 1

    def flush(self, **fields) -> dict:
        """Average what was reported since the last flush, add `fields`, write one row everywhere."""
        if self.run_dir is None:
            return {}
        row = {name: float(total) / self.counts[name] for name, total in self.sums.items()}
        row.update(fields)
        self.sums.clear()
        self.counts.clear()
        return self.write_row(**row)

    def write_row(self, **row) -> dict:
        """Write `row` as it is (a metric score, say), leaving what was reported for the next flush."""
        if self.run_dir is None:
            return {}
        try:
            self.writer.writerow({k: _format(v) for k, v in row.items()})
            self.csv_file.flush()
        except OSError as error:
            raise UserError(f"could not write {self.csv_path} ({error.strerror or error})") from None
        step = int(row["step"])
        if self.tensorboard is not None:
            for name, value in row.items():
                if name != "step":
                    self.tensorboard.add_scalar(name, value, step)
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in row.items() if k != "step"}, step=step)
        return row

    def close(self) -> None:
        if self.run_dir is None:
            return
        self.csv_file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb is not None:
            self.wandb.finish()


def _format(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def _truncate_csv(path: Path, last_step: int) -> None:
    """Drop rows logged after the checkpoint we resume from, and a row torn by a kill mid-write,
    so the CSV tells one history; the new file replaces the old atomically."""
    with open(path, newline="", errors="replace") as handle:
        rows = [row for row in csv.DictReader(handle) if _complete(row) and int(row["step"]) <= last_step]

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(path, write)


def _complete(row: dict) -> bool:
    """A whole row: every column of the file's header present (a torn last line lacks some) and an
    integer step. A file written by an older version, with fewer columns, keeps its rows."""
    if None in row or any(value is None for value in row.values()):
        return False
    return (row.get("step") or "").isdigit()


def read_csv(path: Path) -> dict[str, list[float]]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns: dict[str, list[float]] = {}
    for name in COLUMNS:
        values = [float(row[name]) if row.get(name) not in (None, "") else math.nan for row in rows]
        if any(not math.isnan(v) for v in values):
            columns[name] = values
    return columns


def plot_metrics(csv_path: Path, out_dir: Path, window: int = 25) -> None:
    """losses.png (loss curves and D outputs) and loss_variance.png (rolling variance)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    columns = read_csv(csv_path)
    if "kimg" not in columns or len(columns["kimg"]) < 2:
        return
    kimg = np.array(columns["kimg"])

    def series(name: str) -> tuple[np.ndarray, np.ndarray]:
        """(kimg, values) of the rows that have `name`: metric rows have no losses and vice versa."""
        values = np.array(columns.get(name, [math.nan] * len(kimg)))
        present = ~np.isnan(values)
        return kimg[present], values[present]

    fig, (ax_loss, ax_out) = plt.subplots(1, 2, figsize=(11, 4))
    for name, label in (("loss_d", "L_D"), ("loss_g", "L_G")):
        if name in columns:
            ax_loss.plot(*series(name), label=label, linewidth=1)
    ax_loss.set(xlabel="kimg", ylabel="loss", title="Losses")
    ax_loss.legend()
    for name, label in (("d_real", "D(x)"), ("d_fake", "D(G(z))"), ("d_fake_g", "D(G(z)) after D's step")):
        if name in columns:
            ax_out.plot(*series(name), label=label, linewidth=1)
    ax_out.set(xlabel="kimg", ylabel="mean logit", title="Discriminator outputs")
    ax_out.legend()
    fig.tight_layout()
    atomic_savefig(fig, out_dir / "losses.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, label in (("loss_d", "L_D"), ("loss_g", "L_G")):
        at, values = series(name)
        if len(values) >= 2:
            w = min(window, len(values))
            variance = [values[max(0, i - w + 1):i + 1].var() for i in range(len(values))]
            ax.plot(at, variance, label=label, linewidth=1)
    ax.set(xlabel="kimg", ylabel=f"variance over {window} rows", title="Loss variance", yscale="log")
    if ax.lines:
        ax.legend()
    fig.tight_layout()
    atomic_savefig(fig, out_dir / "loss_variance.png")
    plt.close(fig)

    tracked = [(name, label, "min") for name, label in METRIC_COLUMNS.items() if len(series(name)[1])]
    tracked += [(name, label, "max") for name, label in SCORE_COLUMNS.items() if len(series(name)[1])]
    if tracked:  # metric.png: the tracked FID, and the Inception Score beside it when tracked too
        fig, axes = plt.subplots(1, len(tracked), figsize=(6 * len(tracked), 4), squeeze=False)
        for ax, (name, label, best_is) in zip(axes[0], tracked):
            at, values = series(name)
            ax.plot(at, values, marker="o", markersize=3, linewidth=1, label=label)
            best = int(np.argmin(values) if best_is == "min" else np.argmax(values))
            ax.scatter([at[best]], [values[best]], color="red", zorder=3,
                       label=f"best {values[best]:.3f} at {at[best]:g} kimg")
            ax.set(xlabel="kimg", ylabel=name, title=label)
            ax.legend()
        fig.tight_layout()
        atomic_savefig(fig, out_dir / "metric.png")
        plt.close(fig)


def atomic_savefig(fig, path: Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
