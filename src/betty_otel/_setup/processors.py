"""Span processors: the file processors (synchronous and batched) and the on/off switch.

A span whose creator writes its entry itself (TelemetryCapture.capture, which must
report a failed write to its caller) is ended inside `creator_writes()`; the file
processors leave it alone, so it is written exactly once, by the exporter path its
creator called.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Iterator
from typing import Final

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from betty_otel.exporter import BettyFileExporter

__all__ = ["BatchFileProcessor", "FileProcessor", "Switch", "creator_writes"]

_CREATOR_WRITES: Final = otel_context.create_key("betty_otel.creator-writes")


@contextlib.contextmanager
def creator_writes() -> Iterator[None]:
    """Spans ended in this block are written by their creator, not by the file processors.

    Other processors (a collector's, a program's own, the testing helper's) still
    receive them, as every span.
    """
    token = otel_context.attach(otel_context.set_value(_CREATOR_WRITES, True))
    try:
        yield
    finally:
        otel_context.detach(token)


def _for_the_file(span: ReadableSpan) -> bool:
    """A sampled span that no creator writes itself (see creator_writes)."""
    context = span.context
    return (
        context is not None
        and context.trace_flags.sampled
        and otel_context.get_value(_CREATOR_WRITES) is None
    )


class Switch(SpanProcessor):
    """Our processor inside a provider we do not own: can be switched off on reconfigure,
    since the SDK has no way to remove a processor from a provider."""

    def __init__(self, inner: SpanProcessor) -> None:
        self.inner: SpanProcessor | None = inner

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        inner = self.inner
        if inner is not None:
            inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        inner = self.inner
        if inner is not None:
            inner.on_end(span)

    def shutdown(self) -> None:
        inner, self.inner = self.inner, None
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
        if _for_the_file(span):
            self._exporter.export((span,))

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:  # noqa: ARG002 - SDK signature
        return True


class BatchFileProcessor(SpanProcessor):
    """Batched file export that never drops a span.

    A background thread writes the queue every `delay` seconds, or as soon as
    `max_batch` spans wait. Unlike the SDK's BatchSpanProcessor, a full queue is not
    emptied by throwing spans away: the thread that ends a span past `max_queue`
    writes the queue itself (backpressure, not loss). Writes are serialised, so the
    file keeps recording order.
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
        self._init_state()
        # A forked child starts empty: the queued spans are the parent's to write.
        reinit = weakref.WeakMethod(self._init_state)
        os.register_at_fork(after_in_child=lambda: (method := reinit()) and method())

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._export_lock = threading.Lock()
        self._wake = threading.Event()
        self._queue: list[ReadableSpan] = []
        self._thread: threading.Thread | None = None
        self._stopped = False

    def on_end(self, span: ReadableSpan) -> None:
        if not _for_the_file(span):
            return
        with self._lock:
            if self._stopped:
                stopped = True
            else:
                stopped = False
                self._queue.append(span)
                waiting = len(self._queue)
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="betty_otel-file-writer", daemon=True
                    )
                    self._thread.start()
        if stopped:  # a late span after shutdown: the exporter counts it as dropped
            self._exporter.export((span,))
            return
        if waiting >= self._max_batch:
            self._wake.set()
        if waiting >= self._max_queue:
            self._drain()

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(self._delay)
            self._wake.clear()
            self._drain()

    def _drain(self) -> None:
        """Write everything queued so far, in order, in batches of max_batch."""
        with self._export_lock:
            with self._lock:
                queued, self._queue = self._queue, []
            for start in range(0, len(queued), self._max_batch):
                self._exporter.export(queued[start : start + self._max_batch])

    def force_flush(self, timeout_millis: int = 30_000) -> bool:  # noqa: ARG002 - SDK signature
        self._drain()
        return True

    def shutdown(self) -> None:
        with self._lock:
            self._stopped = True
            thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self._drain()
        self._exporter.shutdown()
