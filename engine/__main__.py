"""The RSS Lab engine's command line: python -m engine COMMAND [options].

Each command lives in ``engine/commands/<name>.py`` with ``add_parser(subparsers)``
and ``run(args) -> int`` (the exit status). Errors the engine raises on bad input
print as one line naming the field; they never show a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import RssLabError

#: Command modules in ``engine.commands``, in the order ``--help`` lists them.
COMMANDS = ["hash", "bench", "schema", "examples", "demo", "verify", "compare"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__.split("\n")[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"engine.commands.{name.replace('-', '_')}")
        command = module.add_parser(subparsers)
        command.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except RssLabError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
