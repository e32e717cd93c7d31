"""main(): parse the command line, run one command, turn its outcome into an exit status.

A command's module is imported only when that command runs, so ``--help`` and a
usage error load nothing but argparse, and each command loads only what it needs. A
plain capture line is read without argparse (`betty_otel.cli.capture.plain_capture`).
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Callable, Sequence

from betty_otel._lazy import import_module
from betty_otel._logs import configure_later, logger
from betty_otel.cli.names import COMMANDS, PROG, UsageError
from betty_otel.cli.terminal import err, escape_controls, open_closed_streams, quiet_stdout

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: a capture does not import typing
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from betty_otel.cli.capture import CaptureLine

__all__ = ["main"]


def _setup_logging() -> None:
    """Library warnings go to stderr through the CLI's handler (`betty_otel.cli.stderrlog`)."""
    from betty_otel.cli.stderrlog import log_to_stderr  # noqa: PLC0415 - it imports logging

    log_to_stderr()


def _run(args: argparse.Namespace | CaptureLine) -> int:
    """Import the module of args.command and run its cmd_<command>(args): args is the
    parser's Namespace, or a plain capture's `betty_otel.cli.capture.CaptureLine`."""
    module = import_module(f"{__package__}.{COMMANDS[args.command]}")
    # Library warnings through our handler: set up now if the command's modules loaded
    # logging, else before the first message (a capture that logs nothing never loads it).
    configure_later(_setup_logging)
    name = f"cmd_{args.command.replace('-', '_')}"
    command: Callable[[Any], int] = getattr(module, name)
    return command(args)


def _error_text(exc: Exception) -> str:
    """What went wrong, plainly: an OSError as ``<file>: <reason>``, without errno codes."""
    if isinstance(exc, OSError) and exc.strerror:
        reason = exc.strerror[:1].lower() + exc.strerror[1:]
        return reason if exc.filename is None else f"{exc.filename}: {reason}"
    return str(exc) or type(exc).__name__


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """The parsed arguments; a usage error's message (it quotes arguments) printed escaped."""
    usage = io.StringIO()
    try:
        with contextlib.redirect_stderr(usage):
            return parser.parse_args(argv)
    finally:
        if usage.getvalue():
            sys.stderr.write(escape_controls(usage.getvalue(), lines=True))


def _flushed(code: int) -> int:
    """code, once stdout is flushed; a reader that went away changes nothing."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        quiet_stdout()
    return code


def _parsed(given: list[str]) -> argparse.Namespace | CaptureLine | int:
    """The command line read: a plain capture's without argparse, else the parser's
    Namespace; or the exit status when that is all there is to it (help, a usage error)."""
    if given[:1] == ["capture"]:
        from betty_otel.cli.capture import plain_capture  # noqa: PLC0415 - capture only

        plain = plain_capture(given)
        if plain is not None:
            return plain
    try:
        return _parse(_parser(given), given)
    except SystemExit as exc:  # --help or --version (0), or a usage error (2)
        return _flushed(exc.code if isinstance(exc.code, int) else 2)
    except BrokenPipeError:  # --version, its reader gone
        quiet_stdout()
        return 0


def _parser(given: list[str]) -> argparse.ArgumentParser:
    """The parser of the command line given: only the named command's family (quicker,
    and it parses alike)."""
    from betty_otel.cli.commandline import build_parser  # noqa: PLC0415 - it loads argparse

    return build_parser(given[0] if given and given[0] in COMMANDS else None)


def main(argv: Sequence[str] | None = None) -> int:
    """Run betty-telemetry with argv (default sys.argv[1:]); return the exit status.

    A closed stdout or stderr, or a stdout whose reader went away, is never an error:
    what would go there is dropped.
    """
    open_closed_streams()
    given = sys.argv[1:] if argv is None else list(argv)
    args = _parsed(given)
    if isinstance(args, int):
        return args
    if isinstance(sys.stdout, io.TextIOWrapper):  # never fail on a non-UTF-8 terminal
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        code: int = _run(args)
        sys.stdout.flush()
    except UsageError as exc:
        _parser(given).print_usage(sys.stderr)
        err(f"{PROG}: error: {exc}")
        return 2
    except KeyboardInterrupt:
        err("Interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (| head): not an error. Keep Python from complaining at exit.
        quiet_stdout()
        return 0
    except Exception as exc:  # noqa: BLE001 - a CLI reports errors; it does not dump tracebacks
        logger(__name__).debug("%s failed", args.command, exc_info=True)
        err(f"Error: {_error_text(exc)}")
        return 1
    return code
