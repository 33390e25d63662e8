"""The ``lighttrack`` command: one subcommand module per area under lighttrack/commands/.

Each module in ``COMMANDS`` defines ``register(subparsers)`` which adds its parser and
sets ``func`` (taking the parsed args, returning an exit code).
"""
from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["main"]

# Modules under lighttrack.commands, in help order.
COMMANDS = ("arch", "data", "evaluate", "track", "export", "search")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lighttrack", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"lighttrack.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError) as e:
        # Bad input (config, data, checkpoint errors are ValueErrors; a missing file or an
        # unwritable output an OSError): one clear line, no traceback.
        print(f"lighttrack {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
