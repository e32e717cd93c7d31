"""BettyFileExporter: an OpenTelemetry SpanExporter that appends Betty entries to the file."""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Sequence
from datetime import tzinfo
from pathlib import Path
from typing import Any

import orjson  # noqa: F401 - loaded, so every entry is encoded by it (see betty_otel._jsontext)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from betty_otel._entry import span_to_entry
from betty_otel._errors import count_internal_error
from betty_otel._inflight.hooks import written
from betty_otel._record import Record, record_of
from betty_otel._store import TelemetryStore

__all__ = ["BettyFileExporter", "Ended", "after_fork_in_child", "write_spans"]

logger = logging.getLogger(__name__)


Ended = tuple[ReadableSpan, Record | None]
"""A finished span and betty_otel's record of its execution (None for a span without one)."""


def write_spans(
    store: TelemetryStore,
    spans: Sequence[Ended],
    *,
    tz: tzinfo | None = None,
    all_spans: bool = False,
) -> list[dict[str, Any]]:
    """Append the Betty entries of finished spans as one write; return them.

    The one path from spans to a telemetry file: BettyFileExporter writes through
    it, and so does TelemetryCapture.capture, which must report a failure. Each
    entry is made from its span's record when it has one (see `betty_otel._record`).

    Raises:
        OSError: what TelemetryStore.append raises; nothing was written then.
    """
    entries = [
        entry
        for span, record in spans
        if (entry := span_to_entry(span, record=record, tz=tz, all_spans=all_spans)) is not None
    ]
    store.append(entries)
    return entries


_exporters: weakref.WeakSet[BettyFileExporter] = weakref.WeakSet()
"""The live exporters, whose locks after_fork_in_child renews."""


def after_fork_in_child() -> None:
    """Locks of the child's: a thread of the parent may have held an exporter's at the fork
    (the child's next write would wait on it forever)."""
    for exporter in list(_exporters):
        exporter._lock = threading.RLock()


class BettyFileExporter(SpanExporter):
    """Map each finished span to a Betty entry and append the batch to telemetry.json.

    An execution's entry is made from betty_otel's record of it (see
    `betty_otel._record`); other spans from their attributes.

    A batch is one locked append. ``export()`` never raises: a failure (unwritable
    path, full disk, lock timeout) is logged once per kind of failure, counted in
    ``dropped`` (spans) and in `betty_otel.internal_errors` (failures), and reported as
    ``SpanExportResult.FAILURE``.

    Args:
        telemetry_file: the file; None means $BETTY_TELEMETRY_FILE or the default.
        all_spans: also write spans without ``betty.skill`` (other instrumentation).
        timezone: timestamps in this zone instead of UTC.
        fsync, lock_timeout, max_bytes, backups: see ``TelemetryStore``.

    Raises:
        ValueError: a setting is out of range (at construction, never on export).
    """

    def __init__(
        self,
        telemetry_file: str | os.PathLike[str] | None = None,
        *,
        all_spans: bool = False,
        timezone: tzinfo | None = None,
        fsync: bool = False,
        lock_timeout: float = 10.0,
        max_bytes: int = 0,
        backups: int = 5,
    ) -> None:
        self._store = TelemetryStore(
            telemetry_file,
            fsync=fsync,
            lock_timeout=lock_timeout,
            max_bytes=max_bytes,
            backups=backups,
        )
        self._all_spans = all_spans
        self._tz = timezone
        self._lock = threading.RLock()  # renewed in a forked child (after_fork_in_child)
        _exporters.add(self)
        self._shutdown = False
        self._logged: set[str] = set()  # kinds of failure logged since the last write
        self.exported = 0
        """Entries written since construction."""
        self.dropped = 0
        """Spans whose entries could not be written (each failure is also logged)."""

    @property
    def path(self) -> Path:
        """The telemetry file this exporter appends to."""
        return self._store.path

    @property
    def lock_timeout(self) -> float:
        """Seconds one write waits for the file lock (the longest a write blocks on it)."""
        return self._store.lock_timeout

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Append the Betty entries of spans as one write; never raises.

        A span exported while it ends (a synchronous processor) is mapped from its
        execution's record; see `write`.
        """
        if self._shutdown:  # the SpanExporter contract; our own processors use write
            self._count_drop("shutdown", len(spans), "it was exported after shutdown()")
            return SpanExportResult.FAILURE
        return self.write([(span, record_of(span)) for span in spans])

    def write(self, spans: Sequence[Ended]) -> SpanExportResult:
        """Append the entries of spans, each with the record its processor took as it
        ended (a batch is written after its spans ended); never raises. After shutdown
        too: betty_otel's processors write an execution in flight across it here."""
        try:
            entries = write_spans(self._store, spans, tz=self._tz, all_spans=self._all_spans)
        except Exception as exc:  # noqa: BLE001 - an exporter must never raise into the SDK
            self._count_drop(f"{type(exc).__name__}:{getattr(exc, 'errno', '')}", len(spans), exc)
            return SpanExportResult.FAILURE
        finally:
            if self._shutdown:  # an execution in flight across shutdown() or a reconfigure
                self._store.close()  # is still written, and leaves no descriptor open
        with self._lock:
            self.exported += len(entries)
            self._logged.clear()
        written(span for span, _ in spans)  # their records of executions in flight are done with
        return SpanExportResult.SUCCESS

    def drop(self, count: int, reason: str) -> None:
        """Count spans that never reached export (a full batch queue), logged as a failure."""
        self._count_drop(reason, count, reason)

    def _count_drop(self, kind: str, count: int, why: object) -> None:
        """Count the drop; log it fully once per kind of failure until a write succeeds,
        then at debug level (a file that stays unwritable must not flood the log)."""
        with self._lock:
            self.dropped += count
            repeated = kind in self._logged
            self._logged.add(kind)
        count_internal_error()
        log = logger.debug if repeated else logger.error
        log(
            "betty_otel could not write %d telemetry entr%s to %s: %s "
            "(your code still runs; this telemetry is dropped)",
            count,
            "y" if count == 1 else "ies",
            self._store.path,
            why,
        )

    def shutdown(self) -> None:
        """Close the file; safe to call more than once.

        `export` then fails, as the SpanExporter contract asks; `write` still writes
        what betty_otel's processors hand it (an execution in flight across `shutdown()`
        or a reconfigure, so that every execution is in the log once), keeping no
        descriptor open.
        """
        with self._lock:
            self._shutdown = True
        self._store.close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:  # noqa: ARG002 - SDK signature
        """Nothing is buffered here: every export is written before it returns."""
        return True
