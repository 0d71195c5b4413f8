"""What a run reports: statistics, plots and pictures.

`RunLog`: one `report(name, value)` call per statistic; `flush` writes one row to every sink:
`metrics.csv` in the run folder (always), TensorBoard and Weights & Biases (optional). Values may
be tensors: they are summed on their device and read back only at `flush`, so reporting costs no
device synchronization per step. `EpochLines` turns the rows into one printed line per epoch.

Plots of metrics.csv (`plot_metrics`) and pictures of the samples (`save_progress_gif`,
`write_real_vs_fake`) are drawn here with matplotlib and Pillow.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections import defaultdict
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from dcgan.data import ImageData
from dcgan.errors import UserError
from dcgan.files import atomic_write, save_image
from dcgan.sampling import make_grid, save_gif, to_pil

COLUMNS = ["step", "kimg", "epoch", "seconds", "loss_d", "loss_g", "d_real", "d_fake", "r1", "gp",
           "grad_norm_g", "grad_norm_d", "lr_g", "lr_d", "ema_beta", "images_per_s", "fid", "fid_fast",
           "d_fake_g", "r2", "lecam", "augment_p",  # d_fake_g: D(G(z)) after D's update, in G's step
           "ac_d", "ac_g", "ac_accuracy", "instance_noise", "is", "is_fast",  # ac_*: AC-GAN class losses
           "precision", "recall", "precision_fast", "recall_fast",
           "kid", "kid_fast", "density", "coverage", "density_fast", "coverage_fast"]
METRIC_COLUMNS = {"fid": "FID (Inception)", "fid_fast": "FID-fast (fast features, not Inception FID)"}  # picks the best
DISTANCE_COLUMNS = {"kid": "KID (Inception)", "kid_fast": "KID-fast"}  # lower is better too
SCORE_COLUMNS = {"is": "IS (Inception)", "is_fast": "IS-fast (fast features, not Inception IS)",  # higher is better
                 "precision": "precision (Inception)", "recall": "recall (Inception)",
                 "precision_fast": "precision-fast", "recall_fast": "recall-fast",
                 "density": "density (Inception)", "coverage": "coverage (Inception)",
                 "density_fast": "density-fast", "coverage_fast": "coverage-fast"}


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

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.run_dir is None:
            return
        self.csv_file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb is not None:
            self.wandb.finish()


class Throughput:
    """Images per second between readings, on the monotonic clock."""

    def __init__(self, nimg: int):
        self.time, self.nimg = time.monotonic(), nimg

    def read(self, nimg: int) -> float:
        now = time.monotonic()
        rate = (nimg - self.nimg) / max(now - self.time, 1e-9)
        self.time, self.nimg = now, nimg
        return rate


class EpochLines:
    """One printed line per epoch: the means of the rows logged during the epoch that just ended."""

    SHOWN = ("loss_d", "loss_g", "d_real", "d_fake", "d_fake_g", "images_per_s")

    def __init__(self, epoch: int):
        self.epoch, self.rows = epoch, []

    def add(self, row: dict) -> None:
        self.rows.append(row)

    def end_of_epoch(self, epoch: int, cur_nimg: int) -> str | None:
        """The line of the epoch that ended, once `epoch` has moved on (None otherwise, or without rows)."""
        if epoch == self.epoch:
            return None
        line = None
        if self.rows:
            mean = {k: sum(r[k] for r in self.rows) / len(self.rows) for k in self.SHOWN}
            line = (f"epoch {self.epoch + 1}: L_D {mean['loss_d']:.3f}  L_G {mean['loss_g']:.3f}  "
                    f"D(x) {mean['d_real']:.2f}  D(G(z)) {mean['d_fake']:.2f} / {mean['d_fake_g']:.2f}  "
                    f"{mean['images_per_s']:.0f} img/s  ({cur_nimg / 1000:.1f} kimg)")
        self.epoch, self.rows = epoch, []
        return line


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

    tracked = [(name, label, "min") for name, label in (METRIC_COLUMNS | DISTANCE_COLUMNS).items()
               if len(series(name)[1])]
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


# ----------------------------------------------------------------------------------------------
# Pictures of the samples.

MAX_GIF_FRAMES = 100


def save_progress_gif(samples_dir: Path, path: Path, max_frames: int = MAX_GIF_FRAMES) -> None:
    """progress.gif from the run's sample grids: every grid, or `max_frames` of them evenly spaced
    (the first and the last included), so a snapshot's cost does not grow with the run's length."""
    grids = sorted(samples_dir.glob("fakes*.png"))
    if len(grids) > max_frames:
        picks = sorted({round(i * (len(grids) - 1) / (max_frames - 1)) for i in range(max_frames)})
        grids = [grids[i] for i in picks]
    frames = [frame for frame in map(_read_image, grids) if frame is not None]
    if frames:
        save_gif(frames, path)


def write_real_vs_fake(data: ImageData, fakes: torch.Tensor, path: Path, nrow: int | None = None,
                       labels: torch.Tensor | None = None) -> None:
    """Real images (a fixed random pick; of the same class as each fake where `labels` are given)
    and fixed-noise fakes, side by side, labelled."""
    count = min(fakes.shape[0], len(data))
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    if labels is None:
        pick = order[:count]
    else:  # the k-th fake of class c beside the k-th image of class c in the fixed order
        by_class = {int(c): order[data.labels[order] == c] for c in labels.unique()}
        seen: dict[int, int] = {}
        pick = []
        for c in labels[:count].tolist():
            members = by_class[c]
            pick.append(members[seen.get(c, 0) % len(members)])
            seen[c] = seen.get(c, 0) + 1
        pick = torch.stack(pick)
    real = to_pil(make_grid(data.images[pick], nrow=nrow))
    fake = to_pil(make_grid(fakes[:count], nrow=nrow))
    label_height, gap = 16, 8
    canvas = Image.new(real.mode, (real.width + gap + fake.width, real.height + label_height), "white")
    canvas.paste(real, (0, label_height))
    canvas.paste(fake, (real.width + gap, label_height))
    draw = ImageDraw.Draw(canvas)
    draw.text((2, 2), "real", fill="black")
    draw.text((real.width + gap + 2, 2), "generated", fill="black")
    save_image(canvas, path)


def _read_image(path: Path) -> Image.Image | None:
    """A snapshot grid, or None for one torn by a process of an older version killed mid-write."""
    try:
        with Image.open(path) as image:
            return image.copy()
    except Exception:  # Pillow raises OSError, SyntaxError, EOFError, zlib.error on torn files
        return None
