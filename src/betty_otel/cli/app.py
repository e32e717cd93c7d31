"""main(): parse the command line, run one command, turn its outcome into an exit status.

A command's module is imported only when that command runs, so ``--help`` and a
usage error load nothing but argparse, and each command loads only what it needs.
"""

from __future__ import annotations

import argparse
import importlib
import io
import logging
import os
import sys
from collections.abc import Callable, Sequence

from betty_otel.cli.parser import COMMANDS, PROG, UsageError, build_parser

__all__ = ["main"]

logger = logging.getLogger(__name__)

_PACKAGE_LOGGER = "betty_otel"


def _setup_logging() -> None:
    """Library warnings (damaged regions, files moved aside) go to stderr, plainly."""
    package = logging.getLogger(_PACKAGE_LOGGER)
    if any(getattr(handler, "_betty_cli", False) for handler in package.handlers):
        return  # main() called again in the same process
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
    handler._betty_cli = True  # type: ignore[attr-defined]
    package.addHandler(handler)
    package.setLevel(logging.WARNING)
    package.propagate = False


def _run(args: argparse.Namespace) -> int:
    """Import the module of args.command and run its cmd_<command>(args)."""
    module = importlib.import_module(f"{__package__}.{COMMANDS[args.command]}")
    command: Callable[[argparse.Namespace], int] = getattr(module, f"cmd_{args.command}")
    return command(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run betty-telemetry with argv (default sys.argv[1:]); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    _setup_logging()
    if isinstance(sys.stdout, io.TextIOWrapper):  # never fail on a non-UTF-8 terminal
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        code = _run(args)
        sys.stdout.flush()
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader went away (| head): not an error. Keep Python from complaining at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:  # a CLI reports errors; it does not dump tracebacks
        logger.debug("%s failed", args.command, exc_info=True)
        message = str(exc) or type(exc).__name__
        sys.stderr.write(f"Error: {message}\n")
        return 1
    return code
