"""TelemetryCapture: record executions that were timed elsewhere, and read the log back."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from betty_otel import query as log_query
from betty_otel._entry import ATTR_CALLER
from betty_otel._manual import manual_execution
from betty_otel._metrics import record_execution
from betty_otel._setup import current_pipeline, shared_recording_tracer, skip_file_processors
from betty_otel._span_status import span_status_for
from betty_otel._store import TelemetryStore
from betty_otel.exporter import write_spans
from betty_otel.propagation import root_parent

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["TelemetryCapture"]


class TelemetryCapture:
    """Write entries for executions timed elsewhere, and query the log.

    Args:
        telemetry_file: the file; None means $BETTY_TELEMETRY_FILE or
            ./registry/telemetry.json.
        fsync: fsync after every capture (audit-grade durability; slower).
        lock_timeout: seconds to wait for the file lock before failing.
    """

    def __init__(
        self,
        telemetry_file: str | os.PathLike[str] | None = None,
        *,
        fsync: bool = False,
        lock_timeout: float = 10.0,
    ) -> None:
        self._store = TelemetryStore(telemetry_file, fsync=fsync, lock_timeout=lock_timeout)

    @property
    def path(self) -> Path:
        """The telemetry file."""
        return self._store.path

    def capture(
        self,
        skill: str,
        status: str,
        duration_ms: float,
        caller: str,
        inputs: Mapping[str, Any] | None = None,
        error_message: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Record one execution that ended now and took duration_ms; return its entry.

        The entry is on disk when this returns. It is recorded as a span from
        now - duration_ms to now, so it also reaches a configured collector.

        Raises:
            ValueError: an invalid status (``Invalid status: X. Must be one of: ...``),
                a negative or non-finite duration, an empty skill or caller.
            TypeError: a value of the wrong type (duration not a number, inputs or
                metadata not a dict, error_message not a string).
            OSError: the file could not be written (nothing was written).
        """
        execution = manual_execution(
            skill, status, duration_ms, caller, inputs, error_message, metadata
        )
        # capture() is an explicit request to write an entry: it records even when
        # telemetry is disabled (then through a tracer without processors).
        current = current_pipeline()
        tracer = current.tracer
        if tracer is None:
            tracer = shared_recording_tracer()
        context = root_parent(current.remote_parent)
        span = tracer.start_span(
            skill, context, attributes=execution.attributes, start_time=execution.start
        )
        span_status = span_status_for(execution.status, execution.error)
        if not span_status.is_unset:
            span.set_status(span_status)
        with skip_file_processors():  # the pipeline's file processors leave this span to us
            span.end(end_time=execution.end)
        seconds = (execution.end - execution.start) / 1e9
        record_execution(skill, execution.status, execution.attributes[ATTR_CALLER], seconds)
        try:
            # The entry is made from the checked capture, whatever the span kept of it
            # (attribute limits). SDK tracers make SDK spans, which are ReadableSpans.
            (entry,) = write_spans(self._store, [(span, execution.attributes)])  # type: ignore[list-item]
        finally:
            # No descriptor outlives the call: programs create a TelemetryCapture per
            # capture, and capture is not the hot path (the decorator's exporter is).
            self._store.close()
        return entry

    def query(
        self,
        skill: log_query.TextFilter = None,
        status: log_query.TextFilter = None,
        caller: log_query.TextFilter = None,
        limit: int | None = None,
        **options: Unpack[log_query.FilterOptions],
    ) -> list[dict[str, Any]]:
        """Entries matching every given filter, newest first, at most limit of them.

        The original skill's arguments, in its order; options are the other
        filters of `betty_otel.query.query` (since, until, trace_id,
        min_duration_ms, ignore_case).
        """
        return log_query.query(
            self.path, skill=skill, status=status, caller=caller, limit=limit, **options
        )

    def stats(
        self, by: log_query.GroupBy = "skill", **filter_args: Unpack[log_query.FilterArgs]
    ) -> dict[str | None, log_query.GroupStats]:
        """Per-group count, failure rate and duration percentiles; see `betty_otel.query.stats`."""
        return log_query.stats(self.path, by=by, **filter_args)

    def trace(self, trace_id: str) -> list[log_query.TraceNode]:
        """The tree of executions of one trace; see `betty_otel.query.trace`.

        Raises:
            TypeError, ValueError: trace_id is not a string of 32 hex digits.
        """
        return log_query.trace(self.path, trace_id)
