"""The truncation trade-off of a generator: Inception FID, precision and recall, and FID-fast, with
latents truncated at each T and without, against a dataset's test split (images no run trained on).

Image i comes from seed i with its latent truncated at T (`dcgan generate --truncation T`); every T
scores the same seeds, so the settings differ only by truncation. A grid of seeds 0-31 per setting
goes beside results.md. results.json records the machine that generated and scored the images (in
float32), the command line and the protocol: both extractors with their weights' SHA-256, the samples
and their seeds, the reference and its split.

    python benchmarks/truncation.py --model cifar10-cars --data-root /tmp/cifar10 --classes automobile \\
        --truncations 0.5,1.0,1.5,2.0 --num-gen 1000 --out docs/results/truncation-cars
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dcgan.devices import machine_name
from held_out import HeldOut, check_results_folder, command_line, write_results

METRICS = {"inception": ["fid", "pr"], "fast": ["fid"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a shipped model's name, a run folder or a generator file")
    parser.add_argument("--data-root", required=True, help="an image folder with train/ and test/")
    parser.add_argument("--classes", default="", help="comma-separated classes of the test split")
    parser.add_argument("--truncations", default="0.5,1.0,1.5,2.0")
    parser.add_argument("--num-gen", type=int, default=1000)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    check_results_folder(args.out)

    import dcgan
    from dcgan.sampling import save_grid

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    generator = dcgan.load_generator(args.model)
    held_out = HeldOut(args.data_root, [c for c in args.classes.split(",") if c])
    rows = []
    for truncation in [None] + [float(t) for t in args.truncations.split(",")]:
        label = "none" if truncation is None else f"{truncation:g}"
        images = dcgan.generate(generator, seeds=args.num_gen, truncation=truncation)
        scores = held_out.score(images, METRICS, f"T={label}")
        save_grid(images[:32], out / f"grid-truncation-{label}.png", nrow=8)
        rows.append({"truncation": label, **{k: round(v, 4) for k, v in scores.items()}})
        print(rows[-1], flush=True)

    table = ["| truncation | Inception FID | precision | recall | FID-fast | grid |", "|---|---|---|---|---|---|"]
    for row in rows:
        table.append(f"| {row['truncation']} | {row['fid']:.1f} | {row['precision']:.3f} | {row['recall']:.3f} | "
                     f"{row['fid_fast']:.3f} | [grid](grid-truncation-{row['truncation']}.png) |")
    protocol = held_out.protocol(METRICS, args.num_gen, model=args.model,
                                 truncation="image i's latent drawn from seed i and each component beyond +-T drawn "
                                            "again from the same seed (dcgan generate --truncation T); 'none': "
                                            "not truncated",
                                 truncations=[row["truncation"] for row in rows])
    write_results(out, args, "\n".join(table) + "\n", machine=machine_name(), precision=["fp32"],
                  command=command_line(), protocol=protocol, rows=rows)


if __name__ == "__main__":
    main()
