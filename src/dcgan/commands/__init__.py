"""The subcommands of `dcgan`, one module each; helpers they share are here."""

from __future__ import annotations

import argparse


def add_generator_source(parser: argparse.ArgumentParser, *, repeatable: bool = False) -> None:
    """--checkpoint PATH or --model NAME (a shipped generator, see `dcgan models`)."""
    if repeatable:
        parser.add_argument("--checkpoint", action="append", default=[], metavar="PATH",
                            help="a run folder, generator.safetensors or checkpoint .pt (repeatable)")
        parser.add_argument("--model", action="append", default=[], metavar="NAME",
                            help="a shipped generator by name (repeatable; see `dcgan models`)")
    else:
        parser.add_argument("--checkpoint", metavar="PATH",
                            help="a run folder, generator*.safetensors or checkpoint-*.pt")
        parser.add_argument("--model", metavar="NAME", help="a shipped generator by name (see `dcgan models`)")


def generator_source(args: argparse.Namespace, required: bool = True) -> str | None:
    """The path that --checkpoint or --model names (exactly one of them); None when neither is
    given and `required` is False."""
    from dcgan.errors import UserError

    if args.checkpoint and args.model:
        raise UserError("pass --checkpoint or --model, not both")
    if args.model:
        from dcgan.pretrained import model_file

        return str(model_file(args.model))
    if args.checkpoint:
        return args.checkpoint
    if required:
        raise UserError("pass --checkpoint (a run folder or generator file) or --model (a shipped generator: "
                        "see `dcgan models`)")
    return None


def add_force(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true",
                        help="replace an output that is a file of another kind, a link, this command's own input "
                             "or a file in the output folder that dcgan did not write (refused otherwise)")


def source_files(source: str | None) -> list[str]:
    """The files a generator source reads (for "the output is this command's own input")."""
    if not source:
        return []
    from pathlib import Path

    path = Path(source)
    files = [str(path)]
    if path.is_dir():
        files += [str(p) for p in path.glob("*") if p.suffix in (".pt", ".safetensors")]
    return files
