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


def write_results(out: Path, args, table: str, **payload) -> None:
    """results.json (the arguments and `payload`) and results.md (`table`) in `out`; the table printed."""
    document = {"args": {k: str(v) for k, v in vars(args).items()}, **payload}
    write_json(out / "results.json", document)
    write_text(out / "results.md", table)
    print(table)
