"""What executions leave for the meter's next collection: the cheap half of the metrics.

Recording one measurement into an SDK histogram cleans and hashes its attributes and
builds a measurement object: tens of microseconds on a busy machine, more than the rest
of a call. So an execution's end, under one lock, appends its duration to its series'
array, and the instruments hand the durations to the SDK when the meter collects
(`betty_otel._metrics.record`): before each export, each scrape, and the last collection
at shutdown.

When `RECORD_SOON` durations wait, they are recorded in a thread of their own, so the
last collection at exit has little left to do within the exit budget. Memory is bounded:
at most `PENDING_LIMIT` durations wait (8 bytes each); beyond that a duration is not
kept and its execution records it itself, as every call once did (the collection says
once how many did). The first duration of each series is not kept either, so a series
starts when its first execution ends and a meter that cannot record says so at once. A
forked child has nothing pending (`reset`): what its parent had waiting is the parent's
to record. Standard library only.
"""

from __future__ import annotations

import threading
from array import array
from typing import Final

__all__ = ["PENDING_LIMIT", "RECORD_SOON", "Pending", "Series"]

RECORD_SOON: Final = 8_192
"""Durations waiting that are worth recording before the next collection, off the call
path: the collection at exit then has at most about this many to record (a tenth of a
second on a quiet machine), whatever the export interval and the rate of executions."""
PENDING_LIMIT: Final = 65_536
"""Durations that may wait at once (half a megabyte), for when they come faster than
they are recorded."""

Series = tuple[str, str, str, str | None]
"""The labels of one series of the histogram: skill, canonical status, caller, and error
type (failures only, else None), each already bounded."""


class Pending:
    """The durations not yet in the histogram."""

    __slots__ = ("count", "lock", "overflow", "said_full", "series")

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.series: dict[Series, array[float]] = {}
        """Each series ever seen, with the durations waiting in it, oldest first."""
        self.count = 0
        """Durations waiting, in all series."""
        self.overflow = 0
        """Durations recorded by their executions since the last take: none could wait."""
        self.said_full = False
        """The collection has said (once) that durations could not wait."""

    def keep(self, series: Series, seconds: float) -> int:
        """Keep seconds for the next collection. Returns how many durations wait now, or
        0 when the caller must record this one itself: the series' first, or
        PENDING_LIMIT waiting. Exactly one caller sees each count, so one sees
        `RECORD_SOON`."""
        with self.lock:
            durations = self.series.get(series)
            if durations is None:
                self.series[series] = array("d")
                return 0
            if self.count >= PENDING_LIMIT:
                self.overflow += 1
                return 0
            durations.append(seconds)
            self.count += 1
            return self.count

    def skills(self) -> set[str]:
        """The skills of every series seen (each execution that ended adds its own)."""
        with self.lock:
            return {series[0] for series in self.series}

    def take(self) -> tuple[dict[Series, array[float]], int]:
        """The durations waiting, which no longer wait, and how many could not wait."""
        with self.lock:
            taken = {series: durations for series, durations in self.series.items() if durations}
            for series in taken:
                self.series[series] = array("d")
            overflow, self.overflow, self.count = self.overflow, 0, 0
        return taken, overflow

    def reset(self) -> None:
        """In a forked child: no duration waits, and the lock is new (the parent's may have
        been held by a thread the child does not have)."""
        self.lock = threading.RLock()
        self.series = {}
        self.count = 0
        self.overflow = 0
