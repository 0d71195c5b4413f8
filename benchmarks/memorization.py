"""Does the memorization check catch copying, and does a generator copy? `dcgan.nearest` on:

- a generator (the shipped cars by default; `--checkpoint` adds runs, e.g. one trained far too
  long on a few dozen images), its images of seeds 0..N-1;
- calibration sets built from the same generator's images with a share of them replaced by
  training images (exact, with noise of 3 uint8 levels, or mirrored), so the number is seen to
  follow the share copied.

Every set is checked against the same training images, with the test images setting the bar.
results.md is the table; results.json records the machine that ran the check (in float32), the
command line, the protocol (the extractor with its weights' SHA-256, the images and their seeds, the
training images and their split, the test images that set the bar; each set's own where it differs)
and the rows under `results`.

    python benchmarks/memorization.py --data-root /tmp/cifar10 --classes automobile --num-gen 1000 \\
        --checkpoint runs/00001-folder-cpu-v1 --train cars64/ --test cars-test/ --out docs/results/memorization
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from dcgan.devices import machine_name
from held_out import check_results_folder, command_line, extractor_protocol, write_results


def copied(images: torch.Tensor, training: torch.Tensor, share: float, kind: str, seed: int = 0) -> torch.Tensor:
    """`images` with the first `share` of them replaced by random training images, changed by `kind`."""
    stream = torch.Generator().manual_seed(seed)
    count = round(share * len(images))
    picks = training[torch.randperm(len(training), generator=stream)[:count]]
    if kind == "noise":
        noise = torch.randn(picks.shape, generator=stream) * 3
        picks = (picks.float() + noise).round().clamp(0, 255).to(torch.uint8)
    elif kind == "mirrored":
        picks = picks.flip(-1)
    return torch.cat([picks, images[count:]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cifar10-cars")
    parser.add_argument("--checkpoint", action="append", default=[], help="a run to check as well (repeatable)")
    parser.add_argument("--train", action="append", default=[], help="the training folder of each --checkpoint")
    parser.add_argument("--test", action="append", default=[], help="the test folder of each --checkpoint")
    parser.add_argument("--fast-extractor", help="the fast extractor file (default: the dataset's, cached)")
    parser.add_argument("--data-root", required=True, help="an image folder with train/ and test/")
    parser.add_argument("--classes", default="", help="comma-separated classes")
    parser.add_argument("--features", default="fast", choices=("fast", "inception"))
    parser.add_argument("--num-gen", type=int, default=1000)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    check_results_folder(args.out)

    import dcgan
    from dcgan.metrics.reference import parse_reference
    from dcgan.sampling import save_grid

    classes = [c for c in args.classes.split(",") if c]
    root = Path(args.data_root)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    options = dict(features=args.features, num_gen=args.num_gen, classes=classes, download=False,
                   fast_extractor=args.fast_extractor)
    rows, records, extractors = [], {}, {}

    def check(name: str, subject, training, test=root / "test", grid: bool = True, **extra) -> None:
        result = dcgan.nearest(subject, training, test, **{**options, **extra})
        records[name] = result.record["protocol"]
        extractor = extractor_protocol(records[name]["feature_extractor"])
        extractors[extractor["weights_sha256"]] = extractor
        scores = result.scores()
        rows.append({"set": name, **{f"{space}_{key}": scores[f"nearest_{space}"][key]
                                     for space in ("features", "pixels") for key in ("share_closer", "share_ratio")}})
        if grid:
            images, per_row = result.grid_images()
            save_grid(images, out / f"{name}.png", nrow=per_row)
        print(json.dumps(rows[-1]))

    generator = dcgan.load_generator(args.model)
    samples = dcgan.generate(generator, range(args.num_gen))
    training = parse_reference(str(root / "train"), classes=classes).load()
    check(args.model, generator, root / "train")
    for kind in ("exact", "noise", "mirrored"):
        for share in (0.1, 0.5, 1.0):
            check(f"{int(share * 100)}%-{kind}-copies", copied(samples, training.images, share, kind), root / "train",
                  grid=share == 0.5)
    for checkpoint, train, test in zip(args.checkpoint, args.train, args.test, strict=True):
        check(Path(checkpoint).name, dcgan.load_generator(checkpoint), train, test, classes=[])

    machine = machine_name()  # dcgan.nearest computes on the CPU, in float32
    lines = [f"# Memorization check ({args.features} features; {args.num_gen:,} images a set)", "",
             f"Training images: {root / 'train'} {classes}; the bar: the 1st percentile of the test images' "
             f"nearest-training distances ({root / 'test'}). CPU: {machine}.", "",
             "| set | features: nearer than bar | features: ratio | pixels: nearer than bar | pixels: ratio |",
             "|---|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['set']} | {row['features_share_closer']:.1%} | {row['features_share_ratio']:.1%} | "
                     f"{row['pixels_share_closer']:.1%} | {row['pixels_share_ratio']:.1%} |")
    first = records[args.model]
    method = {key: value for key, value in first["nearest"].items() if key != "test"}
    sets = {}
    for name, record in records.items():  # each set's own reference, bar, extractor and images
        sets[name] = {"generated": record["generated"], "reference": record["reference"].get("name"),
                      "bar": record["nearest"]["test"], "feature_extractor_sha256":
                          record["feature_extractor"]["weights_sha256"]}
    protocol = {"check": "dcgan.nearest (as `dcgan evaluate --nearest`)", "features": args.features,
                "feature_extractors": list(extractors.values()),
                "generated": {"num_images": args.num_gen, "seeds": f"0-{args.num_gen - 1}", "model": args.model,
                              "calibration": "the model's images of seeds 0..N-1, the first share of them replaced "
                                             "by training images drawn with seed 0: exact, with N(0, 3) noise "
                                             "on uint8 levels, or mirrored",
                              "checkpoints": "each --checkpoint's images of seeds 0..N-1, against its own "
                                             "--train and --test"},
                "reference": first["reference"], "bar": first["nearest"]["test"], "nearest": method, "sets": sets}
    write_results(out, args, "\n".join(lines) + "\n", machine=machine, precision=["fp32"], command=command_line(),
                  protocol=protocol, results=rows)


if __name__ == "__main__":
    main()
