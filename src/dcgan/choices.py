"""Every list of choices a flag takes, declared once, with the few words `--help` shows for each.

`config.py` validates against these lists and builds the help texts from them; the commands and the
implementations read them too: `losses.LOSS_FUNCTIONS`, the networks in `models/dcgan.py`,
`augment.AUGMENTATIONS`, the loaders in `data.py`, the schedules in `training/schedule.py`,
autocast in `training/precision.py`, the sinks in `training/report.py`, the metrics in `metrics/`
(tests/test_config.py checks that each implements exactly its list). This module imports nothing,
so that building the command line's parser stays light: torch loads only once a command runs.
"""

from __future__ import annotations

DATASETS = ("cifar10", "cifar100", "mnist", "fashion-mnist", "celeba", "folder")  # torchvision's, or a folder
LOSSES = {"bce": "non-saturating", "hinge": "", "wgan-gp": "", "rpgan": "relativistic pairing, R3GAN"}
G_NORMS = {"batch": "", "instance": "", "none": ""}
D_NORMS = {"batch": "", "none": ""}
G_OUTPUTS = {"deconv": "Radford's 4x4 transposed conv", "conv3x3": "SNGAN"}
CONDITIONINGS = {"projection": "label embedding in G, projection D", "acgan": "an auxiliary classifier head on D"}
AUGMENTS = ("color", "translation", "cutout")  # DiffAugment's operations
LR_DECAYS = ("none", "linear", "cosine", "auto")  # `auto` decides by the run's expected length
PRECISIONS = {"auto": "bf16 where the CPU has native bf16, else fp32", "fp32": "", "bf16": ""}  # of training
WEB_PRECISIONS = ("auto", "float16", "float32")  # of a web export's ONNX weights
LOG_SINKS = ("tensorboard", "wandb")  # beside metrics.csv

# Metrics: the same names in `train --metric`, `evaluate --metrics` and the API; with FAST appended,
# the same metric on the fast extractor's features instead of Inception's.
METRIC_NAMES = ("fid", "kid", "is", "pr", "dc")
FAST = "-fast"
EXTRACTORS = ("inception", "fast")


def metric_vocabulary() -> list[str]:
    """Every metric name every command and the API take: fid, kid, is, pr, dc on Inception features
    and the same with -fast on the fast extractor's."""
    return [*METRIC_NAMES, *(f"{name}{FAST}" for name in METRIC_NAMES)]


def one_of(choices) -> str:
    """`a, b or c (what c is)`: a help text's list of the choices in a tuple or a {name: note} dict."""
    notes = choices if isinstance(choices, dict) else dict.fromkeys(choices, "")
    items = [f"{name} ({note})" if note else name for name, note in notes.items()]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def must_be_one_of(flag: str, value, choices) -> str:
    """The one-line message for a value outside its list."""
    return f"{flag} must be one of {', '.join(choices)}, not {value!r}"
