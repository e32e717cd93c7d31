"""Bounded label values: no skill, caller or error type makes metric series without end.

Each series of a metric costs a backend memory and money, and a label fed by names
that grow (a skill per customer, a caller per job id) would make them without bound.
So each of ``betty.skill``, ``betty.caller`` and ``error.type`` takes at most
``max_series`` values (configure's ``metrics_max_series``, else
$BETTY_TELEMETRY_METRICS_MAX_SERIES, else 100); a value first seen after that is
recorded as ``other``, and the first fold is logged once. The live instruments admit
values in the order they come (`SeriesGuard`); the log's histogram keeps the most
frequent ones (`most_frequent`). Standard library only.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Mapping
from typing import Final

from betty_otel._logs import logger

__all__ = [
    "DEFAULT_MAX_SERIES",
    "ENV_MAX_SERIES",
    "OTHER",
    "SeriesGuard",
    "after_fork_in_child",
    "max_series",
    "most_frequent",
]

OTHER: Final = "other"
"""The value that stands for every value beyond the bound."""
DEFAULT_MAX_SERIES: Final = 100
ENV_MAX_SERIES: Final = "BETTY_TELEMETRY_METRICS_MAX_SERIES"


def max_series(given: int | None = None) -> int:
    """The bound: given when not None, else $BETTY_TELEMETRY_METRICS_MAX_SERIES, else 100.

    A bad value in the environment is ignored with a warning (the environment must not
    break the program); a bad value given in code is refused.

    Raises:
        ValueError: given is not an integer >= 0.
    """
    if given is not None:
        value: object = given
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            msg = f"metrics_max_series must be an integer >= 0, got {given!r}"
            raise ValueError(msg)
        return value
    text = os.environ.get(ENV_MAX_SERIES, "").strip()
    if not text:
        return DEFAULT_MAX_SERIES
    if text.isdigit() and text.isascii():
        return int(text)
    logger(__name__).warning(
        "betty_otel: ignoring %s=%r (not an integer >= 0); using %d",
        ENV_MAX_SERIES,
        text,
        DEFAULT_MAX_SERIES,
    )
    return DEFAULT_MAX_SERIES


class SeriesGuard:
    """The values of each bounded label admitted so far; later ones become ``other``.

    A value once admitted stays admitted and one refused stays refused (the sets only
    grow, up to the bound), so an execution's start and end fold its skill alike.
    """

    __slots__ = ("__weakref__", "callers", "error_types", "limit", "lock", "skills", "warned")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.skills: set[str] = set()
        self.callers: set[str] = set()
        self.error_types: set[str] = set()
        self.lock = threading.RLock()
        self.warned = False
        _guards.add(self)  # for after_fork_in_child; weakly held

    def renew_lock(self) -> None:
        """A lock of its own: a thread of the parent may have held this one at the fork."""
        self.lock = threading.RLock()

    def fold(self, admitted: set[str], value: str, label: str) -> str:
        """value if it has (or can still get) series of its own, else ``other``."""
        if value in admitted:  # the usual case: no lock
            return value
        with self.lock:
            if value in admitted:
                return value
            if len(admitted) < self.limit:
                admitted.add(value)
                return value
            warn, self.warned = not self.warned, True
        if warn:
            logger(__name__).warning(
                "betty_otel: more than %d values of the metric label %s; later values "
                "(and those of any other bounded label) are recorded as %r. Raise %s "
                "or configure(metrics_max_series=...) if your backend can take more series",
                self.limit,
                label,
                OTHER,
                ENV_MAX_SERIES,
            )
        return OTHER


_guards: weakref.WeakSet[SeriesGuard] = weakref.WeakSet()
"""The live guards, whose locks a forked child renews."""


def after_fork_in_child() -> None:
    """Each guard gets a lock of the child's."""
    for guard in list(_guards):
        guard.renew_lock()


def most_frequent(counts: Mapping[str, int], limit: int) -> frozenset[str]:
    """The at most limit values with the highest counts (ties: the smaller value first)."""
    if len(counts) <= limit:
        return frozenset(counts)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return frozenset(value for value, _ in ranked[:limit])
