"""What the benchmark scripts share: scoring images against a dataset's test split with both
extractors (Inception and the fast one) under one protocol, and writing results.json/results.md.

The scripts import it by name (`python benchmarks/X.py` puts this folder on the path).
"""

from __future__ import annotations

from pathlib import Path

import torch

from dcgan.files import write_json, write_text


class HeldOut:
    """The test split of `data_root` (an image folder with train/ and test/), some classes of it,
    with its Inception and fast-extractor statistics (cached); `score` reads generated images."""

    def __init__(self, data_root: str, classes: list[str]):
        from dcgan.metrics.evaluate import load_extractor
        from dcgan.metrics.reference import RealSource, reference_features

        test = RealSource("folder", str(Path(data_root) / "test"), "train", classes)
        self.data = test.load()
        self.extractors = {
            "inception": load_extractor("inception", allow_download=False),
            "fast": load_extractor("fast", source=RealSource("folder", str(Path(data_root) / "train")),
                                   resolution=self.data.resolution, channels=self.data.channels)}
        self.references = {kind: reference_features(extractor, test, self.data)
                           for kind, extractor in self.extractors.items()}

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


def write_results(out: Path, args, table: str, **payload) -> None:
    """results.json (the arguments and `payload`) and results.md (`table`) in `out`; the table printed."""
    document = {"args": {k: str(v) for k, v in vars(args).items()}, **payload}
    write_json(out / "results.json", document)
    write_text(out / "results.md", table)
    print(table)
