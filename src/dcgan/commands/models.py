"""`dcgan models`: the generators shipped with the package, and their model cards.

    dcgan models                  # a table: name, data, classes, resolution, size, held-out scores
    dcgan models cifar10-cars     # one model's card
    dcgan generate --model cifar10-cars --num 16

`--model NAME` works wherever `--checkpoint` does (generate, serve, evaluate, export). A model
marked "train it yourself" ships without weights; its card gives the command that trains it.
"""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list the shipped generators and their cards", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", help="show this model's card")
    parser.add_argument("--json", action="store_true", help="print the list (or the card's data) as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dcgan.pretrained import shipped_model, shipped_models

    if args.name:
        model = shipped_model(args.name)
        if args.json:
            print(json.dumps(model.card, indent=2))
        else:
            print(model.card_path.read_text(encoding="utf-8").rstrip())
            print(f"\ncard: {model.card_path}\nweights: {model.file or 'none shipped (train it yourself)'}")
        return 0
    rows = [model.summary() for model in shipped_models().values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = (f"{'name':<14} {'data':<44} {'classes':>7} {'res':>3} {'size':>8} {'FID':>6} {'FID-fast':>8} "
              f"{'class acc':>9}  status")
    print(header)
    for row in rows:
        size = f"{row['size_bytes'] / 1e6:.1f} MB" if row["size_bytes"] else "-"
        fid = f"{row['fid']:.1f}" if row["fid"] is not None else "-"
        fid_fast = f"{row['fid_fast']:.3f}" if row["fid_fast"] is not None else "-"
        accuracy = f"{row['class_accuracy']:.1%}" if row["class_accuracy"] is not None else "-"
        status = "shipped" if row["trained"] else f"train it yourself: {row['command']}"
        print(f"{row['name']:<14} {row['data'][:44]:<44} {len(row['classes']) or '-':>7} {row['resolution'] or '-':>3} "
              f"{size:>8} {fid:>6} {fid_fast:>8} {accuracy:>9}  {status}")
        print(f"{'':<14} card: {row['card']}")
    print("\nFID (Inception) and FID-fast: held-out, against the dataset's test images (each card gives the "
          "protocol); "
          "`dcgan models NAME` prints a card, `dcgan serve` links them")
    return 0
