"""Scores during training: `--metric fid-fast|fid` (with `is-fast|is`) on a schedule, and the best checkpoint.

The tracker scores the EMA generator on the same `metric_samples` seeds each time (so scores
differ only through the weights) against the statistics of the training images, computed once
and cached; a conditional generator draws each image's class from its seed (uniform over the
classes). `--metric fid-fast,is-fast` also scores the Inception Score of the same images (the
fast extractor's classifier logits), and `pr-fast` their precision and recall, logged beside the
FID; the FID alone picks the best checkpoint. Under torchrun every process builds a tracker and,
at each evaluation (rank 0 decides when), makes and extracts the features of its share of the
seeds (rank r: seeds r, r + W, ...); rank 0 gathers them in seed order and scores them, so the
scores are those of one process and no rank idles in a collective while rank 0 works alone. It
draws no random numbers from torch's global generator, so tracking a metric does not change the
training run. It tells the loop whether a score is the best so far; the loop then writes
checkpoint-best.pt and generator-best.safetensors.
"""

from __future__ import annotations

import math
import time

import torch

from dcgan.config import TrainConfig, parse_interval
from dcgan.data import ImageData
from dcgan.metrics import MetricOptions, compute_scores, score_key, score_names, score_title
from dcgan.metrics.evaluate import check_metrics_fit, load_extractor
from dcgan.metrics.features import FeatureSet, extract_features, generated_batches
from dcgan.metrics.reference import RealSource, reference_features
from dcgan.training.distributed import ProcessInfo, gather_rows

WARN_FRACTION = 0.1


class MetricTracker:
    def __init__(self, config: TrainConfig, data: ImageData, device: torch.device, summary: dict,
                 process: ProcessInfo | None = None, progress: bool = True):
        self.process = process or ProcessInfo()
        names = config.tracked_metrics
        self.kind = "fast" if names[0] == "fid-fast" else "inception"
        self.metrics = ["fid"] + [name.removesuffix("-fast") for name in names[1:]]  # + is, pr
        self.column = score_key("fid", self.kind)  # fid or fid_fast
        self.title = score_title("fid", self.kind)
        self.samples = config.metric_samples
        self.unit, self.every = parse_interval(config.metric_every)
        # The fast extractor learns from all classes of the dataset; the reference is the training data.
        whole_dataset = RealSource(config.dataset, config.data_root, "train", [], config.download)
        self.extractor = load_extractor(self.kind, inception_weights=config.inception_weights or None,
                                        fast_extractor=config.fast_extractor or None, source=whole_dataset,
                                        resolution=data.resolution, channels=data.channels, device=device,
                                        progress=progress)
        check_metrics_fit(self.metrics, self.extractor)
        training_data = RealSource(config.dataset, config.data_root, config.split, config.classes, config.download)
        self.reference = reference_features(self.extractor, training_data, data, progress=progress) \
            if self.process.is_main else None
        # A best of another score (metric, samples, extractor weights, reference data) means nothing here.
        self.best: dict | None = summary.get("best")
        self.previous_best: dict | None = None
        if self.best is not None and self.process.is_main and not self.same_protocol(self.best):
            self.previous_best, self.best = self.best, None
        self.seconds_spent = float(summary.get("metric_seconds", 0.0))
        self.warned = False
        self.next_nimg = 0
        self.last_time = time.monotonic()

    def start(self, cur_nimg: int) -> None:
        """Call when the loop starts (or resumes): the schedule counts from here."""
        self.last_time = time.monotonic()
        self.schedule_next(cur_nimg)

    def schedule_next(self, cur_nimg: int) -> None:
        if self.unit == "kimg":
            every_nimg = max(1, round(self.every * 1000))  # whole images: no float drift over a long run
            self.next_nimg = (cur_nimg // every_nimg + 1) * every_nimg

    def due(self, cur_nimg: int, final: bool) -> bool:
        if final:
            return True
        if self.unit == "kimg":
            return cur_nimg >= self.next_nimg
        return time.monotonic() - self.last_time >= self.every

    def evaluate(self, generator: torch.nn.Module, cur_nimg: int) -> dict[str, float] | None:
        """Score `generator` now: FID (or FID-fast) of `metric_samples` images against the training
        data, and their IS where tracked: {column: value}, the FID under `self.column`. Under
        torchrun every process calls it (a collective); ranks other than 0 get None."""
        start = time.monotonic()
        seeds = range(self.process.rank, self.samples, self.process.world_size)
        part = extract_features(self.extractor, generated_batches(generator, seeds, 64), len(seeds), progress=False)
        features = gather_rows(part.features, self.process)
        logits = gather_rows(part.logits, self.process)
        if not self.process.is_main:
            return None
        generated = FeatureSet.from_features(features, logits)
        scores = compute_scores(self.metrics, generated, self.reference, self.kind,
                                MetricOptions(is_splits=min(10, self.samples),
                                              kid_subset_size=min(1000, self.samples, self.reference.count)))
        scores = {key: value for key, value in scores.items() if not key.endswith("_std")}
        seconds = time.monotonic() - start
        self.seconds_spent += seconds
        self.schedule_next(cur_nimg)
        if self.unit == "seconds" and seconds > WARN_FRACTION * self.every and not self.warned:
            self.warned = True
            print(f"note: one {self.title} evaluation took {seconds:.0f} s, {seconds / self.every:.0%} of the "
                  f"--metric-every interval; pass a longer --metric-every or fewer --metric-samples", flush=True)
        self.last_time = time.monotonic()
        return scores

    def is_best(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        return self.best is None or value < self.best["value"]  # FID: lower is better

    def protocol(self) -> dict:
        """What a best score is comparable by: the score, the samples, the extractor's weights and
        the reference images (rank 0, which holds the reference)."""
        return {"metric": self.column, "samples": self.samples, "feature_extractor": self.extractor.describe()["name"],
                "weights_sha256": self.extractor.identity()["weights_sha256"],
                "reference_images_sha256": self.reference.metadata["data"]["images_sha256"]}

    def same_protocol(self, best: dict) -> bool:
        return all(best.get(key) == value for key, value in self.protocol().items())

    def record_best(self, value: float, step: int, cur_nimg: int, epoch: float) -> dict:
        self.best = {"value": value, "step": step, "kimg": round(cur_nimg / 1000, 3), "epoch": round(epoch, 3),
                     **self.protocol()}
        return self.best

    def describe(self) -> dict:
        """The tracking protocol, for summary.json."""
        also = [score_key(score, self.kind) for metric in self.metrics[1:] for score in score_names(metric)]
        return {"metric": self.column, "also": also, "every": f"{self.every:g} {self.unit}", "samples": self.samples,
                "seeds": f"0-{self.samples - 1}", "reference_images": self.reference.count,
                "feature_extractor": self.extractor.describe()}
