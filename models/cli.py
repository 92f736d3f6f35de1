"""Command-line interface: ``python main.py <command> ...``.

Each command lives in the module that owns its work and exposes ``add_command(subparsers)``, which
adds a subparser whose ``func(args) -> int`` runs it. Bad user input raises ``UserError`` (or
``MediaError``); the CLI prints one line naming the file and the problem and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from models.errors import UserError

# Modules that add commands, in the order `--help` lists them.
COMMAND_MODULES = (
    "models.commands.generate",
    "models.commands.info",
    "models.commands.data",
    "models.commands.train",
    "models.commands.pose",
    "models.commands.instant",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="main.py",
        description="OmniHuman Studio: animate a person from one picture. Without a command, opens the app.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from models.media import MediaError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (UserError, MediaError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
