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
    """The file a generator source reads (for "the output is this command's own input"): a run
    folder's generator.safetensors or checkpoint-last.pt, or the file itself."""
    if not source:
        return []
    from dcgan.checkpoint import resolve_generator_path
    from dcgan.errors import UserError

    try:
        return [str(resolve_generator_path(source))]
    except UserError:  # loading it says what is wrong, in one line
        return []


def whole(low: int, high: int):
    """An argparse type: a whole number from `low` to `high`, else argparse's one-line error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:,} and {high:,}, not {value}")
        return value
    parse.__name__ = "whole number"
    return parse


SEED_LIMIT = 2**63 - 1  # seeds seed a torch.Generator, which takes a signed 64-bit integer
