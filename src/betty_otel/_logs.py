"""Logging that costs nothing until something is logged.

Importing logging (and with it traceback, tokenize, string, weakref) is about 15% of a
``betty-telemetry capture``'s start-up, and a capture that goes well logs nothing. So
the modules that capture runs (`betty_otel._environment`, `betty_otel._store.writer`)
call `logger` where they log, which imports logging then. A configuration that must be
in place before the first message (the CLI's handler on stderr) is handed to
`configure_later`: applied at once when logging is already loaded, else by the first
`logger` call or by `configure_now` (a path that loads logging for its own modules).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from betty_otel._state import STATE

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: a capture does not import typing
if TYPE_CHECKING:
    import logging

__all__ = ["configure_later", "configure_now", "logger"]


def configure_later(setup: Callable[[], None]) -> None:
    """Run setup before betty_otel logs anything: now if logging is loaded, else when needed."""
    STATE.log_setup = setup
    if "logging" in sys.modules:
        configure_now()


def configure_now() -> None:
    """Apply the configuration given to configure_later, if it is still pending."""
    setup, STATE.log_setup = STATE.log_setup, None
    if setup is not None:
        setup()


def logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)``, imported now, the pending configuration applied first."""
    import logging  # noqa: PLC0415 - only when something is logged

    configure_now()
    return logging.getLogger(name)
