"""The one background thread per process that keeps the records of executions in flight.

`Tracker` holds this process's executions in flight (`Handle`, registered and taken out by
`betty_otel._inflight.hooks`). Its thread (a daemon: it never holds up exit) wakes when
something is due; once nothing is in flight for ``inflight_after``, it waits with no
timeout until a call wakes it (so a busy program's short calls wake it at most once per
``inflight_after``, and an idle one never). When it wakes, it
writes the record of each execution older than ``inflight_after`` (at its first look at
an execution, the span's start tells its age: no clock is read on the call's path),
refreshes each record's last-seen time every `LAST_SEEN_INTERVAL` seconds, and, once per
log, reaps the abandoned records of the log a pipeline was configured with (at most
`AUTO_REAP_LIMIT` executions, see `betty_otel._inflight.reaper`). A failure to write
records (the folder is a file, a link, unwritable, full) is said once per configuration,
retried a minute later, and never reaches the program.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from opentelemetry.sdk.trace import ReadableSpan

from betty_otel._entry import execution_entry
from betty_otel._errors import internal_error
from betty_otel._inflight.owner import Owner, this_process
from betty_otel._inflight.records import encode_record, open_folder, record_name, write_record
from betty_otel._inflight.settings import Settings

if TYPE_CHECKING:
    from betty_otel._run import Run

__all__ = [
    "AUTO_REAP_LIMIT",
    "ENDED",
    "LAST_SEEN_INTERVAL",
    "OPEN",
    "RECORDED",
    "UNRECORDABLE",
    "Handle",
    "Tracker",
]

logger = logging.getLogger(__name__)

LAST_SEEN_INTERVAL: Final = 2.0
"""Seconds between two refreshes of a record's last-seen time."""
AUTO_REAP_LIMIT: Final = 10_000
"""Executions a newly configured writer reaps at most (in its thread; repair does all)."""
OPEN, RECORDED, ENDED, UNRECORDABLE = 0, 1, 2, 3
"""A handle's states: no record; a record; ended; no record will ever be written."""
_RETRY_NS: Final = 60_000_000_000
_MIN_WAIT: Final = 0.005
_MAX_AGE_NS: Final = 86_400_000_000_000
"""A span older than a day when first seen: the wall clock jumped (its age is capped)."""


class Handle:
    """One execution in flight (its record's name and ids once it has one)."""

    __slots__ = (
        "began",
        "generator",
        "name",
        "refreshed",
        "run",
        "settings",
        "span_id",
        "start_ns",
        "state",
        "tracker",
    )
    # Set by the thread when it writes the record (the usual short call never needs them).
    name: str
    span_id: int
    start_ns: int
    refreshed: int

    def __init__(self, run: Run, settings: Settings, tracker: Tracker) -> None:
        self.run = run
        self.settings = settings
        self.tracker = tracker
        self.state = OPEN
        self.generator = False
        self.began = 0  # set by the thread (no clock is read on the call's path)

    def start_at(self, now: int) -> int:
        """When the run began on the monotonic clock (now is that clock's reading): its
        span's start, read once, as an age on the wall clock."""
        if not self.began:
            start = getattr(self.run.span, "start_time", None)
            age = time.time_ns() - start if isinstance(start, int) else 0
            self.began = now - min(max(age, 0), _MAX_AGE_NS)
        return self.began

    def last_seen(self, now: int) -> int:
        """The wall time now, as the run's own clock since its start says (immune to
        wall-clock jumps since)."""
        return self.start_ns + max(now - self.began, 0)


class Tracker:
    """This process's executions in flight and the thread that records them."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings
        self.runs: dict[Handle, Handle] = {}
        """Open executions without a record (a handle is its own key: hashed by identity)."""
        self.taken: dict[Handle, Handle] = {}
        """Open executions with a record."""
        self.ending: dict[int, Handle] = {}
        """Ended executions whose record waits for their entry, by span id."""
        self.lock = threading.RLock()
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None
        self.reaps: list[Path] = []
        self.reaped: set[Path] = set()
        self.stopping = False
        self.sleeping = False
        """The thread waits for work with no timeout (see Tracker._idle)."""

    def open_handles(self, wait: float) -> list[Handle]:
        """The executions open now, with a record or not yet. Waits at most wait seconds
        for the lock (the thread holds it while it writes a record: a stuck disk must not
        stall exit or a metrics collection); without it, a handle the thread is moving
        at that moment may be missed."""
        locked = self.lock.acquire(timeout=wait)
        try:
            return [*self.runs.values(), *self.taken.values()]
        finally:
            if locked:
                self.lock.release()

    def start(self) -> None:
        """Start the thread once; without one (interpreter shutdown), no records."""
        with self.lock:
            if self.thread is not None or self.stopping:
                return
            thread = threading.Thread(target=self._loop, name="betty_otel-inflight", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # no new threads at interpreter shutdown
                self.stopping = True
                return
            self.thread = thread

    def _loop(self) -> None:
        while not self.stopping:
            self.wake.clear()
            try:
                self._reap_queued()
                delay = self._step(time.monotonic_ns())
            except Exception:  # noqa: BLE001 - the thread must outlive any one failure
                internal_error("keeping records of executions in flight")
                delay = LAST_SEEN_INTERVAL
            if delay is None:
                if self._retire():
                    return
                self._idle()
            else:
                self.wake.wait(delay)

    def _retire(self) -> bool:
        """End the thread when no pipeline is watched (shut down) and nothing is in
        flight: a shut-down process keeps no thread of ours. Under the lock, so `start`
        after the next configure always finds either this thread at work or none."""
        with self.lock:
            if self.settings is not None or self.has_work():
                return False
            self.thread = None
            return True

    def has_work(self) -> bool:
        """Something `_step` would act on or wait for (the same test as its own)."""
        return bool(self.reaps or self.taken) or any(
            _waits(handle) for handle in list(self.runs.values())
        )

    def _idle(self) -> None:
        """Nothing in flight: wait one more ``inflight_after`` (the short calls of a busy
        program then find the thread awake and never wake it: at most one wake-up per
        ``inflight_after``), then without a timeout until `track` sets wake.

        sleeping is set before runs is looked at, and track puts its run in runs before
        it looks at sleeping: either this sees the run, or track sees sleeping and wakes it.
        """
        settings = self.settings
        after = None if settings is None else settings.after_ns
        if self.wake.wait(after / 1e9 if after else LAST_SEEN_INTERVAL) or self.has_work():
            return
        self.sleeping = True
        if not self.has_work():
            self.wake.wait()
        self.sleeping = False

    def _reap_queued(self) -> None:
        while self.reaps and not self.stopping:
            log = self.reaps.pop(0)
            from betty_otel._inflight.reaper import reap  # noqa: PLC0415 - the thread only

            try:
                reaped = reap(log, limit=AUTO_REAP_LIMIT)
            except OSError as exc:
                logger.warning(
                    "betty_otel: could not record the abandoned executions of %s (%s); "
                    "`betty-telemetry repair` records them",
                    log,
                    exc,
                )
            else:
                if reaped.recorded:
                    logger.info("betty_otel: recorded %d abandoned execution(s)", reaped.recorded)

    def _step(self, now: int) -> float | None:
        """Write the records that are due and refresh the ones that are stale; the
        seconds until the next thing is due (None: nothing is)."""
        wait: int | None = None
        due: list[Handle] = []
        for handle in list(self.runs.values()):
            limit = handle.settings.after_ns
            if limit is None or handle.state == UNRECORDABLE:
                continue
            left = max(handle.start_at(now) + limit, handle.settings.retry_at) - now
            if left <= 0:
                due.append(handle)
            else:
                wait = left if wait is None else min(wait, left)
        if due:
            self._record(due, now)
            return _MIN_WAIT  # whatever could not be written yet is looked at again soon
        stale = [h for h in list(self.taken.values()) if now - h.refreshed >= _interval_ns()]
        if stale:
            self._refresh(stale, now)
        for handle in list(self.taken.values()):
            left = handle.refreshed + _interval_ns() - now
            wait = left if wait is None else min(wait, left)
        return None if wait is None else max(wait / 1e9, _MIN_WAIT)

    def _record(self, due: Sequence[Handle], now: int) -> None:
        owner = this_process()
        for settings, handles in _by_settings(due):
            try:
                folder_fd = open_folder(settings.folder, create=True)
                try:
                    for handle in handles:
                        self._write(folder_fd, handle, owner, now)
                finally:
                    os.close(folder_fd)
            except OSError as exc:
                _cannot_record(settings, exc, now)

    def _write(self, folder_fd: int, handle: Handle, owner: Owner, now: int) -> None:
        """Write one record, unless the execution ended meanwhile."""
        with self.lock:
            if self.runs.pop(handle, None) is None:
                return  # it ended
            try:
                handle.start_ns, entry = _pending_entry(handle.run)
                name = record_name(entry["trace_id"], entry["span_id"])
                record = encode_record(owner, handle.start_ns, entry)
                write_record(folder_fd, name, record, handle.last_seen(now))
            except OSError:
                self.runs[handle] = handle  # the folder's fault: retried later
                raise
            except Exception:  # noqa: BLE001 - this run's data: it ends without a record
                handle.state = UNRECORDABLE
                self.runs[handle] = handle
                internal_error("writing the record of an execution in flight")
                return
            handle.name, handle.span_id = name, int(entry["span_id"], 16)
            handle.state, handle.refreshed = RECORDED, now
            self.taken[handle] = handle

    def _refresh(self, stale: Iterable[Handle], now: int) -> None:
        """Set each record's last-seen time (its mtime), never creating one."""
        for settings, handles in _by_settings(stale):
            for handle in handles:
                handle.refreshed = now  # done or not, the next try is an interval away
            try:
                folder_fd = open_folder(settings.folder, create=False)
            except OSError:
                continue  # gone or replaced: the records were not kept (said when written)
            try:
                for handle in handles:
                    with self.lock:
                        if handle.state == RECORDED:
                            _touch(folder_fd, handle.name, handle.last_seen(now))
            finally:
                os.close(folder_fd)


def _waits(handle: Handle) -> bool:
    """The handle's record is still to be written."""
    return handle.settings.after_ns is not None and handle.state != UNRECORDABLE


def _touch(folder_fd: int, name: str, seen: int) -> None:
    """Set a record's last-seen time; a record that is gone stays gone (never re-created:
    removed by repair --max-age elsewhere)."""
    with contextlib.suppress(OSError):
        os.utime(name, ns=(seen, seen), dir_fd=folder_fd, follow_symlinks=False)


def _interval_ns() -> int:
    return int(LAST_SEEN_INTERVAL * 1e9)


def _by_settings(handles: Iterable[Handle]) -> list[tuple[Settings, list[Handle]]]:
    grouped: dict[int, tuple[Settings, list[Handle]]] = {}
    for handle in handles:
        grouped.setdefault(id(handle.settings), (handle.settings, []))[1].append(handle)
    return list(grouped.values())


def _cannot_record(settings: Settings, exc: OSError, now: int) -> None:
    """Say once per configuration that records cannot be kept; retry a minute later."""
    settings.retry_at = now + _RETRY_NS
    if settings.warned:
        return
    settings.warned = True
    logger.warning(
        "betty_otel: cannot keep records of executions in flight in %s (%s); each execution "
        "is still recorded when it ends, but one whose process dies meanwhile leaves no "
        "trace (retried every minute)",
        settings.folder,
        exc.strerror or exc,
    )


def _pending_entry(run: Run) -> tuple[int, dict[str, Any]]:
    """The record's data: (start in ns, the entry the execution would make now, with
    status pending), from betty_otel's own record of the run (see `betty_otel._record`),
    as its entry will be: nothing code did to its span changes it.

    Raises:
        TypeError: the span is none the SDK or the FileTracer made (it has no start).
    """
    span = run.span
    if not isinstance(span, ReadableSpan):
        msg = f"a {type(span).__name__} is no readable span"
        raise TypeError(msg)
    context = span.get_span_context()
    attributes = {**run.attributes, **run.outcome("pending")}
    start = span.start_time or time.time_ns()
    parent = span.parent
    entry = execution_entry(
        attributes,
        name=span.name,
        outcome=None,
        start=start,
        end=start,
        ids=(context.trace_id, context.span_id),
        parent_span_id=None if parent is None else parent.span_id,
    )
    return start, entry
