"""What executions leave for the meter's next collection: the cheap half of the metrics.

Recording one measurement into an SDK histogram cleans and hashes its attributes and
builds a measurement object: tens of microseconds on a busy machine, more than the rest
of a call. So an execution's start is an append to a deque (no lock), and its end, under
one lock, counts it as no longer running and appends its duration to its series' array.
The instruments hand both to the SDK when the meter collects
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
from collections import deque
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
    """The executions running per skill, and the durations not yet in the histogram."""

    __slots__ = ("count", "lock", "overflow", "running", "said_full", "series", "starts")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.starts: deque[str] = deque()
        """The skills of executions that started since the running counts were last
        updated: a deque's append is safe from any thread without a lock, so a start pays
        no lock; the next end or collection counts them, under the lock."""
        self.running: dict[str, int] = {}
        self.series: dict[Series, array[float]] = {}
        """Each series ever seen, with the durations waiting in it, oldest first."""
        self.count = 0
        """Durations waiting, in all series."""
        self.overflow = 0
        """Durations recorded by their executions since the last take: none could wait."""
        self.said_full = False
        """The collection has said (once) that durations could not wait."""

    def _count_starts(self) -> None:
        """The starts appended since into the running counts (with the lock held)."""
        starts, running = self.starts, self.running
        while starts:
            skill = starts.popleft()
            running[skill] = running.get(skill, 0) + 1

    def keep(self, series: Series, seconds: float, ended: str | None = None) -> int:
        """Keep seconds for the next collection (and, given ended, one execution of that
        skill no longer runs). Returns how many durations wait now, or 0 when the
        caller must record this one itself: the series' first, or PENDING_LIMIT waiting.
        Exactly one caller sees each count, so one sees `RECORD_SOON`."""
        with self.lock:
            if ended is not None:
                self._count_starts()  # its own start among them
                self.running[ended] = self.running.get(ended, 0) - 1
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

    def running_now(self) -> list[tuple[str, int]]:
        """The executions running now, per skill."""
        with self.lock:
            self._count_starts()
            return list(self.running.items())

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
        been held by a thread the child does not have). The running counts stay: the
        executions of the thread that forked go on in the child and end there."""
        self.lock = threading.Lock()
        self.series = {}
        self.count = 0
        self.overflow = 0
