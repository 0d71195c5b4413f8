"""Compare trained generators on a cheap, data-only statistic until Inception FID lands.

For each run, 2,000 images (seeds 0-1999, EMA weights) against held-out real images: the
Fréchet distance of 8x8 area-pooled pixels (`pixel-FD-8`, lower is better). It is NOT FID: it sees
colour layout and coarse shape, not object identity, and is reported only under its own name.

    python benchmarks/compare_runs.py --data-root /path/cifar10/test --classes automobile runs/A runs/B
"""

from __future__ import annotations

import argparse

from dcgan.checkpoint import load_generator
from dcgan.data import load_dataset
from dcgan.metrics.frechet import pixel_frechet_distance
from dcgan.sampling import generate_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders or generator files")
    parser.add_argument("--data-root", required=True, help="image folder of held-out real images")
    parser.add_argument("--classes", default="", help="comma-separated class names")
    parser.add_argument("--num", type=int, default=2000)
    args = parser.parse_args()
    classes = [c for c in args.classes.split(",") if c]
    real = load_dataset("folder", args.data_root, classes=classes).images
    print(f"{len(real)} real images from {args.data_root} {classes or ''}")
    for run in args.runs:
        generator, _ = load_generator(run)
        fake = generate_images(generator, range(args.num))
        print(f"{run}: pixel-FD-8 = {pixel_frechet_distance(fake, real):.4f}")


if __name__ == "__main__":
    main()
