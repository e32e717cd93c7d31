"""Span processors: the file processors (synchronous and batched) and the provider switch.

A span whose creator writes its entry itself (TelemetryCapture.capture, which must
report a failed write to its caller) is ended inside `skip_file_processors()`; the file
processors leave it alone, so it is written exactly once, by the exporter path its
creator called.

The file processors write every recording span of an execution whatever its sampled
flag: on a program's provider the program's sampler decides what its own exporters
see, never what the audit log holds (see `sampling`). An execution's span is known by
its record (`betty_otel._record`), which the processor takes as the span ends and keeps
beside it until the entry is written: the entry is made from it.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Final

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from betty_otel._entry import ATTR_SKILL
from betty_otel._errors import internal_error
from betty_otel._record import record_of
from betty_otel._state import STATE
from betty_otel.exporter import BettyFileExporter, Ended

__all__ = [
    "BatchFileProcessor",
    "FileProcessor",
    "ProcessorSwitch",
    "after_fork_in_child",
    "in_a_child_process",
    "skip_file_processors",
]

_SKIP_FILE_PROCESSORS: Final = otel_context.create_key("betty_otel.skip-file-processors")


@contextlib.contextmanager
def skip_file_processors() -> Iterator[None]:
    """Spans ended in this block are written by their creator, not by the file processors.

    Other processors (a collector's, a program's own, the testing helper's) still
    receive them, as every span.
    """
    token = otel_context.attach(otel_context.set_value(_SKIP_FILE_PROCESSORS, True))
    try:
        yield
    finally:
        otel_context.detach(token)


def _for_the_file(span: ReadableSpan) -> Ended | None:
    """The span and its execution's record, when the file takes it: an execution's span
    (sampled or not; see `betty_otel._record`), or any other sampled span (for
    all_spans); None when its creator writes it itself (see skip_file_processors)."""
    record = record_of(span)
    if record is not None:  # a Run's span: its creator is never TelemetryCapture
        return span, record
    if otel_context.get_value(_SKIP_FILE_PROCESSORS) is not None:
        return None
    context = span.context
    if context is not None and context.trace_flags.sampled:
        return span, None
    attributes = span.attributes
    return (span, None) if attributes is not None and ATTR_SKILL in attributes else None


_batch_processors: weakref.WeakSet[BatchFileProcessor] = weakref.WeakSet()
"""The live batch processors, for after_fork_in_child (one hook for the process, never
one per processor: every configure(batch=True) makes a processor)."""


def after_fork_in_child() -> None:
    """The batches queued are the parent's to write: the child writes its own at once."""
    for processor in list(_batch_processors):
        processor.after_fork_in_child()


def in_a_child_process() -> bool:
    """True in a forked process, or in any process that multiprocessing started.

    Such processes are often ended with os._exit (fork-based servers, multiprocessing
    workers) or terminated (``with Pool(...)``), skipping every exit hook.
    """
    if STATE.forked:
        return True
    multiprocessing = sys.modules.get("multiprocessing")  # imported in all of its children
    return multiprocessing is not None and multiprocessing.parent_process() is not None


class ProcessorSwitch(SpanProcessor):
    """Our file processor inside a provider we do not own, which cannot remove one.

    One per provider (kept in STATE): a reconfigure points it at the new pipeline's
    processor, a shutdown at nothing, so reconfiguring adds nothing. An execution of
    ours that ends after a shutdown, and any span begun before it, still goes to the
    file processor that was current (see detach): every execution is in the log once.
    """

    def __init__(self) -> None:
        self.inner: SpanProcessor | None = None
        self.late: tuple[SpanProcessor, int] | None = None
        """The file processor detached last, and when (time_ns): for spans started before."""

    def detach(self, inner: SpanProcessor, late: SpanProcessor | None) -> None:
        """Point at nothing, unless a newer pipeline's processor took inner's place; our
        executions ending later, and spans begun until now, go to late (the detached
        file processor)."""
        if self.inner is inner:
            self.inner = None
            self.late = None if late is None else (late, time.time_ns())

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        inner = self.inner
        if inner is not None:
            inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        inner = self.inner
        if inner is not None:
            inner.on_end(span)
            return
        late = self.late
        if late is not None and (
            record_of(span) is not None  # an execution of ours, whenever its span began
            or (span.start_time is not None and span.start_time <= late[1])
        ):
            late[0].on_end(span)

    def shutdown(self) -> None:
        inner, self.inner, self.late = self.inner, None, None
        if inner is not None:
            inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        inner = self.inner
        return True if inner is None else inner.force_flush(timeout_millis)


class FileProcessor(SpanProcessor):
    """Synchronous file export: the entry is on disk when the span's end() returns.

    Leaner than SimpleSpanProcessor, which also suppresses instrumentation around
    network exporters; writing a local file needs none of that.
    """

    def __init__(self, exporter: BettyFileExporter) -> None:
        self._exporter = exporter

    def on_end(self, span: ReadableSpan) -> None:
        ended = _for_the_file(span)
        if ended is not None:
            self._exporter.write((ended,))

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:  # noqa: ARG002 - SDK signature
        return True


class BatchFileProcessor(SpanProcessor):
    """Batched file export: no call waits long, no span is dropped silently.

    A background thread writes the queue every `delay` seconds, or as soon as
    `max_batch` spans wait, as one locked append of everything queued (so the file
    keeps recording order, and a held lock costs one lock timeout per round). A full
    queue (`max_queue`) is backpressure, bounded: the ending thread waits at most one
    lock timeout for the writer to take the queue; if the writer is still stuck,
    spans are dropped, counted in the exporter's ``dropped`` and logged once, until
    it takes the queue again, so no call waits twice.

    Batching is a per-process optimisation: in a forked child (os.fork, fork-based
    servers, multiprocessing) and in any multiprocessing child this writes
    synchronously, since those often end with os._exit or are terminated, skipping
    every exit hook, and a queue would die with them.
    """

    def __init__(
        self,
        exporter: BettyFileExporter,
        *,
        delay: float = 1.0,
        max_batch: int = 512,
        max_queue: int = 8192,
    ) -> None:
        self._exporter = exporter
        self._delay = delay
        self._max_batch = max_batch
        self._max_queue = max_queue
        self._synchronous = in_a_child_process()
        self._init_state()
        _batch_processors.add(self)  # for the at-fork hook; weakly held

    def _init_state(self) -> None:
        self._lock = threading.RLock()
        self._room = threading.Condition(self._lock)
        self._export_lock = threading.RLock()
        self._wake = threading.Event()
        self._queue: list[Ended] = []
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._overflowing = False

    def after_fork_in_child(self) -> None:
        """The queued spans are the parent's to write; the child writes its own at once."""
        self._init_state()
        self._synchronous = True

    def on_end(self, span: ReadableSpan) -> None:
        ended = _for_the_file(span)
        if ended is None:
            return
        if self._synchronous:
            self._exporter.write((ended,))
            return
        with self._lock:
            if self._stopped:
                late = True
            elif len(self._queue) >= self._max_queue and not self._room_made():
                late = False
            else:
                self._queue.append(ended)
                if len(self._queue) >= self._max_batch:
                    self._wake.set()
                if self._thread is None:
                    self._start_writer()
                return
        if late:  # a span after shutdown: the exporter counts it as dropped
            self._exporter.write((ended,))
        else:
            self._exporter.drop(1, "the batch queue is full and the file is not being written")

    def _start_writer(self) -> None:
        """Start the writer thread (the lock is held); write synchronously if none can start."""
        thread = threading.Thread(target=self._run, name="betty_otel-file-writer", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no new threads at interpreter shutdown
            self._synchronous = True
            queued, self._queue = self._queue, []
            self._exporter.write(queued)
            return
        self._thread = thread

    def _room_made(self) -> bool:
        """With the lock held: wait up to one lock timeout for the writer to take the queue."""
        if self._overflowing:
            return False
        self._wake.set()
        if self._room.wait_for(
            lambda: len(self._queue) < self._max_queue, timeout=self._exporter.lock_timeout
        ):
            return True
        self._overflowing = True
        return False

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(self._delay)
            self._wake.clear()
            try:
                self._drain()
            except Exception:  # noqa: BLE001 - the writer must outlive any one failure
                internal_error("writing the batch queue")

    def _drain(self) -> None:
        """Write everything queued so far, in order, as one append."""
        with self._export_lock:
            with self._lock:
                queued, self._queue = self._queue, []
                self._overflowing = False
                self._room.notify_all()
            if queued:
                self._exporter.write(queued)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:  # noqa: ARG002 - SDK signature
        self._drain()
        return True

    def shutdown(self) -> None:
        with self._lock:
            self._stopped = True
            thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self._exporter.lock_timeout + 1)
        self._drain()
        self._exporter.shutdown()
