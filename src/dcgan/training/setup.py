"""What the training loop builds before its first step: the data, the networks with their
optimizers and loss, the metric tracker and the run folder.

Each function takes what it needs as arguments and returns what it built; `loop.train` calls them
in order. The order matters for exact resume and for seeded runs being reproducible: the networks
are built right after `torch.manual_seed(config.seed)`, and nothing here draws from the run's
random numbers after that (the tracker builds its networks under `fork_rng`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch

from dcgan.augment import Augmenter
from dcgan.checkpoint import load_checkpoint
from dcgan.config import TrainConfig
from dcgan.data import BatchStream, ImageData, load_dataset
from dcgan.devices import physical_cores
from dcgan.errors import UserError
from dcgan.files import RunFolderLock, remove_stale_temp_files, write_json, write_text
from dcgan.losses import GANLoss
from dcgan.models import build_discriminator, build_generator, discriminator_kwargs, generator_kwargs
from dcgan.training import distributed
from dcgan.training.distributed import ProcessInfo
from dcgan.training.precision import Precision
from dcgan.training.run_dir import check_outdir, count_parameters, environment_info, model_summary, new_run_dir
from dcgan.training.state import TrainingState
from dcgan.training.tracking import MetricTracker


def configure_device(config: TrainConfig, process: ProcessInfo, device: torch.device) -> None:
    """CPU threads shared among the processes of this machine; cuDNN autotuning and TF32 on CUDA."""
    if device.type == "cpu":
        torch.set_num_threads(config.threads or max(1, physical_cores() // process.world_size))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True


def training_data(config: TrainConfig, data: ImageData | None) -> tuple[ImageData, list[str]]:
    """The training images (loaded unless given) and, for a conditional run, the class names its
    labels 0..K-1 stand for (only the classes present in the data)."""
    if data is None:
        data = load_dataset(config.dataset, config.data_root, split=config.split, classes=config.classes,
                            resolution=config.resolution, channels=config.channels, download=config.download)
    if not config.conditional:
        return data, []
    data = data.with_present_classes()
    if len(data.class_names) < 2:
        raise UserError(f"--conditional needs at least two classes; the data holds one ({data.class_names[0]})")
    return data, data.class_names


@dataclass
class Networks:
    """The networks, their optimizers and the loss of one run, and how they were built."""

    G: torch.nn.Module
    D: torch.nn.Module
    G_ema: torch.nn.Module | None
    G_train: torch.nn.Module  # G, or G compiled with --compile: what the step calls
    d_trainable: list[torch.nn.Parameter]  # D's parameters but those --freeze-d keeps fixed
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    augmenter: Augmenter
    loss: GANLoss
    precision: Precision
    g_kwargs: dict
    d_kwargs: dict

    def training_state(self, stream: BatchStream) -> TrainingState:
        return TrainingState(G=self.G, D=self.D, G_ema=self.G_ema, opt_G=self.opt_G, opt_D=self.opt_D,
                             scaler=self.scaler, augmenter=self.augmenter, loss=self.loss, stream=stream)


def build_networks(config: TrainConfig, data: ImageData, class_names: list[str], precision: Precision,
                   device: torch.device) -> Networks:
    """G, D and the EMA copy of G (on the CPU: a resumed state is loaded before they move), Adam for
    each, the gradient scaler, the augmentation pipeline and the loss."""
    g_kwargs = generator_kwargs(config, data.resolution, data.channels, class_names)
    d_kwargs = discriminator_kwargs(config, data.resolution, data.channels, len(class_names))
    G = build_generator(**g_kwargs)
    D = build_discriminator(**d_kwargs)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    G.to(memory_format=memory_format), D.to(memory_format=memory_format)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False) if config.ema_kimg > 0 else None
    d_trainable = trainable_discriminator_parameters(D, config.freeze_d)
    opt_G = torch.optim.Adam(G.parameters(), lr=config.lr_g, betas=(config.beta1, config.beta2))
    opt_D = torch.optim.Adam(d_trainable, lr=config.lr_d, betas=(config.beta1, config.beta2))
    scaler = torch.amp.GradScaler(device.type, enabled=precision.needs_scaler)
    augmenter = Augmenter(config.augment_policy(len(data)), p=config.augment_p, target=config.ada_target,
                          speed_kimg=config.ada_kimg)
    G_train, D_compiled = (torch.compile(G), torch.compile(D)) if config.compile else (G, None)
    loss = GANLoss(generator=G_train, discriminator=D, compiled_discriminator=D_compiled, loss=config.loss,
                   label_smoothing=config.label_smoothing, r1_gamma=config.r1_gamma, r2_gamma=config.r2_gamma,
                   r1_interval=config.r1_interval, gp_weight=config.gp_weight, lecam_weight=config.lecam_weight,
                   augment=augmenter, precision=precision, conditioning=config.conditional,
                   ac_weight=config.ac_weight)
    return Networks(G, D, G_ema, G_train, d_trainable, opt_G, opt_D, scaler, augmenter, loss, precision, g_kwargs,
                    d_kwargs)


def trainable_discriminator_parameters(D: torch.nn.Module, freeze: int) -> list[torch.nn.Parameter]:
    """D's parameters but those of its first `freeze` blocks, which are set not to need gradients."""
    if not freeze:
        return list(D.parameters())
    blocks = D.blocks()
    if freeze > len(blocks):
        raise UserError(f"--freeze-d {freeze}: this discriminator has {len(blocks)} blocks")
    frozen = {id(p) for block in blocks[:freeze] for module in block for p in module.parameters()}
    for p in D.parameters():
        if id(p) in frozen:
            p.requires_grad_(False)
    return [p for p in D.parameters() if id(p) not in frozen]


def move_to_device(nets: Networks, device: torch.device) -> None:
    """The networks and the optimizers' moments (restored on the CPU) onto the training device."""
    for module in (nets.G, nets.D, nets.G_ema):
        if module is not None:
            module.to(device)
    for state in (nets.opt_G.state, nets.opt_D.state):
        for moments in state.values():
            for key, value in moments.items():
                if torch.is_tensor(value) and key != "step":
                    moments[key] = value.to(device)


def build_tracker(config: TrainConfig, data: ImageData, device: torch.device, summary: dict,
                  process: ProcessInfo, run_dir: Path | None, show_progress: bool) -> MetricTracker | None:
    """The `--metric` tracker, before any file is written. Rank 0 first (it may train the fast
    extractor or find Inception's weights, and computes the training data's statistics, cached as
    it goes), then the others, which generate and score their share of the samples at each
    evaluation. They wait for rank 0 on the process group's store, not in a collective, so its
    set-up may take hours without timing them out."""
    if not config.metric:
        return None
    tracker = None
    with torch.random.fork_rng(devices=[]):  # Building networks draws random numbers: not from the run's.
        if process.is_main:
            try:
                tracker = MetricTracker(config, data, device, summary, process, progress=show_progress)
            except UserError as error:
                distributed.announce("tracker", str(error), process)
                raise
            distributed.announce("tracker", "", process)
        else:
            problem = distributed.wait_for_announcement("tracker", process)
            if problem:
                raise UserError(f"rank 0 could not set up --metric: {problem}")
            tracker = MetricTracker(config, data, device, summary, process, progress=False)
    differing = distributed.same_everywhere(tracker.extractor.identity()["weights_sha256"], process)
    if differing is not None:  # each node finds (or trains) its own fast extractor or Inception file
        raise UserError(f"the processes score with different {tracker.extractor.label} weights (sha256 "
                        f"{', '.join(sorted({d[:12] for d in differing}))} across ranks): pass one file to all of "
                        f"them (--fast-extractor FILE or --inception-weights FILE on a shared path)")
    if tracker.previous_best is not None:
        summary["previous_best"] = summary.pop("best")
        print(f"the tracked score is not the one the run's best was measured with "
              f"({describe_protocol(tracker.previous_best, tracker.protocol())}): the best starts again, and "
              f"checkpoint-best.pt is replaced at the next evaluation", flush=True)
    if process.is_main and run_dir is not None and (run_dir / "checkpoint-best.pt").is_file():
        best_on_disk = load_checkpoint(run_dir / "checkpoint-best.pt")["summary"].get("best")
        if (best_on_disk and tracker.same_protocol(best_on_disk)
                and (tracker.best is None or best_on_disk["value"] < tracker.best["value"])):
            tracker.best = summary["best"] = best_on_disk  # Killed after a best, before the last save.
    return tracker


def describe_protocol(old: dict, new: dict) -> str:
    """'samples 2000 -> 5000, metric fid_fast -> fid': what differs between two best records."""
    changes = [f"{key.replace('_sha256', '')} {str(old.get(key))[:12]} -> {str(value)[:12]}"
               for key, value in new.items() if old.get(key) != value]
    return ", ".join(changes)


def prepare_run_dir(config: TrainConfig, run_dir: Path | None, *, resumed: bool, nets: Networks, data: ImageData,
                    device: torch.device, lock: RunFolderLock | None = None) -> tuple[Path, RunFolderLock]:
    """The run folder (a new numbered one unless resuming), locked for this process before anything
    in it is touched, with config.json; a new run also gets environment.json, model_summary.txt and
    model.json. Rank 0 only. `lock`: the folder's lock, taken by a caller that read the folder first."""
    if run_dir is None:
        check_outdir(config)
        run_dir = new_run_dir(config.outdir, config.dataset, config.preset)
    lock = lock or RunFolderLock(run_dir)
    (run_dir / "samples").mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(run_dir)  # left by a process killed mid-write
    write_json(run_dir / "config.json", config.to_dict())
    if not resumed:
        write_json(run_dir / "environment.json", {**environment_info(device), "precision": nets.precision.name,
                                                  "precision_reason": nets.precision.reason})
        write_text(run_dir / "model_summary.txt",
                   model_summary(nets.G, nets.D, config.z_dim, data.resolution, data.channels))
        write_json(run_dir / "model.json", {
            "generator_kwargs": nets.g_kwargs, "discriminator_kwargs": nets.d_kwargs,
            "generator_parameters": count_parameters(nets.G), "discriminator_parameters": count_parameters(nets.D),
            "dataset_images": len(data), "class_names": data.class_names})
    return run_dir, lock
