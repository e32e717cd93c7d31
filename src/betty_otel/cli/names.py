"""The names betty-telemetry's modules share: the program, its commands, its errors.

Apart from `betty_otel.cli.commandline` (the argparse parser, which re-exports them), so
that a plain ``capture`` line, read without argparse (`betty_otel.cli.capture.plain_capture`),
loads none of it. Nothing is imported here.
"""

from __future__ import annotations

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: a capture does not import typing
if TYPE_CHECKING:
    from typing import Final


__all__ = ["COMMANDS", "DISTRIBUTION", "PROG", "CommandError", "UsageError"]

PROG: Final = "betty-telemetry"
DISTRIBUTION: Final = "betty-otel"
"""The installed distribution whose metadata --version reads."""

COMMANDS: Final = {
    "capture": "capture",
    "query": "read",
    "stats": "read",
    "trace": "read",
    "tail": "read",
    "check": "check",
    "repair": "check",
    "running": "running",
    "export": "export",
    "install-skill": "install",
    "report": "report",
}
"""Command -> the module of betty_otel.cli that runs it (as its function cmd_<command>)."""


class UsageError(Exception):
    """A command line that parses but makes no sense: exit status 2."""


class CommandError(Exception):
    """A command that cannot do its work (the file is a directory, ...): exit status 1."""
