"""The hooks of the recording path: what `_run`, the decorator, the exporter and the
pipeline call (see `betty_otel._inflight`).

Cost: for a call shorter than ``inflight_after``, `track` makes one small handle and puts
it in a dict, and `claim` takes it out again: under a microsecond, no lock, no clock,
no disk.

Ending an execution that has a record (`claim`, which finish_run calls first): the record
is renamed to ``...ending-<mark>``; the exporter calls `written` once the entry is in the
file, which removes the record (`betty_otel._inflight.reaper` says why a crash between
any two of these steps costs neither the execution nor a duplicate).

At exit (`finish_unfinished`, before the pipeline shuts down), the executions still open
are recorded once: a generator's as closing it records it, anything else (a daemon
thread's) as ``error``, unfinished at exit.

Fork: the child starts with a tracker of its own, with no executions (it never touches
its parent's records); its thread starts when it needs one.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Final

from opentelemetry.sdk.trace import ReadableSpan

from betty_otel._errors import handle_internal_errors, internal_error
from betty_otel._inflight.records import folder_of, open_folder, phase_name
from betty_otel._inflight.settings import Settings
from betty_otel._inflight.tracker import ENDED, OPEN, UNRECORDABLE, Handle, Tracker
from betty_otel._state import STATE

if TYPE_CHECKING:
    from betty_otel._run import Run

__all__ = [
    "after_fork_in_child",
    "claim",
    "finish_unfinished",
    "mark_generator",
    "open_runs",
    "track",
    "unwatch",
    "watch",
    "written",
]

logger = logging.getLogger(__name__)

_UNFINISHED: Final = "unfinished at exit: the program exited while this execution was running"
_EXIT_WAIT: Final = 1.0
"""Seconds exit waits for the thread to finish writing a record."""
_COLLECT_WAIT: Final = 0.1
"""Seconds a metrics collection waits for it."""


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
        tracker.runs[handle] = handle
        if settings.after_ns is not None:
            if tracker.thread is None:
                tracker.start()
            elif (tracker.sleeping or not settings.after_ns) and not tracker.wake.is_set():
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
    if tracker.runs.pop(handle, None) is not None:
        return True  # the usual case: no record
    if tracker is not STATE.inflight:
        return True  # begun before a fork: its record is the parent's
    try:
        with tracker.lock:
            if handle.state in (OPEN, UNRECORDABLE):
                # Not in runs a moment ago: another claim took it, unless the thread's
                # failed write has just put it back.
                return tracker.runs.pop(handle, None) is not None
            if handle.state == ENDED:
                return False
            handle.state = ENDED
            tracker.taken.pop(handle, None)
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


def written(spans: Iterable[ReadableSpan]) -> None:
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
    for handle in tracker.open_handles(_EXIT_WAIT):
        if handle.tracker is tracker and claim(handle):
            run = handle.run
            with handle_internal_errors("recording an execution unfinished at exit"):
                if not handle.generator:
                    run.set_error("error", _UNFINISHED)
                run.end()


def open_runs() -> list[Run]:
    """The runs of this process open now (what the metrics' active count counts): the
    same registry the records are written from, whether or not a run has one yet."""
    tracker = STATE.inflight
    if tracker is None:
        return []
    return [handle.run for handle in tracker.open_handles(_COLLECT_WAIT)]


def unwatch() -> None:
    """The pipeline was shut down: no new records. The thread ends once nothing is in
    flight; when nothing is, this waits for it (briefly), so that a process that shut
    betty_otel down has no thread of ours left (a later fork, or the parallel reader,
    needs a process with one thread)."""
    tracker = STATE.inflight
    if tracker is None:
        return
    tracker.settings = None
    thread = tracker.thread
    tracker.wake.set()
    if thread is not None and thread is not threading.current_thread() and not tracker.has_work():
        thread.join(_EXIT_WAIT)


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


def after_fork_in_child() -> None:
    """The executions in flight are the parent's: the child tracks its own, with the
    same settings (and no thread yet)."""
    tracker = STATE.inflight
    if tracker is not None:
        STATE.inflight = Tracker(tracker.settings)
