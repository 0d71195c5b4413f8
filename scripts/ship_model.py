"""Put a trained run's generator into the package as a shipped model (maintainers only).

    python scripts/ship_model.py runs/00000-folder-cpu-v1 cifar10-cars

Writes src/dcgan/pretrained/<name>/generator.safetensors with the EMA generator's weights in
float16 (buffers such as BatchNorm statistics too), discriminator.safetensors (float16) from the
checkpoint that goes with it, so that the model can be fine-tuned (`dcgan train --init-from
NAME`), and samples.png (seeds 0-63, 8 per row; a row per class for a conditional model) made from
that file. Float16 halves the file; the script
prints how far its images are from the float32 weights' over seeds 0-999, the figure the model
card states. The card itself (card.json, MODEL_CARD.md) is written by hand from the run's figures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from dcgan.checkpoint import load_checkpoint, load_generator, load_state_checked, save_discriminator, save_generator
from dcgan.models import build_discriminator
from dcgan.pretrained import PRETRAINED_DIR
from dcgan.sampling import generate_images, is_conditional, save_grid


def matching_checkpoint(run: Path) -> Path | None:
    """The checkpoint holding the discriminator trained with the shipped generator, if there is one."""
    if run.is_dir():
        run = run / "generator.safetensors"
    if run.suffix == ".pt":
        return run
    name = "checkpoint-best.pt" if run.name == "generator-best.safetensors" else "checkpoint-last.pt"
    return run.parent / name if (run.parent / name).is_file() else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a run folder or generator file")
    parser.add_argument("name", help="the shipped model's name (a folder of src/dcgan/pretrained)")
    args = parser.parse_args()
    folder = PRETRAINED_DIR / args.name
    folder.mkdir(exist_ok=True)

    generator, kwargs = load_generator(args.run)
    save_generator(generator, kwargs, folder / "generator.safetensors", dtype=torch.float16)
    checkpoint = matching_checkpoint(Path(args.run))
    if checkpoint is not None:
        state = load_checkpoint(checkpoint)
        discriminator = build_discriminator(**state["discriminator_kwargs"])
        load_state_checked(discriminator, state["D"], f"discriminator of {checkpoint}")
        save_discriminator(discriminator, state["discriminator_kwargs"], folder / "discriminator.safetensors",
                           dtype=torch.float16)
        print(f"wrote {folder / 'discriminator.safetensors'} from {checkpoint}")
    else:
        print(f"no checkpoint beside {args.run}: the model ships without its discriminator")

    small, _ = load_generator(folder / "generator.safetensors")
    seeds = range(1000)
    difference = (generate_images(small, seeds).int() - generate_images(generator, seeds).int()).abs()
    print(f"float16 weights: images differ from the float32 weights' by at most {int(difference.max())} uint8 "
          f"levels (mean {difference.float().mean():.4f}) over seeds 0-999")
    if is_conditional(small):
        images = torch.cat([generate_images(small, range(8), classes=k) for k in range(min(10, small.num_classes))])
    else:
        images = generate_images(small, range(64))
    save_grid(images, folder / "samples.png", nrow=8)
    print(f"wrote {folder / 'generator.safetensors'} ({(folder / 'generator.safetensors').stat().st_size:,} bytes) "
          f"and {folder / 'samples.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
