"""OmniHuman Studio: ``python main.py`` opens the app, ``python main.py <command>`` runs the CLI."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        from models.cli import main as cli_main

        return cli_main(argv)
    from app.main_window import run_app

    return run_app()


if __name__ == "__main__":
    sys.exit(main())
