"""What the benchmark scripts share: scoring images against a dataset's test split with both
extractors (Inception and the fast one) under one protocol, what a results file records about its
figures (the machine, the precision, the command line, the scoring protocol), and writing
results.json/results.md.

The scripts import it by name (`python benchmarks/X.py` puts this folder on the path).
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from collections.abc import Iterable
from pathlib import Path

import torch

from dcgan.files import write_json, write_text

REPO = Path(__file__).resolve().parents[1]
SHA256 = re.compile(r"^[0-9a-f]{64}$")


class HeldOut:
    """The test split of `data_root` (an image folder with train/ and test/), some classes of it,
    with its Inception and fast-extractor statistics (cached); `score` reads generated images."""

    def __init__(self, data_root: str, classes: list[str]):
        from dcgan.metrics.evaluate import load_extractor
        from dcgan.metrics.reference import RealSource, data_identity, reference_features

        test = RealSource("folder", str(Path(data_root) / "test"), "train", classes)
        self.data = test.load()
        self.extractors = {
            "inception": load_extractor("inception", allow_download=False),
            "fast": load_extractor("fast", source=RealSource("folder", str(Path(data_root) / "train")),
                                   resolution=self.data.resolution, channels=self.data.channels)}
        self.references = {kind: reference_features(extractor, test, self.data)
                           for kind, extractor in self.extractors.items()}
        # The reference as the protocol records it: the folder read whole is the data's test split.
        self.reference = {**data_identity(test, self.data), "name": f"the test split of {data_root}",
                          "data_root": str(Path(data_root).expanduser().resolve()), "split": "test"}

    def protocol(self, metrics: dict[str, list[str]], num_gen: int, **generated) -> dict:
        """The scoring protocol of `score` for results.json: both extractors (name, weights, SHA-256),
        the `num_gen` generated images of seeds 0..num_gen-1 (`generated`: how else they were made)
        and the reference with its split."""
        from dcgan.metrics import MetricOptions
        from dcgan.metrics.evaluate import metric_protocol

        protocol = {"metrics": metrics,
                    "feature_extractors": [extractor_protocol(extractor) for extractor in self.extractors.values()],
                    "generated": {"num_images": num_gen, "seeds": f"0-{num_gen - 1}",
                                  "latents": "image i: randn(z_dim) from a generator seeded with i", **generated},
                    "reference": self.reference}
        named = {name for names in metrics.values() for name in names}  # metrics is {extractor kind: names}
        kind = "inception" if "inception" in metrics else "fast"
        return {**protocol, **metric_protocol(named, MetricOptions(), kind)}

    def score(self, images: torch.Tensor, metrics: dict[str, list[str]], desc: str) -> dict[str, float]:
        """uint8 (N, C, H, W) images -> {score: value}, `metrics[kind]` on each extractor's features."""
        from dcgan.metrics import compute_scores
        from dcgan.metrics.features import extract_features, image_batches

        scores = {}
        for kind, extractor in self.extractors.items():
            features = extract_features(extractor, image_batches(images, 64), len(images), keep_logits=False,
                                        desc=f"{desc} {kind}")
            scores.update(compute_scores(metrics[kind], features, self.references[kind], kind))
        return scores


def check_results_folder(out: str | Path) -> Path:
    """`--out`, once it is safe to write a benchmark's results there: new, empty or a results folder
    a benchmark wrote before (a results.json, a runs/ folder of its training runs, a scores/ folder of
    its evaluations, or the peers.
    entry folders with their trained.json), which it then adds to. A file, a link or a folder of
    other files is one line and exit 1, with nothing written."""
    out = Path(out)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise SystemExit(f"--out {out} is {'a symbolic link' if out.is_symlink() else 'a file'}; name a folder for "
                         f"the results")
    ours = (out / "results.json").is_file() or (out / "runs").is_dir() or (out / "scores").is_dir() \
        or any(out.glob("*/trained.json"))
    if out.is_dir() and any(out.iterdir()) and not ours:
        raise SystemExit(f"--out {out} holds files that are not a benchmark's results (no results.json); name a new "
                         f"or empty folder")
    return out


# ----------------------------------------------------------------------------------------------
# What a results file records about its figures: where and how they were made.

def command_line() -> str:
    """This script's command line: its path as in the repository (`benchmarks/X.py`, whichever
    interpreter ran it and wherever from) and its arguments, quoted where a shell needs it."""
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(REPO)
    except ValueError:  # a copy outside the repository: its path as typed
        pass
    return shlex.join([str(script), *sys.argv[1:]])


def derived_precision(environment: dict, config: dict) -> str | None:
    """The precision a run folder written before environment.json named it trained in, as
    `resolve_precision` picked it from its config (--precision, --amp) and its recorded device and
    CPU; None where they do not settle it."""
    requested = config.get("precision")
    if requested is None:
        return None
    if str(environment.get("device", "")).startswith("cuda"):
        return "fp16" if config.get("amp") else "bf16" if requested == "bf16" else "fp32"
    if environment.get("device", "cpu") != "cpu":
        return "fp32"
    cpu = str(environment.get("cpu", ""))
    if requested == "fp32":
        return "fp32"
    if "with bf16" in cpu:  # cpu_name's mark of native bf16 (AVX512-BF16)
        return "bf16"
    if "(AVX-512," in cpu or "(AVX2," in cpu:  # an x86 CPU without it: bf16 falls back to fp32
        return "fp32"
    return None  # another CPU (an Arm one may have bf16 that cpu_name does not show)


def run_environment(run: str | Path) -> dict:
    """Where and how a `dcgan train` run folder trained, from its environment.json: `machine` (its
    GPU, else its CPU), `precision` (fp32, bf16, fp16) and the `command`. A folder written before
    environment.json named its precision gets it from its config and CPU (`precision_derived`);
    a folder that records neither is one line and exit 1: a results file never guesses."""
    run = Path(run)
    try:
        environment = json.loads((run / "environment.json").read_text())
        config = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else {}
    except (OSError, ValueError) as error:
        raise SystemExit(f"{run}: cannot read what the run recorded about its machine ({error})") from None
    machine = environment.get("gpu") or environment.get("cpu")
    precision = environment.get("precision")
    facts = {"machine": machine, "precision": precision, "command": environment.get("command")}
    if not precision:
        facts["precision"] = derived_precision(environment, config)
        facts["precision_derived"] = ("from config.json and the recorded device and CPU (environment.json "
                                      "predates its precision)")
    if not machine or not facts["precision"]:
        raise SystemExit(f"{run}/environment.json does not record the {'machine' if not machine else 'precision'} "
                         f"the run trained on; a results file will not guess it")
    return facts


def recorded_machine(machines: Iterable[str | None], what: str = "the runs") -> str | list[str]:
    """The `machine` of a results file from what its runs recorded: the one machine, or all of them
    (sorted) where they differ. None recorded is one line and exit 1."""
    found = sorted({machine for machine in machines if machine})
    if not found:
        raise SystemExit(f"{what} recorded no machine; a results file will not guess it")
    return found[0] if len(found) == 1 else found


def recorded_precision(precisions: Iterable[str | None], what: str = "the runs") -> list[str]:
    """The `precision` of a results file: every precision its runs recorded, sorted."""
    found = sorted({precision for precision in precisions if precision})
    if not found:
        raise SystemExit(f"{what} recorded no precision; a results file will not guess it")
    return found


def extractor_protocol(extractor) -> dict:
    """A feature extractor's entry in a protocol, as `dcgan evaluate` records it: name, kind, the
    weights file and its SHA-256 (Inception: the file `find_weights` resolved; the fast extractor:
    its file), features and resize. `extractor`: a loaded one, or the entry an evaluation record
    holds (`record["protocol"]["feature_extractor"]`), checked."""
    entry = dict(extractor) if isinstance(extractor, dict) else extractor.describe()
    if not entry.get("name") or not SHA256.match(str(entry.get("weights_sha256", ""))):
        raise ValueError(f"extractor {entry.get('name')!r} does not give its weights' SHA-256")
    return entry


def write_results(out: Path, args, table: str, *, machine: str | list[str] | dict, precision: list[str],
                  command: str, protocol: dict, **payload) -> None:
    """results.json (the arguments, `machine`, `precision`, `command`, `protocol` and `payload`) and
    results.md (`table`) in `out`; the table printed. Nothing is written without the four: the
    machine (a CPU model or GPU, or all of them), the precisions the measured runs used, the command
    line (`command_line()`) and the protocol (what was scored or timed, and how)."""
    missing = [name for name, value in (("machine", machine), ("precision", precision), ("command", command),
                                        ("protocol", protocol)) if not value]
    if missing:
        raise ValueError(f"a results file records {', '.join(missing)}: not written without")
    if not isinstance(precision, list) or not all(isinstance(p, str) for p in precision):
        raise ValueError(f"precision is a list of names (fp32, bf16, ...), not {precision!r}")
    if not isinstance(protocol, dict):
        raise ValueError(f"protocol is a mapping, not {protocol!r}")
    document = {"args": {k: str(v) for k, v in vars(args).items()}, "machine": machine, "precision": precision,
                "command": command, "protocol": protocol, **payload}
    write_json(out / "results.json", document)
    write_text(out / "results.md", table)
    print(table)
