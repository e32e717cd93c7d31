"""When an execution gets its record: ``inflight_after``, and where each pipeline's go.

``configure(inflight_after=S)``, else ``$BETTY_TELEMETRY_INFLIGHT_AFTER``, else 1 s; ``0``
gives every execution a record at its start; ``off`` none.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Final

from betty_otel._inflight.records import folder_of

__all__ = ["DEFAULT_AFTER", "ENV_AFTER", "Settings", "inflight_after"]

logger = logging.getLogger(__name__)

ENV_AFTER: Final = "BETTY_TELEMETRY_INFLIGHT_AFTER"
DEFAULT_AFTER: Final = 1.0
"""Seconds an execution runs before it gets a record, unless configured otherwise."""


def inflight_after(value: float | str | None) -> float | None:
    """The seconds configured (None: ``off``); value None means $BETTY_TELEMETRY_INFLIGHT_AFTER,
    else DEFAULT_AFTER. A bad environment value is warned about and the default used.

    Raises:
        ValueError: value is neither ``off`` nor a finite number of seconds >= 0.
    """
    if value is None:
        text = os.environ.get(ENV_AFTER, "").strip()
        try:
            return _seconds_or_off(text) if text else DEFAULT_AFTER
        except ValueError:
            logger.warning("betty_otel: ignoring %s=%r (not off or seconds)", ENV_AFTER, text)
            return DEFAULT_AFTER
    return _seconds_or_off(value)


def _seconds_or_off(value: object) -> float | None:
    if isinstance(value, str):
        if value.strip().lower() == "off":
            return None
        try:
            number: object = float(value)
        except ValueError:
            number = None
    else:
        number = value
    if isinstance(number, (int, float)) and not isinstance(number, bool) and 0 <= number < 1e9:
        return float(number)
    msg = f"inflight_after must be 'off' or a finite number of seconds >= 0, got {value!r}"
    raise ValueError(msg)


class Settings:
    """Where and when one pipeline's executions get their records."""

    __slots__ = ("after_ns", "folder", "log", "pipeline", "retry_at", "warned")

    def __init__(self, pipeline: object, log: Path, after: float | None) -> None:
        self.pipeline = pipeline
        self.log = log
        self.folder = folder_of(log)
        self.after_ns = None if after is None else int(after * 1e9)
        self.retry_at = 0
        self.warned = False
