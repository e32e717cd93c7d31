"""The CLI's handler for the library's log: warnings on stderr, plainly.

Installed before the library first logs (`betty_otel._logs.configure_later`), so a
capture that logs nothing never imports logging.
"""

from __future__ import annotations

import logging
import sys

from betty_otel.cli.commandline import PROG
from betty_otel.cli.terminal import escape_controls

__all__ = ["log_to_stderr"]

_PACKAGE_LOGGER = "betty_otel"


class _SafeFormatter(logging.Formatter):
    """Log lines as plain text: a message quoting log or user text cannot steer the terminal."""

    def format(self, record: logging.LogRecord) -> str:
        return escape_controls(super().format(record), lines=True)


def log_to_stderr() -> None:
    """Library warnings (damaged regions, files moved aside) go to stderr, plainly."""
    package = logging.getLogger(_PACKAGE_LOGGER)
    if any(getattr(handler, "_betty_cli", False) for handler in package.handlers):
        return  # main() called again in the same process
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_SafeFormatter(f"{PROG}: %(levelname)s: %(message)s"))
    handler._betty_cli = True  # type: ignore[attr-defined]
    package.addHandler(handler)
    package.setLevel(logging.WARNING)
    package.propagate = False
