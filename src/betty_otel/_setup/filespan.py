"""The file tracer: light spans for when the telemetry file is their only receiver.

On betty_otel's own provider with no collector and not all_spans, nothing but our
file processor would ever receive an execution's span, and the SDK's span (limits,
locks, BoundedAttributes, events) costs more per call than the whole rest of the
decorator. There `configure()` uses a `FileTracer` instead (see `pipeline`): its
`FileSpan` is an OpenTelemetry API span (so it can be current inside the execution,
behind `betty_otel._current.CurrentSpan`: nesting, `subprocess_env`, log correlation
keep working) and a
`ReadableSpan` with what the entry is made of, handed to the file processor when
it ends, exactly as the SDK span would have been. It is made as the SDK's tracer
makes a span on our ALWAYS_ON provider: ids as RandomIdGenerator makes them, the
parent and its trace state from the context, attribute values cleaned as the SDK
cleans them, the status as the SDK sets it. Events are not kept: no entry holds them.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Final

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util import types

from betty_otel._ids import new_ids

__all__ = ["FileSpan", "FileTracer"]

_PLAIN: Final = frozenset((str, bool, int, float))
"""Attribute value types the SDK stores as they are (no length limit is set: see pipeline)."""
_ROOT_FLAGS: Final = TraceFlags(TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID)


def _cleaned(attributes: Mapping[str, types.AnyValue]) -> dict[str, types.AnyValue]:
    """The attributes as the SDK would store them: plain values as they are, the others
    (sequences, invalid types or keys) through the API's own cleaning."""
    for key, value in attributes.items():
        if type(value) not in _PLAIN or type(key) is not str or not key:
            return dict(BoundedAttributes(attributes=attributes, immutable=False))
    return dict(attributes)


class FileTracer(trace.Tracer):
    """A tracer whose spans go to one processor, the file's; see the module docstring."""

    def __init__(self, processor: SpanProcessor) -> None:
        self.processor = processor
        self.resource = Resource.create()  # as our provider's: OTEL_SERVICE_NAME and the rest
        self.scope = InstrumentationScope("betty_otel", "")

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,  # noqa: ARG002 - every execution is INTERNAL
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = None,  # noqa: ARG002 - no entry holds links
        start_time: int | None = None,
        record_exception: bool = True,  # noqa: ARG002 - no entry holds events
        set_status_on_exception: bool = True,  # noqa: ARG002 - Run sets the status
    ) -> FileSpan:
        parent: SpanContext | None = trace.get_current_span(context).get_span_context()
        if parent is None or not parent.is_valid:
            parent = None
            trace_id, span_id = new_ids(None, random.getrandbits)
            flags, state = _ROOT_FLAGS, None
        else:
            trace_id, span_id = new_ids(parent.trace_id, random.getrandbits)
            flags = TraceFlags(
                TraceFlags.SAMPLED | (parent.trace_flags & TraceFlags.RANDOM_TRACE_ID)
            )
            state = parent.trace_state
        return FileSpan(
            self,
            name,
            SpanContext(trace_id, span_id, is_remote=False, trace_flags=flags, trace_state=state),
            parent,
            {} if attributes is None else _cleaned(attributes),
            time.time_ns() if start_time is None else start_time,
        )

    @contextlib.contextmanager
    def start_as_current_span(  # type: ignore[override] # the API types it with a private class
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace.Span]:
        """As the SDK's: start_span, then the API's use_span (the Tracer API asks for it)."""
        span = self.start_span(
            name, context, kind, attributes, links, start_time, record_exception,
            set_status_on_exception,
        )  # fmt: skip
        with trace.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current


class FileSpan(trace.Span, ReadableSpan):
    """An execution's span when the file is its only receiver (see the module docstring).

    The write side is the OpenTelemetry API span; the read side is the SDK's
    ReadableSpan, which the file processor and exporter read. After end() it changes
    no more, as an SDK span.
    """

    def __init__(
        self,
        tracer: FileTracer,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        attributes: dict[str, types.AnyValue],
        start_time: int,
    ) -> None:
        super().__init__(
            name,
            context,
            parent,
            tracer.resource,
            attributes,
            start_time=start_time,
            instrumentation_scope=tracer.scope,
        )
        self._tracer = tracer
        self._values = attributes  # the dict ReadableSpan shows read-only
        self._unended = [True]
        """Popped by the one end() that ends the span: list.pop is atomic, so threads
        racing to end it end it once, with no lock (none to be held across a fork)."""

    def get_span_context(self) -> SpanContext:
        return self._context  # type: ignore[return-value] # always given by FileTracer

    def is_recording(self) -> bool:
        return self._end_time is None

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        if self._end_time is None:
            self._values.update(_cleaned(attributes))

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        self.set_attributes({key: value})

    def add_event(
        self,
        name: str,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
    ) -> None:
        """Nothing: no entry holds events (the exception's message is betty.error)."""

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        """Nothing: an exception event is an event (see add_event)."""

    def update_name(self, name: str) -> None:
        if self._end_time is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """As the SDK's: an OK status is final, UNSET changes nothing."""
        if self._end_time is not None or self._status.status_code is StatusCode.OK:
            return
        if isinstance(status, Status):
            if status.status_code is not StatusCode.UNSET:
                self._status = status
        elif status is not StatusCode.UNSET:
            self._status = Status(status, description)

    def end(self, end_time: int | None = None) -> None:
        """End the span once (a later end() changes nothing) and hand it to the file."""
        try:
            self._unended.pop()
        except IndexError:
            return
        self._end_time = time.time_ns() if end_time is None else end_time
        self._tracer.processor.on_end(self)
