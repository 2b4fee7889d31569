"""The RSS Lab engine's command line: python -m engine COMMAND [options].

Each command lives in ``engine/commands/<name>.py`` with ``add_parser(subparsers)``
and ``run(args) -> int`` (the exit status). Errors the engine raises on bad input
print as one line naming the field; they never show a traceback.

Exit statuses (every command):

- 0: done; for ``verify``, the scenario passed;
- 1: the run found a failure (a check failed, a flow refused or asymmetric);
- 2: bad input (a usage error, an invalid scenario, key, capture or option);
- 3: an internal error, or output that could not be written (a full disk); one line,
  the traceback only with ``RSSLAB_TRACEBACK=1``;
- 128+n: stopped by signal n (130 for Ctrl-C, 141 for a closed pipe).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import traceback

from engine.errors import RssLabError

#: Command modules in ``engine.commands``, in the order ``--help`` lists them.
COMMANDS = ["hash", "bench", "schema", "examples", "demo", "verify", "compare", "exercise"]


#: Exit statuses, as the module docstring lists them.
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors cut to one readable line: a 5,000-digit option value
    is not echoed in full."""

    def error(self, message: str):
        if len(message) > 300:
            message = message[:240] + f"... ({len(message):,} characters)"
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m engine", description=__doc__.split("\n")[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"engine.commands.{name.replace('-', '_')}")
        command = module.add_parser(subparsers)
        command.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit status as the module docstring lists them."""
    args = build_parser().parse_args(argv)
    try:
        status = args.handler(args)
        sys.stdout.flush()
        return status
    except RssLabError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_status
    except BrokenPipeError:  # `| head`: the reader left; die as SIGPIPE would
        _silence_stdout()
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt:
        _silence_stdout()
        return 128 + signal.SIGINT
    except OSError as error:  # writing stdout or stderr: a full disk, a closed terminal
        _silence_stdout()
        _say(f"error: could not write the output: {error.strerror or error}")
        return EXIT_INTERNAL
    except (Exception, RecursionError, MemoryError) as error:  # a bug: one line, exit 3
        if os.environ.get("RSSLAB_TRACEBACK"):
            traceback.print_exc()
        _say(f"internal error: {type(error).__name__}: {str(error)[:300]} (please report "
             f"it with the command; RSSLAB_TRACEBACK=1 shows where)")
        return EXIT_INTERNAL


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush at exit cannot fail
    again and print "Exception ignored" after our one line."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _say(line: str) -> None:
    with contextlib.suppress(OSError):
        print(line, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
