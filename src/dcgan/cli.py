"""The `dcgan` command. Each module in `dcgan.commands` registers one subcommand.

Errors the user can fix (`UserError`, bad flags) print one line and exit with status 2;
nothing prints a traceback for them.
"""

from __future__ import annotations

import argparse
import sys

from dcgan.errors import UserError


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (plus the status 2 argparse uses)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from dcgan import __version__
    from dcgan.commands import evaluate, export, features, generate, models, serve, summary, train

    parser = OneLineParser(prog="dcgan", description="Train, evaluate and serve DCGAN-family image generators.")
    parser.add_argument("--version", action="version", version=f"dcgan {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    subparsers.required = True
    for module in (train, generate, evaluate, features, summary, serve, models, export):
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except UserError as error:
        print(f"dcgan {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dcgan {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `dcgan ... | head`: the reader left; say nothing more.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
