"""Pins the collector harness (tests/collector.py) with the plain OpenTelemetry SDK.

No betty_otel code here: spans are made with the SDK, exported over OTLP/HTTP and
OTLP/gRPC to a real rotel-agent, and read back through the harness's parser.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from collector import (  # the fixture "rotel_collector" comes from conftest.py
    AGENT_ENV_VAR,
    CollectorError,
    CollectorTimeoutError,
    RotelCollector,
    find_rotel_agent,
    free_port,
    parse_spans,
)

SECRET = "hunter2-never-sent"
JSON_VALUE = '{"skill": "summarise", "args": ["a b", 2], "nested": {"k": "v)"}}'


@dataclass(frozen=True)
class Sent:
    trace_id: str
    parent_id: str
    child_id: str


def _send(processor: Callable[[SpanExporter], SpanProcessor], exporter: SpanExporter) -> Sent:
    """A parent span and a failing child span, exported and flushed."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": "harness-test"}), shutdown_on_exit=False
    )
    provider.add_span_processor(processor(exporter))
    tracer = provider.get_tracer("harness.tests", "0.0.1")
    try:
        with tracer.start_as_current_span("parent", kind=SpanKind.SERVER) as parent:
            with tracer.start_as_current_span(
                "child",
                attributes={
                    "text": "hello world",
                    "count": 42,
                    "negative": -7,
                    "flag": True,
                    "off": False,
                    "ratio": 0.25,
                    "json": JSON_VALUE,
                    "multiline": "line one\nline two) -> still: Str(the value",
                    "words": ["a", "b"],
                },
            ) as child:
                try:
                    raise ValueError("boom\nsecond line")
                except ValueError as exc:
                    child.record_exception(exc)
                child.set_status(Status(StatusCode.ERROR, "it failed"))
            parent.set_status(Status(StatusCode.OK))
        assert provider.force_flush(timeout_millis=20_000)
    finally:
        provider.shutdown()
    return Sent(
        trace_id=format(child.get_span_context().trace_id, "032x"),
        parent_id=format(parent.get_span_context().span_id, "016x"),
        child_id=format(child.get_span_context().span_id, "016x"),
    )


def _check_received(collector: RotelCollector, sent: Sent) -> None:
    spans = collector.spans(expect=2)
    assert sorted(s.name for s in spans) == ["child", "parent"]
    child = collector.span("child")
    parent = collector.span("parent")

    assert child.trace_id == parent.trace_id == sent.trace_id
    assert child.span_id == sent.child_id
    assert parent.span_id == sent.parent_id
    assert child.parent_span_id == sent.parent_id
    assert parent.parent_span_id is None

    assert child.status_code == "Error"
    assert child.status_message == "it failed"
    assert parent.status_code == "Ok"
    assert parent.status_message == ""
    assert parent.kind == "Server"
    assert child.kind == "Internal"

    assert child.attributes["text"] == "hello world"
    assert child.attributes["count"] == 42
    assert child.attributes["negative"] == -7
    assert child.attributes["flag"] is True
    assert child.attributes["off"] is False
    assert child.attributes["ratio"] == 0.25
    assert child.attributes["json"] == JSON_VALUE
    assert child.attributes["multiline"] == "line one\nline two) -> still: Str(the value"
    assert child.attributes["words"] == "Slice(Str(a), Str(b))"
    assert child.attribute_types["count"] == "Int"
    assert child.attribute_types["words"] == "Slice"

    exception = child.event("exception")
    assert exception.attributes["exception.type"] == "ValueError"
    assert exception.attributes["exception.message"] == "boom\nsecond line"
    stacktrace = exception.attributes["exception.stacktrace"]
    assert isinstance(stacktrace, str)
    assert stacktrace.startswith("Traceback (most recent call last):\n")
    assert exception.timestamp_ns > 0

    assert 0 < child.start_time_ns <= child.end_time_ns
    assert parent.start_time_ns <= child.start_time_ns
    assert child.end_time_ns <= parent.end_time_ns
    assert child.resource_attributes["service.name"] == "harness-test"
    assert (child.scope_name, child.scope_version) == ("harness.tests", "0.0.1")

    output = collector.raw_output()
    assert "hello world" in output
    assert SECRET not in output


@pytest.mark.collector
def test_spans_over_otlp_http_arrive_intact(rotel_collector: RotelCollector) -> None:
    sent = _send(
        lambda exporter: BatchSpanProcessor(exporter, schedule_delay_millis=50),
        HttpSpanExporter(endpoint=rotel_collector.http_traces_endpoint, timeout=20),
    )
    _check_received(rotel_collector, sent)


@pytest.mark.collector
def test_spans_over_otlp_grpc_arrive_intact(rotel_collector: RotelCollector) -> None:
    sent = _send(
        SimpleSpanProcessor,
        GrpcSpanExporter(endpoint=rotel_collector.grpc_endpoint, insecure=True, timeout=20),
    )
    _check_received(rotel_collector, sent)


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _refuses(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


@pytest.mark.collector
def test_stop_is_idempotent_and_releases_the_ports() -> None:
    with RotelCollector() as collector:
        ports = (collector.http_port, collector.grpc_port)
        was_running = collector.running
        assert was_running
        assert collector.http_endpoint == f"http://127.0.0.1:{ports[0]}"
        assert collector.grpc_endpoint == f"http://127.0.0.1:{ports[1]}"
        assert collector.startup_seconds is not None
        assert not any(_port_is_free(port) for port in ports)
        _send(SimpleSpanProcessor, HttpSpanExporter(endpoint=collector.http_traces_endpoint))
        assert len(collector.spans(expect=2)) == 2
        collector.stop()
        collector.stop()
        assert not collector.running
        assert collector.returncode is not None
        assert all(_refuses(port) for port in ports)
        assert all(_port_is_free(port) for port in ports)
        # What was received stays readable after stop().
        assert len(collector.spans(expect=2, timeout=0)) == 2
        assert "hello world" in collector.raw_output()
    collector.stop()  # and after the context manager has stopped it too
    assert not collector.running


@pytest.mark.collector
def test_waiting_for_spans_that_never_come_fails_with_the_output() -> None:
    with RotelCollector() as collector:
        with pytest.raises(
            CollectorTimeoutError, match=r"(?s)at least 1 span.*received 0 span.*rotel-agent output"
        ):
            collector.spans(expect=1, timeout=0.5)
        with pytest.raises(CollectorTimeoutError, match="a span called 'missing'"):
            collector.span("missing", timeout=0.3)


def test_a_binary_that_does_not_start_fails_with_its_output(tmp_path: Path) -> None:
    fake = tmp_path / "rotel-agent"
    fake.write_text("#!/bin/sh\necho 'fake agent: cannot start' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(CollectorError, match=r"(?s)exited with code 3.*fake agent: cannot start"):
        RotelCollector(binary=fake).start()


def test_binary_lookup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(AGENT_ENV_VAR, raising=False)
    assert find_rotel_agent().name == "rotel-agent"
    monkeypatch.setenv(AGENT_ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(CollectorError, match="not an executable file"):
        find_rotel_agent()


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 0 < port < 65536
    assert _port_is_free(port)


# A hand-written debug log with the awkward cases: rotel's own log lines (with and without
# colour), values spanning lines and containing ") -> x: Str(", missing optional sections,
# links, and a half-written block at the end. <SP> marks the trailing spaces rotel prints.
_DEBUG_LOG = """\
\x1b[2m2026-01-01T00:00:00.000001Z\x1b[0m \x1b[32m INFO\x1b[0m Starting Rotel. grpc_endpoint="x"
ResourceSpans #0
Resource SchemaURL: https://opentelemetry.io/schemas/1.21.0
Resource attributes:
     -> service.name: Str(svc)
ScopeSpans #0
ScopeSpans SchemaURL:<SP>
InstrumentationScope my.scope<SP>
Span #0
    Trace ID       : 0AF7651916CD43DD8448EB211C80319C
    Parent ID      : b7ad6b7169203331
    ID             : 00f067aa0ba902b7
    Name           : two
line name
    Kind           : SPAN_KIND_CLIENT
Start time: 10
End time: 25
    Status code    : STATUS_CODE_ERROR
    Status message : bad
news
Attributes:
     -> tricky: Str(a) -> b: Str(c
  indented continuation
)
     -> key: with colon: Int(-3)
     -> d: Double(inf)
     -> e: Empty
     -> m: Map(a:Int(1))
Events:
SpanEvent #0
     -> Name: exception
     -> Timestamp: 20
     -> DroppedAttributesCount: 1
     -> Attributes::
          -> exception.message: Str(x
y)
Links:
SpanLink #0
     -> Trace ID: 0af7651916cd43dd8448eb211c80319c
     -> ID: b7ad6b7169203331
     -> TraceState: a=b
     -> DroppedAttributesCount: 0
     -> Attributes::
          -> why: Str(because)
2026-01-01T00:00:01.000000Z  WARN something unrelated
ResourceSpans #0
Resource SchemaURL:<SP>
ScopeSpans #0
ScopeSpans SchemaURL:<SP>
Span #0
    Trace ID       : 0af7651916cd43dd8448eb211c80319c
    Parent ID      :<SP>
    ID             : b7ad6b7169203331
    Name           : no status at all
    Kind           : SPAN_KIND_SERVER
Start time: 1
End time: 2
ResourceSpans #0
Resource SchemaURL:<SP>
ScopeSpans #0
ScopeSpans SchemaURL:<SP>
Span #0
    Trace ID       : 0af7651916cd43dd8448eb211c80319c
    Parent ID      :<SP>
    ID             : 1111111111111111
    Name           : half writ""".replace("<SP>", " ")


def test_parser_on_awkward_output() -> None:
    first, second, third = parse_spans(_DEBUG_LOG)

    assert first.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert first.parent_span_id == "b7ad6b7169203331"
    assert first.span_id == "00f067aa0ba902b7"
    assert first.name == "two\nline name"
    assert first.kind == "Client"
    assert (first.start_time_ns, first.end_time_ns, first.duration_ns) == (10, 25, 15)
    assert (first.status_code, first.status_message) == ("Error", "bad\nnews")
    assert first.attributes == {
        "tricky": "a) -> b: Str(c\n  indented continuation\n",
        "key: with colon": -3,
        "d": float("inf"),
        "e": "Empty",
        "m": "Map(a:Int(1))",
    }
    assert first.attribute_types["e"] == "Empty"
    assert first.resource_attributes == {"service.name": "svc"}
    assert (first.scope_name, first.scope_version) == ("my.scope", "")
    (event,) = first.events
    assert (event.name, event.timestamp_ns, event.dropped_attributes_count) == ("exception", 20, 1)
    assert event.attributes == {"exception.message": "x\ny"}
    (link,) = first.links
    assert (link.trace_id, link.span_id, link.trace_state) == (
        "0af7651916cd43dd8448eb211c80319c",
        "b7ad6b7169203331",
        "a=b",
    )
    assert link.attributes == {"why": "because"}

    # The WARN line between blocks is not part of the last link attribute.
    assert "WARN" not in str(first)
    assert (second.name, second.status_code, second.status_message) == (
        "no status at all",
        "Unset",
        "",
    )
    assert second.parent_span_id is None
    assert second.resource_attributes == {}
    # The last block has no trailing newline yet: the half-written name line is dropped.
    assert third.name == ""
    assert parse_spans("") == []
    assert parse_spans("no debug output here\n") == []
