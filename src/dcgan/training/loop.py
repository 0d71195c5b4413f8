"""The training loop: one function, read top to bottom.

`train(config)` starts a run; `train(config, resume_state=..., run_dir=...)` continues one from
its checkpoint exactly (models, EMA, optimizers, scaler, RNG and data order), so N steps, a
restart and N more steps give the same weights as 2N steps in one go.
"""

from __future__ import annotations

import copy
import math
import os
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from tqdm import tqdm

from dcgan.augment import Augmenter
from dcgan.checkpoint import load_checkpoint, save_checkpoint, save_generator
from dcgan.config import TrainConfig
from dcgan.data import BatchStream, ImageData, load_dataset
from dcgan.devices import physical_cores
from dcgan.errors import UserError
from dcgan.files import remove_stale_temp_files, save_image, write_json, write_text
from dcgan.losses import GANLoss
from dcgan.models import build_discriminator, build_generator, discriminator_kwargs, generator_kwargs
from dcgan.sampling import generate_from_latents, latents_from_seeds, make_grid, save_gif, to_pil
from dcgan.training import distributed
from dcgan.training.ema import ema_beta, standing_statistics, update_ema
from dcgan.training.precision import resolve_precision
from dcgan.training.report import RunLog, plot_metrics
from dcgan.training.schedule import auto_decision, describe_decision, lr_factor, run_fraction
from dcgan.training.tracking import MetricTracker
from dcgan.training.run_dir import count_parameters, environment_info, model_summary, new_run_dir
from dcgan.training.state import Progress, TrainingState, restore_rng
from dcgan.training.stopping import StopSignals, gather_rng_states, stop_vote


MIN_SNAPSHOT_NIMG = 20_000


class TrainingDiverged(UserError):
    pass


def train(config: TrainConfig, *, run_dir: Path | None = None, resume_state: dict | None = None,
          data: ImageData | None = None, show_progress: bool = True) -> Path | None:
    """Train a GAN as `config` says; return the run folder (None on ranks other than 0).

    Args:
        run_dir: the folder of a run to resume (with `resume_state`); a new one is made if None.
        resume_state: a checkpoint dict from `load_checkpoint`, to continue exactly.
        data: already-loaded images (tests, benchmarks); loaded from `config` if None.
    """
    process, device = distributed.init_process(config.device)
    if device.type == "cpu":
        torch.set_num_threads(config.threads or max(1, physical_cores() // process.world_size))
    torch.manual_seed(config.seed)  # Same initial weights on every rank.
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True

    # Load data.
    if data is None:
        data = load_dataset(config.dataset, config.data_root, split=config.split, classes=config.classes,
                            resolution=config.resolution, channels=config.channels, download=config.download)
    class_names: list[str] = []  # what a conditional model learns to generate, by label 0..K-1
    if config.conditional:
        data = data.with_present_classes()
        class_names = data.class_names
        if len(class_names) < 2:
            raise UserError(f"--conditional needs at least two classes; the data holds one ({class_names[0]})")
    num_classes = len(class_names)
    resolution, channels = data.resolution, data.channels
    stream = BatchStream(data, config.batch_size, seed=config.seed, device=device, hflip=config.hflip,
                         rank=process.rank, world_size=process.world_size)

    # Build networks, optimizers and the loss.
    g_kwargs = generator_kwargs(config, resolution, channels, class_names)
    d_kwargs = discriminator_kwargs(config, resolution, channels, num_classes)
    G = build_generator(**g_kwargs)
    D = build_discriminator(**d_kwargs)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    G.to(memory_format=memory_format), D.to(memory_format=memory_format)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False) if config.ema_kimg > 0 else None
    opt_G = torch.optim.Adam(G.parameters(), lr=config.lr_g, betas=(config.beta1, config.beta2))
    opt_D = torch.optim.Adam(D.parameters(), lr=config.lr_d, betas=(config.beta1, config.beta2))
    precision = resolve_precision(config.precision, device, config.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.needs_scaler)
    augmenter = Augmenter(config.augment_policy, p=config.augment_p, target=config.ada_target,
                          speed_kimg=config.ada_kimg)
    G_train, D_compiled = (torch.compile(G), torch.compile(D)) if config.compile else (G, None)
    loss = GANLoss(generator=G_train, discriminator=D, compiled_discriminator=D_compiled, loss=config.loss,
                   label_smoothing=config.label_smoothing, r1_gamma=config.r1_gamma, r2_gamma=config.r2_gamma,
                   r1_interval=config.r1_interval, gp_weight=config.gp_weight, lecam_weight=config.lecam_weight,
                   augment=augmenter, precision=precision, conditioning=config.conditional,
                   ac_weight=config.ac_weight)
    if process.is_main and show_progress:
        print(f"precision: {precision.reason}", flush=True)

    # Restore the state of the run we resume (training/state.py: what is saved, what is restored).
    training_state = TrainingState(G=G, D=D, G_ema=G_ema, opt_G=opt_G, opt_D=opt_D, scaler=scaler,
                                   augmenter=augmenter, loss=loss, stream=stream)
    progress_so_far = training_state.load_state_dict(resume_state) if resume_state is not None else Progress()
    step, d_step, cur_nimg = progress_so_far.step, progress_so_far.d_step, progress_so_far.cur_nimg
    elapsed_before, summary = progress_so_far.seconds, progress_so_far.summary
    G.to(device), D.to(device)
    if G_ema is not None:
        G_ema.to(device)
    for state in (opt_G.state, opt_D.state):  # Optimizer moments follow the parameters' device.
        for moments in state.values():
            for key, value in moments.items():
                if torch.is_tensor(value) and key != "step":
                    moments[key] = value.to(device)
    # Every rank draws its own noise; restore each rank's exact generator state when resuming.
    torch.manual_seed(config.seed * 7919 + process.rank + 1)
    if resume_state is not None:
        restore_rng(resume_state, process.rank, device)

    # Metric tracking: the extractor and the training data's statistics, before any file is written.
    # Rank 0 first (it may train the fast extractor or download Inception), then the others, which
    # generate and score their share of the samples at each evaluation.
    tracker = None
    if config.metric:
        problem = None
        with torch.random.fork_rng(devices=[]):  # Building networks draws random numbers: not from the run's.
            if process.is_main:
                try:
                    tracker = MetricTracker(config, data, device, summary, process, progress=show_progress)
                except UserError as error:
                    problem = error
            if not distributed.all_agree(problem is None, process, device):
                raise problem or UserError("rank 0 could not set up --metric (its message says why)")
            if not process.is_main:
                tracker = MetricTracker(config, data, device, summary, process, progress=False)
        if process.is_main and run_dir is not None and (run_dir / "checkpoint-best.pt").is_file():
            best_on_disk = load_checkpoint(run_dir / "checkpoint-best.pt")["summary"].get("best")
            if best_on_disk and (tracker.best is None or best_on_disk["value"] < tracker.best["value"]):
                tracker.best = summary["best"] = best_on_disk  # Killed after a best, before the last save.

    if process.is_main:
        if run_dir is None:
            run_dir = new_run_dir(config.outdir, config.dataset, config.preset)
        (run_dir / "samples").mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(run_dir)  # left by a process killed mid-write
        write_json(run_dir / "config.json", config.to_dict())
        if resume_state is None:
            write_json(run_dir / "environment.json", environment_info(device))
            write_text(run_dir / "model_summary.txt", model_summary(G, D, config.z_dim, resolution, channels))
            write_json(run_dir / "model.json", {
                "generator_kwargs": g_kwargs, "discriminator_kwargs": d_kwargs,
                "generator_parameters": count_parameters(G), "discriminator_parameters": count_parameters(D),
                "dataset_images": len(data), "class_names": data.class_names})
    log = RunLog(run_dir if process.is_main else None, config.log, config.to_dict(),
                 resume_step=step if resume_state is not None else None)

    # Decide when the run ends and when to take snapshots.
    total_nimg = math.inf
    if config.kimg:
        total_nimg = min(total_nimg, config.kimg * 1000)
    if config.epochs:
        total_nimg = min(total_nimg, config.epochs * len(data))
    deadline = config.minutes * 60 if config.minutes else math.inf
    images_per_step = config.batch_size * process.world_size * config.n_dis
    epoch_nimg = stream.batches_per_epoch * config.batch_size * process.world_size
    if config.snapshot_kimg:
        snapshot_nimg = config.snapshot_kimg * 1000
    else:  # Whole epochs, at least MIN_SNAPSHOT_NIMG apart, so tiny datasets don't snapshot constantly.
        snapshot_nimg = epoch_nimg * math.ceil(MIN_SNAPSHOT_NIMG / epoch_nimg)
    next_snapshot = (cur_nimg // snapshot_nimg + 1) * snapshot_nimg
    fixed_z, fixed_labels, grid_columns = fixed_grid_inputs(config.grid_size, config.z_dim, num_classes)

    standing: dict[int, torch.nn.Module] = {}  # step -> the EMA generator with standing statistics

    def output_generator() -> torch.nn.Module:
        """What grids, metrics and generator files use: the EMA generator with its own BatchNorm
        statistics (standing statistics, computed once per step however many of them need it), or
        the raw generator without EMA."""
        if G_ema is None:
            return G
        if step not in standing:
            standing.clear()
            standing[step] = standing_statistics(G_ema)
        return standing[step]

    def checkpoint_state(rng_ranks: dict | None = None) -> dict:
        """The run's description and its whole training state; `rng_ranks` holds every rank's
        generator states (see take_snapshot)."""
        progress_now = Progress(step, d_step, cur_nimg, elapsed_before + time.time() - start_time, summary)
        return {"config": config.to_dict(), "generator_kwargs": g_kwargs, "discriminator_kwargs": d_kwargs,
                **training_state.state_dict(progress_now, rng_ranks)}

    def take_snapshot() -> None:
        """Sample grid, progress GIF, plots, checkpoint-last.pt and generator.safetensors."""
        if not all(bool(torch.isfinite(p).all()) for p in list(G.parameters()) + list(D.parameters())):
            raise TrainingDiverged(f"training diverged before step {step} (non-finite weights); "
                                   f"{run_dir / 'checkpoint-last.pt'} holds the last good state")
        rng_ranks = {"cpu": gather_rng_states(torch.get_rng_state(), device, process.distributed)}
        if device.type == "cuda":
            rng_ranks["cuda"] = gather_rng_states(torch.cuda.get_rng_state(device), device, process.distributed)
        if not process.is_main:
            return
        sampler = output_generator()
        grid = generate_from_latents(sampler, fixed_z, labels=fixed_labels)
        save_image(to_pil(make_grid(grid, nrow=grid_columns)),
                   run_dir / "samples" / f"fakes-kimg{cur_nimg / 1000:09.2f}.png")
        frames = [_read_image(p) for p in sorted((run_dir / "samples").glob("fakes*.png"))]
        save_gif([frame for frame in frames if frame is not None], run_dir / "progress.gif")
        plot_metrics(run_dir / "metrics.csv", run_dir)
        summary.update(step=step, kimg=round(cur_nimg / 1000, 3), epoch=round(cur_nimg / len(data), 3))
        save_checkpoint(checkpoint_state(rng_ranks), run_dir / "checkpoint-last.pt")
        if config.keep_snapshots:
            keep_snapshot(run_dir, cur_nimg, config.keep_snapshots)
        save_generator(sampler, g_kwargs, run_dir / "generator.safetensors", extra=generator_metadata())

    def generator_metadata() -> dict:
        return {"step": step, "kimg": cur_nimg / 1000, "dataset": config.dataset, "classes": config.classes,
                "class_names": class_names, "conditional": config.conditional}

    def evaluate_metric() -> None:
        """Score the EMA generator (every process makes a share of the samples); a best score
        writes checkpoint-best.pt and generator-best.safetensors."""
        sampler = output_generator()
        scores = tracker.evaluate(sampler, cur_nimg)
        if not process.is_main:
            return
        value = scores[tracker.column]
        epoch = cur_nimg / len(data)
        log.write_row(step=step, kimg=round(cur_nimg / 1000, 4), epoch=round(epoch, 4),
                      seconds=round(elapsed_before + time.time() - start_time, 2), **scores)
        note = ""
        if tracker.is_best(value):
            summary["best"] = tracker.record_best(value, step, cur_nimg, epoch)
            save_checkpoint(checkpoint_state(), run_dir / "checkpoint-best.pt")
            save_generator(sampler, g_kwargs, run_dir / "generator-best.safetensors",
                           extra={**generator_metadata(), tracker.column: value})
            note = " (best)"
        elif tracker.best is not None:
            note = f" (best {tracker.best['value']:.3f} at {tracker.best['kimg']:g} kimg)"
        summary["metric_seconds"] = round(tracker.seconds_spent, 2)
        plot_metrics(run_dir / "metrics.csv", run_dir)
        also = "".join(f", {key.replace('_', '-').upper().replace('-FAST', '-fast')} {score:.3f}"
                       for key, score in scores.items() if key != tracker.column)
        progress.write(f"{tracker.title} {value:.3f}{also} at {cur_nimg / 1000:.1f} kimg{note}")

    # Train.
    progress = tqdm(total=None if math.isinf(total_nimg) else int(total_nimg), initial=cur_nimg,
                    unit="img", unit_scale=True, dynamic_ncols=True, disable=not (show_progress and process.is_main))
    start_time = time.time()
    agreed_seconds = elapsed_before  # rank 0's clock as of the last step (torchrun)
    tick_time, tick_nimg = start_time, cur_nimg
    if tracker is not None:
        tracker.start(cur_nimg)
    epoch_rows: list[dict] = []
    current_epoch = stream.epoch
    stop_reason = "length reached"
    signals = StopSignals().__enter__()  # left in `finally` below
    try:
        while cur_nimg < total_nimg:
            log_now = (step + 1) % config.log_every == 0
            loss_problem = ""  # rank 0: the non-finite losses of this step's row, if any

            # Learning rates (constant, or decayed) and instance noise (annealed) over the run's length
            # (under torchrun by rank 0's clock, so that every process takes the same rates).
            if config.lr_decay != "none" or config.instance_noise:
                seconds = agreed_seconds if process.distributed else elapsed_before + time.time() - start_time
                done = run_fraction(cur_nimg, total_nimg, seconds, deadline)
                schedule = config.lr_decay
                if schedule == "auto":  # decided once, at the decay's start, and kept in the summary
                    if "lr_decay_auto" not in summary and done >= config.lr_decay_start:
                        summary["lr_decay_auto"] = auto_decision(cur_nimg, done)
                        if process.is_main and show_progress:
                            progress.write(describe_decision(summary["lr_decay_auto"]))
                    schedule = summary.get("lr_decay_auto", {}).get("schedule", "none")
                factor = lr_factor(schedule, done, config.lr_decay_start)
                opt_G.param_groups[0]["lr"], opt_D.param_groups[0]["lr"] = config.lr_g * factor, config.lr_d * factor
                loss.instance_noise = config.instance_noise * (1.0 - done)
                if log_now and config.instance_noise:
                    log.report("instance_noise", loss.instance_noise)

            # Discriminator phase: n_dis batches; G's last batch of fakes is kept for the G phase.
            D.requires_grad_(True)
            for k in range(config.n_dis):
                real, real_labels = next(stream)
                z = torch.randn(real.shape[0], config.z_dim, device=device)
                fake_labels = None  # conditional: classes drawn uniformly
                if num_classes:
                    fake_labels = torch.randint(num_classes, (real.shape[0],), device=device)
                else:
                    real_labels = None
                with torch.set_grad_enabled(k == config.n_dis - 1), precision.autocast():
                    fake = G_train(z, fake_labels)
                opt_D.zero_grad(set_to_none=True)
                d_losses = loss.discriminator_step(real, fake, d_step, scaler, real_labels, fake_labels)
                for name, value in d_losses.items():
                    log.report(name, value)
                distributed.all_reduce_grads(D, process)
                if log_now and k == config.n_dis - 1:
                    scaler.unscale_(opt_D)  # the norm of the true gradients, not the loss-scaled ones
                    log.report("grad_norm_d", _grad_norm(D))
                scaler.step(opt_D)
                scaler.update()  # after every optimizer step: GradScaler allows one step per update
                d_step += 1

            # Generator phase.
            D.requires_grad_(False)
            opt_G.zero_grad(set_to_none=True)
            for name, value in loss.generator_step(fake, scaler, real=real, fake_labels=fake_labels,
                                                   real_labels=real_labels).items():
                log.report(name, value)
            distributed.all_reduce_grads(G, process)
            if log_now:
                scaler.unscale_(opt_G)
                log.report("grad_norm_g", _grad_norm(G))
            scaler.step(opt_G)
            scaler.update()
            step += 1
            cur_nimg += images_per_step
            progress.update(images_per_step)

            # Update EMA.
            beta = 0.0
            if G_ema is not None:
                beta = ema_beta(config.batch_size * process.world_size, config.ema_kimg, cur_nimg, config.ema_rampup)
                update_ema(G_ema, G, beta)

            # Log statistics.
            if log_now:
                now = time.time()
                row = log.flush(step=step, kimg=round(cur_nimg / 1000, 4), epoch=round(cur_nimg / len(data), 4),
                                seconds=round(elapsed_before + now - start_time, 2),
                                lr_g=opt_G.param_groups[0]["lr"], lr_d=opt_D.param_groups[0]["lr"],
                                ema_beta=beta, images_per_s=(cur_nimg - tick_nimg) / max(now - tick_time, 1e-9))
                tick_time, tick_nimg = now, cur_nimg
                if process.is_main:
                    if not (math.isfinite(row["loss_d"]) and math.isfinite(row["loss_g"])):
                        loss_problem = f"L_D={row['loss_d']}, L_G={row['loss_g']}"
                    epoch_rows.append(row)
                    progress.set_postfix_str(
                        f"L_D={row['loss_d']:.3f} L_G={row['loss_g']:.3f} D(x)={row['d_real']:.2f} "
                        f"D(G(z))={row['d_fake']:.2f}/{row['d_fake_g']:.2f} {row['images_per_s']:.0f} img/s",
                        refresh=False)

            # One line per epoch.
            if stream.epoch != current_epoch:
                if process.is_main and epoch_rows:
                    mean = {k: sum(r[k] for r in epoch_rows) / len(epoch_rows)
                            for k in ("loss_d", "loss_g", "d_real", "d_fake", "d_fake_g", "images_per_s")}
                    progress.write(f"epoch {current_epoch + 1}: L_D {mean['loss_d']:.3f}  L_G {mean['loss_g']:.3f}  "
                                   f"D(x) {mean['d_real']:.2f}  D(G(z)) {mean['d_fake']:.2f} / {mean['d_fake_g']:.2f}  "
                                   f"{mean['images_per_s']:.0f} img/s  ({cur_nimg / 1000:.1f} kimg)")
                current_epoch, epoch_rows = stream.epoch, []

            # Decide, all processes together, whether to stop (time, divergence, SIGTERM or Ctrl-C)
            # and whether to score the generator now: rank 0's clock and losses, anyone's signal.
            own_seconds = elapsed_before + time.time() - start_time
            own_out_of_time = own_seconds >= deadline
            metric_due = (tracker is not None and process.is_main
                          and tracker.due(cur_nimg, final=cur_nimg >= total_nimg or own_out_of_time))
            out_of_time, diverged, signalled, evaluate_now, agreed_seconds = stop_vote(
                own_out_of_time, bool(loss_problem), signals.received is not None, metric_due,
                seconds=own_seconds, distributed=process.distributed, is_main=process.is_main, device=device)
            if diverged:
                raise TrainingDiverged(f"training diverged at step {step} ({loss_problem or 'a non-finite loss'}); "
                                       f"{run_dir / 'checkpoint-last.pt'} holds the last good state")
            if signalled:
                take_snapshot()
                stop_reason = f"stopped by {signals.received or 'a signal to another process'}"
                break

            # Evaluate metrics.
            if evaluate_now:
                evaluate_metric()

            # Save snapshot.
            if cur_nimg >= next_snapshot or cur_nimg >= total_nimg or out_of_time:
                take_snapshot()
                next_snapshot = (cur_nimg // snapshot_nimg + 1) * snapshot_nimg
            if out_of_time:
                stop_reason = f"time budget of {config.minutes:g} minutes reached"
                break
    except KeyboardInterrupt:  # a second Ctrl-C: no checkpoint of this step
        stop_reason = "interrupted"
        progress.write(f"interrupted at step {step}; resume from {run_dir}")
    finally:
        signals.__exit__()
        progress.close()
        log.close()
    if stop_reason.startswith("stopped by") and process.is_main:
        progress.write(f"{stop_reason} at step {step}: checkpoint-last.pt saved; resume with "
                       f"dcgan train --resume {run_dir}")

    # Write the final artifacts; under torchrun, check that every process ends with the same weights.
    seconds = elapsed_before + time.time() - start_time
    identical = distributed.weights_identical([G, D], process) if stop_reason != "interrupted" else None
    if process.is_main and process.distributed and identical is not None:
        summary["processes"] = {"count": process.world_size, "weights_identical": identical}
        if not identical:
            progress.write("warning: the processes ended with different weights (a non-deterministic all-reduce "
                           "or a rank that skipped a step); checkpoint-last.pt holds rank 0's")
    if process.is_main and stop_reason != "interrupted":
        write_real_vs_fake(data, generate_from_latents(output_generator(), fixed_z, labels=fixed_labels),
                           run_dir / "real_vs_fake.png", nrow=grid_columns, labels=fixed_labels)
        summary.update(step=step, kimg=round(cur_nimg / 1000, 3), epoch=round(cur_nimg / len(data), 3),
                       seconds=round(seconds, 1), stop_reason=stop_reason)
        if tracker is not None:
            summary.update(metric_fraction=round(tracker.seconds_spent / max(seconds, 1e-9), 4),
                           metric_protocol=tracker.describe())
        write_json(run_dir / "summary.json", summary)
        print(f"done: {step} steps, {cur_nimg / 1000:.1f} kimg in {seconds / 60:.1f} min ({stop_reason}); "
              f"run folder {run_dir}")
        if tracker is not None and tracker.best is not None:
            best = tracker.best
            print(f"best {tracker.title} {best['value']:.3f} at step {best['step']} ({best['kimg']:g} kimg, "
                  f"epoch {best['epoch']:g}): checkpoint-best.pt; {tracker.seconds_spent / max(seconds, 1e-9):.1%} "
                  f"of the time went to evaluation")
    distributed.shutdown(process)
    return run_dir if process.is_main else None


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


def keep_snapshot(run_dir: Path, cur_nimg: int, keep: int) -> None:
    """checkpoint-last.pt also as checkpoint-kimgNNNNNN.pt (a hard link where the file system has
    them, else a copy), and only the newest `keep` of those kept."""
    import shutil

    from dcgan.files import atomic_write

    path = run_dir / f"checkpoint-kimg{cur_nimg // 1000:06d}.pt"
    path.unlink(missing_ok=True)
    try:
        os.link(run_dir / "checkpoint-last.pt", path)
    except OSError:
        atomic_write(path, lambda tmp: shutil.copyfile(run_dir / "checkpoint-last.pt", tmp))
    for old in sorted(run_dir.glob("checkpoint-kimg*.pt"))[:-keep]:
        old.unlink(missing_ok=True)


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


def _grad_norm(module: torch.nn.Module) -> torch.Tensor:
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])) if grads else torch.zeros(())


