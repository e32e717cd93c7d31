"""Internal failures: logged, counted, never raised into the user's code."""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from betty_otel._state import STATE

__all__ = [
    "after_fork_in_child",
    "count_internal_error",
    "handle_internal_errors",
    "internal_error",
    "internal_errors",
]

logger = logging.getLogger(__name__)

_counting = threading.RLock()
"""Held while the count goes up; renewed in a forked child (`after_fork_in_child`)."""


def internal_errors() -> int:
    """How many times betty_otel failed internally (each is logged; user code went on)."""
    return STATE.internal_errors


def count_internal_error() -> None:
    """Count a failure of ours that its owner logs itself: the file exporter logs each
    kind of failure once until a write succeeds, yet every failed write counts."""
    with _counting:
        STATE.internal_errors += 1


def after_fork_in_child() -> None:
    """A lock of the child's: a thread of the parent may have held it at the fork."""
    global _counting
    _counting = threading.RLock()


def internal_error(what: str) -> None:
    """Log and count a failure of ours; never raises. Call it from an except block."""
    count_internal_error()
    logger.exception("betty_otel: %s failed; your code still runs, with less telemetry", what)


class _Guard:
    """The context manager of handle_internal_errors: a class, since it runs on every
    instrumented call and a generator-based one costs several times more."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if kind is None or not issubclass(kind, Exception):
            return False
        internal_error(self.what)  # the exception is still the one being handled here
        return True


def handle_internal_errors(what: str) -> _Guard:
    """Run a block of betty_otel's own work; an Exception in it is logged and counted.

    Only ``Exception`` is caught: KeyboardInterrupt and SystemExit belong to the user.
    """
    return _Guard(what)
