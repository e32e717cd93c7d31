"""Executions in flight in this process: the hooks the recording path calls, and the one
background thread that writes their records.

Cost: for a call shorter than ``inflight_after``, `track` makes one small handle and puts
it in a dict, and `claim` takes it out again: about a microsecond, no lock, no disk. The
thread (a daemon: it never holds up exit) wakes about every ``inflight_after`` seconds
(at once when it is 0), writes the record of each execution older than that, refreshes
each record's last-seen time every `LAST_SEEN_INTERVAL` seconds, and, once per log,
reaps the abandoned records of the log a pipeline was configured with (at most
`AUTO_REAP_LIMIT` executions, see `betty_otel._inflight.reaper`).

Ending an execution that has a record (`claim`, which finish_run calls first): the record
is renamed to ``...ending-<mark>``; the exporter calls `written` once the entry is in the
file, which removes the record. A failure to write records (the folder is a file, a
link, unwritable, full) is said once per configuration, retried a minute later, and
never reaches the program: the execution is still recorded when it ends.

At exit (`finish_unfinished`, before the pipeline shuts down) the executions still open
are recorded once: a generator's as closing it records it, anything else (a daemon
thread's) as ``error``, unfinished at exit.

Fork: the child starts with no executions of its own (it never touches its parent's
records) and starts its own thread when it needs one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from opentelemetry.sdk.trace import ReadableSpan

from betty_otel._entry import ATTR_METADATA, ATTR_STATUS, execution_entry
from betty_otel._errors import handle_internal_errors, internal_error
from betty_otel._inflight.owner import this_process
from betty_otel._inflight.records import (
    encode_record,
    folder_of,
    open_folder,
    phase_name,
    record_name,
    write_record,
)
from betty_otel._state import STATE

if TYPE_CHECKING:
    from betty_otel._run import Run

__all__ = [
    "AUTO_REAP_LIMIT",
    "DEFAULT_AFTER",
    "ENV_AFTER",
    "LAST_SEEN_INTERVAL",
    "Handle",
    "Tracker",
    "claim",
    "finish_unfinished",
    "inflight_after",
    "mark_generator",
    "track",
    "watch",
    "written",
]

logger = logging.getLogger(__name__)

ENV_AFTER: Final = "BETTY_TELEMETRY_INFLIGHT_AFTER"
DEFAULT_AFTER: Final = 1.0
"""Seconds an execution runs before it gets a record, unless configured otherwise."""
LAST_SEEN_INTERVAL: Final = 2.0
"""Seconds between two refreshes of a record's last-seen time."""
AUTO_REAP_LIMIT: Final = 10_000
"""Executions a newly configured writer reaps at most (in its thread; repair does all)."""
_RETRY_NS: Final = 60_000_000_000
_MIN_WAIT: Final = 0.005
_OPEN, _RECORDED, _ENDED = 0, 1, 2
_UNFINISHED: Final = "unfinished at exit: the program exited while this execution was running"


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
        self.began = time.monotonic_ns()
        self.state = _OPEN
        self.generator = False

    def last_seen(self, now: int) -> int:
        """The wall time now, as the run's own clock since its start says (immune to
        wall-clock jumps since)."""
        return self.start_ns + max(now - self.began, 0)


class Tracker:
    """This process's executions in flight and the thread that records them."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings
        self.runs: dict[int, Handle] = {}
        """Open executions without a record, by id(handle)."""
        self.taken: dict[int, Handle] = {}
        """Open executions with a record."""
        self.ending: dict[int, Handle] = {}
        """Ended executions whose record waits for their entry, by span id."""
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None
        self.reaps: list[Path] = []
        self.reaped: set[Path] = set()
        self.stopping = False

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
            self.wake.wait(delay)

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

    def _step(self, now: int) -> float:
        """Write the records that are due and refresh the ones that are stale; the
        seconds until the next thing is due."""
        settings = self.settings
        after = None if settings is None else settings.after_ns
        wait = after if after else int(LAST_SEEN_INTERVAL * 1e9)
        due: list[Handle] = []
        for handle in list(self.runs.values()):
            limit = handle.settings.after_ns
            if limit is None:
                continue
            left = max(handle.began + limit, handle.settings.retry_at) - now
            if left <= 0:
                due.append(handle)
            else:
                wait = min(wait, left)
        if due:
            self._record(due, now)
        stale = [h for h in list(self.taken.values()) if now - h.refreshed >= _interval_ns()]
        if stale:
            self._refresh(stale, now)
        for handle in list(self.taken.values()):
            wait = min(wait, handle.refreshed + _interval_ns() - now)
        return max(wait / 1e9, _MIN_WAIT)

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

    def _write(self, folder_fd: int, handle: Handle, owner: Any, now: int) -> None:
        """Write one record, unless the execution ended meanwhile."""
        with self.lock:
            if self.runs.pop(id(handle), None) is None:
                return  # it ended
            try:
                data = _pending_entry(handle.run)
                if data is None:
                    self.runs[id(handle)] = handle  # busy span: next time
                    return
                handle.start_ns, entry = data
                name = record_name(entry["trace_id"], entry["span_id"])
                record = encode_record(owner, handle.start_ns, entry)
                write_record(folder_fd, name, record, handle.last_seen(now))
            except BaseException:
                self.runs[id(handle)] = handle
                raise
            handle.name, handle.span_id = name, int(entry["span_id"], 16)
            handle.state, handle.refreshed = _RECORDED, now
            self.taken[id(handle)] = handle

    def _refresh(self, stale: Iterable[Handle], now: int) -> None:
        """Set each record's last-seen time (its mtime), never creating one."""
        for settings, handles in _by_settings(stale):
            try:
                folder_fd = open_folder(settings.folder, create=False)
            except OSError:
                continue  # gone or replaced: the records were not kept (said when written)
            try:
                for handle in handles:
                    with self.lock:
                        if handle.state == _RECORDED:
                            _touch(folder_fd, handle.name, handle.last_seen(now))
                    handle.refreshed = now
            finally:
                os.close(folder_fd)


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


def _pending_entry(run: Run) -> tuple[int, dict[str, Any]] | None:
    """The record's data, from the run and its span: (start in ns, the entry the
    execution would make, with status pending). None while a thread changes the span."""
    from betty_otel._sanitize import to_json_text  # noqa: PLC0415 - the thread only

    span = run.span
    if not isinstance(span, ReadableSpan):
        return None
    context = span.get_span_context()
    try:
        attributes = dict(span.attributes or {})
    except RuntimeError:  # changed while copied
        return None
    attributes[ATTR_STATUS] = "pending"
    if run.metadata:
        attributes[ATTR_METADATA] = to_json_text(run.metadata)
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


# -- the hooks of the recording path ---------------------------------------------------


def track(run: Run) -> Handle | None:
    """Register a run that just started (in the current pipeline); never raises."""
    tracker = STATE.inflight
    if tracker is None:
        return None
    settings = tracker.settings
    if settings is None or settings.pipeline is not STATE.pipeline:
        return None  # a pipeline installed as is (the testing helper): no records
    try:
        handle = Handle(run, settings, tracker)
        tracker.runs[id(handle)] = handle
        if settings.after_ns is not None:
            if tracker.thread is None:
                tracker.start()
            elif not settings.after_ns:
                tracker.wake.set()
    except Exception:  # noqa: BLE001 - telemetry must never break the host program
        internal_error("tracking an execution in flight")
        return None
    return handle


def mark_generator(run: Run) -> None:
    """The run covers a generator's iteration (at exit it ends as closing it would)."""
    handle = run.inflight
    if handle is not None:
        handle.generator = True


def claim(handle: Handle | None) -> bool:
    """Take the right to end this execution; False when it was ended already (at exit).

    An execution with a record gets its ``ending`` mark here. Never raises.
    """
    if handle is None:
        return True
    tracker = handle.tracker
    if tracker.runs.pop(id(handle), None) is not None:
        return True  # the usual case: no record
    if tracker is not STATE.inflight:
        return True  # begun before a fork: its record is the parent's
    try:
        with tracker.lock:
            if handle.state == _OPEN:
                # Not in runs a moment ago: another claim took it, unless the thread's
                # failed write has just put it back.
                return tracker.runs.pop(id(handle), None) is not None
            if handle.state == _ENDED:
                return False
            handle.state = _ENDED
            tracker.taken.pop(id(handle), None)
        _mark_ending(tracker, handle)
    except Exception:  # noqa: BLE001 - telemetry must never break the host program
        internal_error("ending an execution in flight")
    return True


def _mark_ending(tracker: Tracker, handle: Handle) -> None:
    """Rename the record to ``...ending-<mark>`` and wait for the entry (see `written`)."""
    from betty_otel._inflight.reaper import newest_mark  # noqa: PLC0415 - long executions only

    settings = handle.settings
    ending = phase_name(handle.name, "ending", newest_mark(settings.log))
    try:
        folder_fd = open_folder(settings.folder, create=False)
        try:
            os.rename(handle.name, ending, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
        finally:
            os.close(folder_fd)
    except OSError as exc:  # removed or replaced: the entry is all there is to write
        logger.debug("betty_otel: could not mark %s as ending: %s", handle.name, exc)
        return
    handle.name = ending
    tracker.ending[handle.span_id] = handle


def written(spans: Sequence[ReadableSpan]) -> None:
    """The entries of spans are in the file: remove the records that waited for them."""
    tracker = STATE.inflight
    if tracker is None or not tracker.ending:
        return
    for span in spans:
        context = span.context
        handle = None if context is None else tracker.ending.pop(context.span_id, None)
        if handle is None:
            continue
        try:
            folder_fd = open_folder(handle.settings.folder, create=False)
            try:
                os.unlink(handle.name, dir_fd=folder_fd)
            finally:
                os.close(folder_fd)
        except OSError as exc:  # gone already: a reaper found the entry
            logger.debug("betty_otel: could not remove %s: %s", handle.name, exc)


def finish_unfinished() -> None:
    """Record, once, every execution of this process still open (at exit)."""
    tracker = STATE.inflight
    if tracker is None:
        return
    tracker.stopping = True
    tracker.wake.set()
    for handle in [*tracker.runs.values(), *tracker.taken.values()]:
        if handle.tracker is tracker and claim(handle):
            run = handle.run
            with handle_internal_errors("recording an execution unfinished at exit"):
                if not handle.generator:
                    run.set_error("error", _UNFINISHED)
                run.end()


def watch(pipeline: object, log: Path | None, after: float | None) -> None:
    """Records of pipeline's executions go beside log (None: none), after seconds.

    The first time in this process, the log's abandoned records are reaped in the thread.
    """
    tracker = STATE.inflight
    if tracker is None:
        tracker = STATE.inflight = Tracker()
    tracker.settings = None if log is None else Settings(pipeline, log, after)
    if log is None or log in tracker.reaped:
        return
    try:
        is_folder = stat.S_ISDIR(os.lstat(folder_of(log)).st_mode)
    except OSError:
        is_folder = False
    if is_folder:
        tracker.reaped.add(log)
        tracker.reaps.append(log)
        tracker.start()
        tracker.wake.set()


def _forget_in_child() -> None:
    tracker = STATE.inflight
    if tracker is not None:
        STATE.inflight = Tracker(tracker.settings)


os.register_at_fork(after_in_child=_forget_in_child)
