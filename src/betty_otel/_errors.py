"""Internal failures: logged, counted, never raised into the user's code."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from betty_otel._state import STATE

__all__ = ["handle_internal_errors", "internal_error", "internal_errors"]

logger = logging.getLogger(__name__)


def internal_errors() -> int:
    """How many times betty_otel failed internally (each is logged; user code went on)."""
    return STATE.internal_errors


def internal_error(what: str) -> None:
    """Log and count a failure of ours; never raises. Call it from an except block."""
    with STATE.errors_lock:
        STATE.internal_errors += 1
    logger.exception("betty_otel: %s failed; your code still runs, with less telemetry", what)


@contextlib.contextmanager
def handle_internal_errors(what: str) -> Iterator[None]:
    """Run a block of betty_otel's own work; an Exception in it is logged and counted.

    Only ``Exception`` is caught: KeyboardInterrupt and SystemExit belong to the user.
    """
    try:
        yield
    except Exception:  # noqa: BLE001 - the block is ours; the user's code must go on
        internal_error(what)
