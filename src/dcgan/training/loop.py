"""The training loop, read top to bottom: `train` sets up, steps, snapshots and ends.

`train(config)` starts a run; `train(config, resume_state=..., run_dir=...)` continues one from
its checkpoint exactly (models, EMA, optimizers, scaler, RNG and data order), so N steps, a
restart and N more steps give the same weights as 2N steps in one go.

What `train` calls is here, each with explicit arguments: `train_step` (D, then G),
`take_snapshot`, `checkpoint_state`, `evaluate_metric` and `finish_run`, over a `Run` that holds
what stays fixed once set up. What is built before the first step is in `setup.py`, the run's
budget and rates in `schedule.py`, the stop decision all processes share in `stopping.py`, and
what is saved for exact resume in `state.py`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from dcgan.checkpoint import save_checkpoint, save_generator
from dcgan.config import TrainConfig
from dcgan.data import BatchStream, ImageData
from dcgan.errors import UserError
from dcgan.files import RunFolderLock, save_image, write_json
from dcgan.sampling import generate_from_latents, latents_from_seeds, make_grid, to_pil
from dcgan.training import distributed
from dcgan.training.distributed import ProcessInfo
from dcgan.training.ema import standing_statistics, step_ema
from dcgan.training.init_from import initialize
from dcgan.training.precision import resolve_precision
from dcgan.training.report import EpochLines, RunLog, Throughput, plot_metrics, save_progress_gif, write_real_vs_fake
from dcgan.training.run_dir import keep_snapshot
from dcgan.training.schedule import Budget, RunClock, describe_decision, scheduled_rates
from dcgan.training.setup import (
    Networks,
    build_networks,
    build_tracker,
    configure_device,
    move_to_device,
    prepare_run_dir,
    training_data,
)
from dcgan.training.state import Progress, TrainingState, restore_rng
from dcgan.training.stopping import Stop, StopSignals, gather_rng_states, stop_vote
from dcgan.training.tracking import MetricTracker


class TrainingDiverged(UserError):
    pass


def train(config: TrainConfig, *, run_dir: Path | None = None, resume_state: dict | None = None,
          data: ImageData | None = None, show_progress: bool = True, lock: RunFolderLock | None = None) -> Path | None:
    """Train a GAN as `config` says; return the run folder (None on ranks other than 0).

    Args:
        run_dir: the folder of a run to resume (with `resume_state`); a new one is made if None.
        resume_state: a checkpoint dict from `load_checkpoint`, to continue exactly.
        data: already-loaded images (tests, benchmarks); loaded from `config` if None.
        lock: the run folder's lock, when the caller took it before reading `resume_state`.
    """
    # Set up: process and device, data, networks (same initial weights on every rank).
    process, device = distributed.init_process(config.device)
    configure_device(config, process, device)
    torch.manual_seed(config.seed)
    data, class_names = training_data(config, data)
    stream = BatchStream(data, config.batch_size, seed=config.seed, device=device, hflip=config.hflip,
                         rank=process.rank, world_size=process.world_size)
    precision = resolve_precision(config.precision, device, config.amp)
    nets = build_networks(config, data, class_names, precision, device)
    if process.is_main and show_progress:
        print(f"precision: {precision.reason}", flush=True)
        if config.diffaugment.strip() == "auto" and nets.augmenter.policy:
            print(f"augmentation: DiffAugment {','.join(nets.augmenter.policy)} (fine-tuning on {len(data):,} images; "
                  f"--diffaugment none turns it off)", flush=True)

    # Restore a resumed run's state (state.py: what is saved, what is restored), or start from
    # another model's weights (--init-from); every rank then draws its own noise, from its exact
    # generator state when resuming.
    training_state = nets.training_state(stream)
    progress = training_state.load_state_dict(resume_state) if resume_state is not None else Progress()
    if resume_state is None and config.init_from:
        progress.summary["init_from"] = initialize(nets, config.init_from)
    move_to_device(nets, device)
    torch.manual_seed(config.seed * 7919 + process.rank + 1)
    if resume_state is not None:
        restore_rng(resume_state, process.rank, device)

    # Metric tracking, then the run folder, locked for this process (rank 0 writes files).
    tracker = build_tracker(config, data, device, progress.summary, process, run_dir, show_progress)
    if not process.is_main:
        lock = contextlib.nullcontext()
    if process.is_main:
        run_dir, lock = prepare_run_dir(config, run_dir, resumed=resume_state is not None, nets=nets, data=data,
                                        device=device, lock=lock)
    run = Run(config, nets, training_state, stream, run_dir, class_names, data,
              *fixed_grid_inputs(config.grid_size, config.z_dim, len(class_names)), process, device)

    # The budget, the snapshot schedule and the clocks.
    budget = Budget.from_config(config, len(data), stream.batches_per_epoch * config.batch_size * process.world_size)
    next_snapshot = budget.next_snapshot(progress.cur_nimg)
    images_per_step = config.batch_size * process.world_size * config.n_dis
    output_generator = OutputGenerator(nets.G, nets.G_ema)
    bar = tqdm(total=None if math.isinf(budget.total_nimg) else int(budget.total_nimg), initial=progress.cur_nimg,
               unit="img", unit_scale=True, dynamic_ncols=True, disable=not (show_progress and process.is_main))
    clock = RunClock(progress.seconds)
    agreed_seconds = progress.seconds  # rank 0's clock as of the last step (torchrun)
    throughput = Throughput(progress.cur_nimg)
    if tracker is not None:
        tracker.start(progress.cur_nimg)
    epoch_lines = EpochLines(stream.epoch)
    stop = Stop.LENGTH
    now = clock.seconds()  # the clock, read once per step (and again after a metric evaluation)

    # Train, with the run's log open.
    resume_step = progress.step if resume_state is not None else None
    with (lock, StopSignals() as signals, bar,
          RunLog(run_dir if process.is_main else None, config.log, config.to_dict(), resume_step) as log):
        try:
            while progress.cur_nimg < budget.total_nimg:
                log_now = (progress.step + 1) % config.log_every == 0

                # Learning rates and instance noise over the run's length (under torchrun by rank 0's
                # clock, so that every process takes the same rates).
                if config.lr_decay != "none" or config.instance_noise:
                    seconds = agreed_seconds if process.distributed else now
                    update_rates(run, progress, budget.fraction(progress.cur_nimg, seconds), log if log_now else None,
                                 bar if show_progress else None)

                # One step: D on n_dis batches, then G; then the EMA.
                progress.d_step = train_step(run, log, progress.d_step, log_now)
                progress.step += 1
                progress.cur_nimg += images_per_step
                bar.update(images_per_step)
                beta = step_ema(nets.G_ema, nets.G, config.batch_size * process.world_size, config.ema_kimg,
                                progress.cur_nimg, config.ema_rampup)
                now = clock.seconds()

                # Log statistics every --log-every steps, and one line per epoch.
                loss_problem = ""  # rank 0: the non-finite losses of this step's row, if any
                if log_now:
                    loss_problem = log_step(run, log, progress, now, beta, throughput, epoch_lines, bar)
                if line := epoch_lines.end_of_epoch(stream.epoch, progress.cur_nimg):
                    bar.write(line)

                # Decide, all processes together, whether to stop (time, divergence, SIGTERM or Ctrl-C)
                # and whether to score the generator now: rank 0's clock and losses, anyone's signal.
                final = progress.cur_nimg >= budget.total_nimg or now >= budget.deadline
                metric_due = tracker is not None and process.is_main and tracker.due(progress.cur_nimg, final=final)
                decision = stop_vote(now >= budget.deadline, bool(loss_problem), signals.received is not None,
                                     metric_due, seconds=now, distributed=process.distributed,
                                     is_main=process.is_main, device=device)
                agreed_seconds = decision.seconds
                if decision.diverged:
                    raise TrainingDiverged(f"training diverged at step {progress.step} "
                                           f"({loss_problem or 'a non-finite loss'}); {last_good(run_dir)}")
                if decision.signalled:
                    take_snapshot(run, progress, now, output_generator)
                    stop = Stop.SIGNAL
                    break

                # Evaluate the tracked metric; save a snapshot.
                if decision.evaluate:
                    evaluate_metric(run, tracker, output_generator(progress.step), progress, now, log, bar)
                    now = clock.seconds()  # the evaluation's time counts toward the run's
                if progress.cur_nimg >= next_snapshot or progress.cur_nimg >= budget.total_nimg or decision.out_of_time:
                    take_snapshot(run, progress, now, output_generator)
                    next_snapshot = budget.next_snapshot(progress.cur_nimg)
                if decision.out_of_time:
                    stop = Stop.TIME
                    break
        except KeyboardInterrupt:  # a second Ctrl-C: no checkpoint of this step
            stop = Stop.INTERRUPTED
            bar.write(f"interrupted at step {progress.step}; resume from {run_dir}")

        # The end: final pictures and summary.json; under torchrun, check that every process ends
        # with the same weights.
        finish_run(run, progress, clock.seconds(), stop, stop.describe(minutes=config.minutes,
                                                                        signal_name=signals.received),
                   tracker, output_generator)
    distributed.shutdown(process)
    return run_dir if process.is_main else None


@dataclass(frozen=True)
class Run:
    """What stays fixed over a run once it is set up."""

    config: TrainConfig
    nets: Networks
    training_state: TrainingState
    stream: BatchStream
    run_dir: Path | None  # None on ranks other than 0
    class_names: list[str]  # a conditional run's classes, by label; [] otherwise
    data: ImageData  # the training images
    grid_z: torch.Tensor  # the fixed latents of the sample grids
    grid_labels: torch.Tensor | None
    grid_columns: int
    process: ProcessInfo
    device: torch.device


class OutputGenerator:
    """What grids, metrics and generator files use: the EMA generator with its own BatchNorm
    statistics (standing statistics, computed once per step however many of them need it), or the
    raw generator without EMA."""

    def __init__(self, G: torch.nn.Module, G_ema: torch.nn.Module | None):
        self.G, self.G_ema = G, G_ema
        self.step: int | None = None
        self.generator: torch.nn.Module | None = None

    def __call__(self, step: int) -> torch.nn.Module:
        if self.G_ema is None:
            return self.G
        if step != self.step:
            self.step, self.generator = step, standing_statistics(self.G_ema)
        return self.generator


def update_rates(run: Run, progress: Progress, done: float, log: RunLog | None, bar: tqdm | None) -> None:
    """Both learning rates and the instance noise after a fraction `done` of the run. `--lr-decay
    auto` decides once, at the decay's start: its decision goes into the summary (a resumed run
    keeps it) and, with a `bar`, onto the screen. `log`: report the noise level (a logged step)."""
    config, nets, summary = run.config, run.nets, progress.summary
    rates = scheduled_rates(config, done, progress.cur_nimg, summary.get("lr_decay_auto"))
    if rates.new:
        summary["lr_decay_auto"] = rates.decision
        if run.process.is_main and bar is not None:
            bar.write(describe_decision(rates.decision))
    nets.opt_G.param_groups[0]["lr"] = config.lr_g * rates.lr_factor
    nets.opt_D.param_groups[0]["lr"] = config.lr_d * rates.lr_factor
    nets.loss.instance_noise = rates.instance_noise
    if log is not None and config.instance_noise:
        log.report("instance_noise", rates.instance_noise)


def log_step(run: Run, log: RunLog, progress: Progress, seconds: float, ema_beta: float, throughput: Throughput,
             epoch_lines: EpochLines, bar: tqdm) -> str:
    """One row of statistics (every process flushes; rank 0 writes it, adds it to the epoch's line
    and the progress bar); returns rank 0's non-finite losses ('' if none)."""
    nets = run.nets
    row = log.flush(**position(progress, len(run.data), seconds), ema_beta=ema_beta,
                    lr_g=nets.opt_G.param_groups[0]["lr"], lr_d=nets.opt_D.param_groups[0]["lr"],
                    images_per_s=throughput.read(progress.cur_nimg))
    if not run.process.is_main:
        return ""
    epoch_lines.add(row)
    bar.set_postfix_str(step_line(row), refresh=False)
    return non_finite_losses(row)


def train_step(run: Run, log: RunLog, d_step: int, log_now: bool) -> int:
    """`n_dis` discriminator steps, then one generator step on the last batch of fakes; returns the
    discriminator's step count. Losses (and, when `log_now`, gradient norms) go to `log`."""
    nets, config, device = run.nets, run.config, run.device
    num_classes = len(run.class_names)

    # Discriminator phase: n_dis batches; G's last batch of fakes is kept for the G phase.
    for parameter in nets.d_trainable:  # all of D but the blocks --freeze-d keeps fixed
        parameter.requires_grad_(True)
    for k in range(config.n_dis):
        real, real_labels = next(run.stream)
        z = torch.randn(real.shape[0], config.z_dim, device=device)
        fake_labels = None  # conditional: classes drawn uniformly
        if num_classes:
            fake_labels = torch.randint(num_classes, (real.shape[0],), device=device)
        else:
            real_labels = None
        with torch.set_grad_enabled(k == config.n_dis - 1), nets.precision.autocast():
            fake = nets.G_train(z, fake_labels)
        nets.opt_D.zero_grad(set_to_none=True)
        for name, value in nets.loss.discriminator_step(real, fake, d_step, nets.scaler, real_labels,
                                                        fake_labels).items():
            log.report(name, value)
        distributed.all_reduce_grads(nets.D, run.process)
        if log_now and k == config.n_dis - 1:
            nets.scaler.unscale_(nets.opt_D)  # the norm of the true gradients, not the loss-scaled ones
            log.report("grad_norm_d", grad_norm(nets.D))
        nets.scaler.step(nets.opt_D)
        nets.scaler.update()  # after every optimizer step: GradScaler allows one step per update
        d_step += 1

    # Generator phase.
    nets.D.requires_grad_(False)
    nets.opt_G.zero_grad(set_to_none=True)
    for name, value in nets.loss.generator_step(fake, nets.scaler, real=real, fake_labels=fake_labels,
                                                real_labels=real_labels).items():
        log.report(name, value)
    distributed.all_reduce_grads(nets.G, run.process)
    if log_now:
        nets.scaler.unscale_(nets.opt_G)
        log.report("grad_norm_g", grad_norm(nets.G))
    nets.scaler.step(nets.opt_G)
    nets.scaler.update()
    return d_step


def checkpoint_state(run: Run, progress: Progress, seconds: float, rng_ranks: dict | None = None) -> dict:
    """The run's description and its whole training state after `seconds` of training; `rng_ranks`
    holds every rank's generator states (see take_snapshot)."""
    return {"config": run.config.to_dict(), "generator_kwargs": run.nets.g_kwargs,
            "discriminator_kwargs": run.nets.d_kwargs,
            **run.training_state.state_dict(dataclasses.replace(progress, seconds=seconds), rng_ranks)}


def generator_metadata(run: Run, progress: Progress) -> dict:
    """What a generator file records about the run it came from."""
    return {"step": progress.step, "kimg": progress.cur_nimg / 1000, "dataset": run.config.dataset,
            "classes": run.config.classes, "class_names": run.class_names, "conditional": run.config.conditional}


def take_snapshot(run: Run, progress: Progress, seconds: float, output_generator: OutputGenerator) -> None:
    """Sample grid, progress GIF, plots, checkpoint-last.pt and generator.safetensors (rank 0; every
    rank gives its generator states, a collective)."""
    nets = run.nets
    if not all(bool(torch.isfinite(p).all()) for p in list(nets.G.parameters()) + list(nets.D.parameters())):
        raise TrainingDiverged(f"training diverged before step {progress.step} (non-finite weights); "
                               f"{last_good(run.run_dir)}")
    rng_ranks = {"cpu": gather_rng_states(torch.get_rng_state(), run.device, run.process.distributed)}
    if run.device.type == "cuda":
        rng_ranks["cuda"] = gather_rng_states(torch.cuda.get_rng_state(run.device), run.device,
                                              run.process.distributed)
    if not run.process.is_main:
        return
    run_dir, sampler = run.run_dir, output_generator(progress.step)
    grid = generate_from_latents(sampler, run.grid_z, labels=run.grid_labels)
    save_image(to_pil(make_grid(grid, nrow=run.grid_columns)),
               run_dir / "samples" / f"fakes-kimg{progress.cur_nimg / 1000:09.2f}.png")
    save_progress_gif(run_dir / "samples", run_dir / "progress.gif")
    plot_metrics(run_dir / "metrics.csv", run_dir)
    progress.summary.update(step=progress.step, kimg=round(progress.cur_nimg / 1000, 3),
                            epoch=round(progress.cur_nimg / len(run.data), 3))
    save_checkpoint(checkpoint_state(run, progress, seconds, rng_ranks), run_dir / "checkpoint-last.pt")
    if run.config.keep_snapshots:
        keep_snapshot(run_dir, progress.cur_nimg, run.config.keep_snapshots)
    save_generator(sampler, nets.g_kwargs, run_dir / "generator.safetensors", extra=generator_metadata(run, progress))


def evaluate_metric(run: Run, tracker: MetricTracker, sampler: torch.nn.Module, progress: Progress, seconds: float,
                    log: RunLog, bar: tqdm) -> None:
    """Score `sampler` (every process makes a share of the samples); rank 0 logs the scores, and a
    best score writes checkpoint-best.pt and generator-best.safetensors."""
    scores = tracker.evaluate(sampler, progress.cur_nimg)
    if not run.process.is_main:
        return
    value, epoch = scores[tracker.column], progress.cur_nimg / len(run.data)
    log.write_row(**position(progress, len(run.data), seconds), **scores)
    note = ""
    if tracker.is_best(value):
        progress.summary["best"] = tracker.record_best(value, progress.step, progress.cur_nimg, epoch)
        save_checkpoint(checkpoint_state(run, progress, seconds), run.run_dir / "checkpoint-best.pt")
        save_generator(sampler, run.nets.g_kwargs, run.run_dir / "generator-best.safetensors",
                       extra={**generator_metadata(run, progress), tracker.column: value})
        note = " (best)"
    elif tracker.best is not None:
        note = f" (best {tracker.best['value']:.3f} at {tracker.best['kimg']:g} kimg)"
    progress.summary["metric_seconds"] = round(tracker.seconds_spent, 2)
    plot_metrics(run.run_dir / "metrics.csv", run.run_dir)
    also = "".join(f", {key.replace('_', '-').upper().replace('-FAST', '-fast')} {score:.4g}"
                   for key, score in scores.items() if key != tracker.column)
    bar.write(f"{tracker.title} {value:.3f}{also} at {progress.cur_nimg / 1000:.1f} kimg{note}")


def finish_run(run: Run, progress: Progress, seconds: float, stop: Stop, stop_reason: str,
               tracker: MetricTracker | None, output_generator: OutputGenerator) -> None:
    """real_vs_fake.png and summary.json, and the closing lines (rank 0); under torchrun, whether
    every process ended with the same weights."""
    process, run_dir, summary = run.process, run.run_dir, progress.summary
    if stop is Stop.INTERRUPTED:
        return
    if stop is Stop.SIGNAL and process.is_main:
        tqdm.write(f"{stop_reason} at step {progress.step}: checkpoint-last.pt saved; resume with "
                   f"dcgan train --resume {run_dir}")
    identical = distributed.weights_identical([run.nets.G, run.nets.D], process)
    if not process.is_main:
        return
    if process.distributed:
        summary["processes"] = {"count": process.world_size, "weights_identical": identical}
        if not identical:
            tqdm.write("warning: the processes ended with different weights (a non-deterministic all-reduce "
                       "or a rank that skipped a step); checkpoint-last.pt holds rank 0's")
    fakes = generate_from_latents(output_generator(progress.step), run.grid_z, labels=run.grid_labels)
    write_real_vs_fake(run.data, fakes, run_dir / "real_vs_fake.png", nrow=run.grid_columns,
                       labels=run.grid_labels)
    summary.update(step=progress.step, kimg=round(progress.cur_nimg / 1000, 3),
                   epoch=round(progress.cur_nimg / len(run.data), 3), seconds=round(seconds, 1),
                   stop_reason=stop_reason)
    if tracker is not None:
        summary.update(metric_fraction=round(tracker.seconds_spent / max(seconds, 1e-9), 4),
                       metric_protocol=tracker.describe())
    write_json(run_dir / "summary.json", summary)
    print(f"done: {progress.step} steps, {progress.cur_nimg / 1000:.1f} kimg in {seconds / 60:.1f} min "
          f"({stop_reason}); run folder {run_dir}")
    if tracker is not None and tracker.best is not None:
        best = tracker.best
        print(f"best {tracker.title} {best['value']:.3f} at step {best['step']} ({best['kimg']:g} kimg, "
              f"epoch {best['epoch']:g}): checkpoint-best.pt; {tracker.seconds_spent / max(seconds, 1e-9):.1%} "
              f"of the time went to evaluation")


def fixed_grid_inputs(grid_size: int, z_dim: int, num_classes: int) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """The fixed noise of the run's sample grids: (latents, labels or None, images per row).
    Unconditional: `grid_size` seeds in a square. Conditional: one row per class (10 classes spread
    over the range where there are more), the same latent down each column."""
    if not num_classes:
        return latents_from_seeds(range(grid_size), z_dim), None, max(1, int(math.ceil(math.sqrt(grid_size))))
    rows = torch.linspace(0, num_classes - 1, min(num_classes, 10)).round().long()  # (R,) classes
    columns = max(1, grid_size // len(rows))
    z = latents_from_seeds(range(columns), z_dim).repeat(len(rows), 1)  # (R * columns, z_dim)
    return z, rows.repeat_interleave(columns), columns


def position(progress: Progress, dataset_size: int, seconds: float) -> dict:
    """Where a run is, as a row of metrics.csv begins."""
    return {"step": progress.step, "kimg": round(progress.cur_nimg / 1000, 4),
            "epoch": round(progress.cur_nimg / dataset_size, 4), "seconds": round(seconds, 2)}


def last_good(run_dir: Path | None) -> str:
    """Where the last good state is, for a divergence message (ranks other than 0 have no run folder)."""
    where = run_dir / "checkpoint-last.pt" if run_dir is not None else "rank 0's checkpoint-last.pt"
    return f"{where} holds the last good state"


def non_finite_losses(row: dict) -> str:
    """'L_D=nan, L_G=...' when a logged loss is not finite; '' otherwise."""
    if math.isfinite(row["loss_d"]) and math.isfinite(row["loss_g"]):
        return ""
    return f"L_D={row['loss_d']}, L_G={row['loss_g']}"


def step_line(row: dict) -> str:
    """The progress bar's summary of the last logged row."""
    return (f"L_D={row['loss_d']:.3f} L_G={row['loss_g']:.3f} D(x)={row['d_real']:.2f} "
            f"D(G(z))={row['d_fake']:.2f}/{row['d_fake_g']:.2f} {row['images_per_s']:.0f} img/s")


def grad_norm(module: torch.nn.Module) -> torch.Tensor:
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])) if grads else torch.zeros(())
