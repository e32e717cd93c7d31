"""betty_otel's own record of an execution, handed to the file processors as its span ends.

An entry is made from this record (DESIGN, "What the entry is made from"), never from
what the span holds when it ends: user code can change the span it sees as current
(attributes past the SDK's count limit evict betty_otel's, ``betty.*`` keys can be
written), and the SDK hands its processors a read-only copy of the span, so the record
cannot ride on the span object. `Run` ends its span through `end_with_record`, which
holds the record under the span's ids while the span's processors run: the SDK calls
them inside ``end()``, from the ending thread or, with a concurrent multi-processor,
from pool threads it waits for. A file processor finds it with `record_of`, and keeps
it beside the span until the entry is written (a batch is written later, elsewhere).
Standard library only: reading the log never needs OpenTelemetry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import Span

__all__ = ["Record", "end_with_record", "on_reset", "record_of"]

Record = Mapping[str, Any]
"""An execution's ``betty.*`` attributes as betty_otel made them: skill, caller and
status, and its inputs, error message and metadata when it has them (redacted)."""

_ending: dict[int, tuple[int, Record]] = {}
"""The record of each execution whose span is ending right now, by span id, with its
trace id: what the file processors map it from."""


def end_with_record(span: Span, record: Record, end_time: int | None = None) -> None:
    """End span; its processors see record as the execution's (see `record_of`)."""
    context = span.get_span_context()
    ending = _ending
    key = context.span_id
    ending[key] = (context.trace_id, record)
    try:
        span.end(end_time=end_time)
    finally:
        ending.pop(key, None)


def record_of(span: ReadableSpan) -> Record | None:
    """The record of span while `end_with_record` ends it; None for any other span
    (other instrumentation's, a span made by hand, one ended some other way)."""
    context = span.context
    if context is None:
        return None
    held = _ending.get(context.span_id)
    if held is None or held[0] != context.trace_id:
        return None
    return held[1]


def on_reset() -> None:
    """Forget the records of spans ending (none is, when nothing runs)."""
    _ending.clear()
