"""Trust: the audit log records every execution, whatever the program's sampler decides.

A program's own TracerProvider may sample (a ratio sampler, or an incoming trace context
marked not sampled). Its own exporters keep honouring that decision; the file does not:
every execution is in it exactly once. Nothing grows per unsampled span, and
reconfiguring against a program's provider never piles up processors.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

import betty_otel
from betty_otel import TelemetryCapture, TelemetryContext, capture_telemetry
from helpers import betty_errors, read_entries

pytestmark = pytest.mark.faults

Program = tuple[Path, TracerProvider, InMemorySpanExporter]
"""The telemetry file, the program's provider, and what its own exporter received."""


def _program_provider(sampler: object) -> tuple[TracerProvider, InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler, shutdown_on_exit=False)  # type: ignore[arg-type]
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


@pytest.fixture
def unsampled_parent() -> Iterator[None]:
    """An incoming trace context marked not sampled (as a W3C traceparent ...-00 would be)."""
    parent = SpanContext(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
        span_id=0x00F067AA0BA902B7,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.DEFAULT),
    )
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(parent)))
    yield
    otel_context.detach(token)


@pytest.fixture
def unsampled_program(tmp_path: Path, unsampled_parent: None) -> Program:
    """Configured on a program provider whose sampler drops all under the unsampled parent."""
    path = tmp_path / "telemetry.json"
    provider, memory = _program_provider(ParentBased(ALWAYS_OFF))
    betty_otel.configure(path, otlp=False, tracer_provider=provider)
    return path, provider, memory


@capture_telemetry(skill_name="sampled.call", capture_inputs=True)
def work(number: int) -> int:
    return number * 2


def test_every_call_under_an_unsampled_parent_is_in_the_file_and_none_reach_the_program(
    unsampled_program: Program,
) -> None:
    path, _, memory = unsampled_program
    assert [work(n) for n in range(10)] == [n * 2 for n in range(10)]
    entries = read_entries(path)
    assert sorted(entry["inputs"]["number"] for entry in entries) == list(range(10))
    assert {entry["trace_id"] for entry in entries} == {"4bf92f3577b34da6a3ce929d0e0e4736"}
    assert {entry["parent_span_id"] for entry in entries} == {"00f067aa0ba902b7"}
    assert memory.get_finished_spans() == ()  # the program's exporter honours its sampler


@pytest.mark.parametrize("processor", [SimpleSpanProcessor, BatchSpanProcessor])
def test_a_ratio_sampler_thins_the_programs_export_but_never_the_file(
    tmp_path: Path, processor: type[SimpleSpanProcessor | BatchSpanProcessor]
) -> None:
    path = tmp_path / "telemetry.json"
    memory = InMemorySpanExporter()
    provider = TracerProvider(sampler=TraceIdRatioBased(0.1), shutdown_on_exit=False)
    provider.add_span_processor(processor(memory))
    betty_otel.configure(path, otlp=False, tracer_provider=provider)
    for n in range(1000):
        work(n)
    provider.force_flush()
    entries = read_entries(path)
    assert sorted(entry["inputs"]["number"] for entry in entries) == list(range(1000))
    exported = memory.get_finished_spans()
    assert 0 < len(exported) < 300  # about 100: the program's own exporters still sample
    assert all(span.context is not None and span.context.trace_flags.sampled for span in exported)
    provider.shutdown()


def test_nested_executions_under_a_sampler_that_drops_everything_keep_their_caller_chain(
    tmp_path: Path,
) -> None:
    path = tmp_path / "telemetry.json"
    provider, memory = _program_provider(ALWAYS_OFF)
    betty_otel.configure(path, otlp=False, tracer_provider=provider)
    with TelemetryContext("outer", caller="test"):
        work(1)
    inner, outer = read_entries(path)
    assert (inner["skill"], outer["skill"]) == ("sampled.call", "outer")
    assert inner["parent_span_id"] == outer["span_id"]
    assert inner["trace_id"] == outer["trace_id"]
    assert memory.get_finished_spans() == ()


def test_capture_under_an_unsampled_parent_writes_its_entry_and_returns_it(
    unsampled_program: Program,
) -> None:
    path, _, memory = unsampled_program
    capture = TelemetryCapture(path)
    returned = [capture.capture("agent.run", "success", 5.0, "API") for _ in range(50)]
    on_disk = read_entries(path)
    assert on_disk == returned  # each once, in order, exactly as returned
    assert memory.get_finished_spans() == ()


@pytest.mark.parametrize("batch", [False, True], ids=["sync", "batch"])
def test_unsampled_executions_are_written_exactly_once_in_both_export_modes(
    tmp_path: Path, batch: bool
) -> None:
    path = tmp_path / "telemetry.json"
    provider, _ = _program_provider(TraceIdRatioBased(0.5))
    betty_otel.configure(path, otlp=False, tracer_provider=provider, batch=batch)
    capture = TelemetryCapture(path)
    for n in range(200):
        work(n)
        capture.capture("captured", "success", 1.0, "API", {"n": n})
    betty_otel.shutdown()
    entries = read_entries(path)
    assert sorted(e["inputs"]["number"] for e in entries if e["skill"] == "sampled.call") == list(
        range(200)
    )
    assert sorted(e["inputs"]["n"] for e in entries if e["skill"] == "captured") == list(range(200))
    spans = [(e["trace_id"], e["span_id"]) for e in entries]
    assert len(set(spans)) == len(spans) == 400


def test_reconfiguring_against_a_programs_provider_adds_nothing_per_call(tmp_path: Path) -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    path = tmp_path / "telemetry.json"

    @capture_telemetry(skill_name="again")
    def again() -> None:
        return None

    betty_otel.configure(path, otlp=False, tracer_provider=provider)
    processors = provider._active_span_processor._span_processors  # the SDK's own list
    baseline = len(processors)
    for _ in range(300):
        betty_otel.configure(path, otlp=False, tracer_provider=provider)
        again()
    assert len(provider._active_span_processor._span_processors) == baseline
    assert len(read_entries(path)) == 300
    assert len(memory.get_finished_spans()) == 300
    provider.shutdown()


def test_no_span_outlives_its_unsampled_execution(
    unsampled_program: Program,
) -> None:
    """Nothing grows per unsampled execution: no span is kept once it is written."""
    path, _, _ = unsampled_program
    capture = TelemetryCapture(path)

    def spans_alive() -> int:
        gc.collect()
        # type(), not isinstance(): other tests keep hostile objects alive whose
        # __class__ raises.
        return sum(issubclass(type(obj), ReadableSpan) for obj in gc.get_objects())

    before = spans_alive()  # earlier tests may keep some alive; only growth matters here
    for n in range(500):
        work(n)
        capture.capture("captured", "success", 1.0, "API")
    assert spans_alive() - before < 5
    assert len(read_entries(path)) == 1000


def test_the_programs_own_spans_and_propagation_keep_the_programs_decision(
    unsampled_program: Program,
) -> None:
    """Inside a recorded but unsampled execution, the program's tracer still drops its
    spans and a W3C traceparent handed on says "not sampled" (flags 00)."""
    path, provider, memory = unsampled_program
    seen: dict[str, object] = {}

    @capture_telemetry(skill_name="hands.on")
    def hands_on() -> None:
        with provider.get_tracer("app").start_as_current_span("app.inner") as inner:
            seen["recording"] = inner.is_recording()
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        seen["traceparent"] = carrier.get("traceparent")

    hands_on()
    (entry,) = read_entries(path)
    assert seen["recording"] is False
    assert seen["traceparent"] == f"00-{entry['trace_id']}-{entry['span_id']}-00"
    assert memory.get_finished_spans() == ()


def test_all_spans_writes_other_instrumentation_as_the_program_samples_it(tmp_path: Path) -> None:
    """all_spans adds the program's own spans to the file only where its sampler keeps them;
    executions are always there."""
    path = tmp_path / "telemetry.json"
    provider, _ = _program_provider(ALWAYS_OFF)
    betty_otel.configure(path, otlp=False, tracer_provider=provider, all_spans=True)
    provider.get_tracer("app").start_span("app.dropped").end()
    work(3)
    assert [entry["skill"] for entry in read_entries(path)] == ["sampled.call"]


class _BrokenSampler(Sampler):
    """A program's sampler that fails on every decision."""

    def should_sample(self, *_args: object, **_kwargs: object) -> SamplingResult:
        raise RuntimeError("sampler is broken")

    def get_description(self) -> str:
        return "Broken"


def test_a_program_sampler_that_raises_costs_neither_the_call_nor_the_entry(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "telemetry.json"
    provider, memory = _program_provider(_BrokenSampler())
    betty_otel.configure(path, otlp=False, tracer_provider=provider)
    assert work(21) == 42
    (entry,) = read_entries(path)
    assert entry["inputs"] == {"number": 21}
    assert betty_otel.internal_errors() == 1  # logged and counted
    assert any("sampler" in record.getMessage() for record in betty_errors(caplog.records))
    assert memory.get_finished_spans() == ()


@pytest.mark.parametrize("batch", [False, True], ids=["sync", "batch"])
def test_reconfiguring_between_providers_and_modes_adds_one_processor_per_provider(
    tmp_path: Path, batch: bool
) -> None:
    """Each program provider carries one processor of ours however often betty_otel is
    configured, shut down and configured again; only the current pipeline writes."""
    first, first_memory = _program_provider(ParentBased(ALWAYS_OFF))
    second, second_memory = _program_provider(ParentBased(ALWAYS_OFF))
    baseline = len(first._active_span_processor._span_processors)  # the SDK's own list
    path = tmp_path / "telemetry.json"
    for round_number in range(50):
        provider = first if round_number % 2 else second
        betty_otel.configure(path, otlp=False, tracer_provider=provider, batch=batch)
        work(round_number)
        if round_number % 5 == 0:
            betty_otel.shutdown()
    betty_otel.shutdown()
    for provider in (first, second):
        assert len(provider._active_span_processor._span_processors) == baseline + 1
    provider.get_tracer("app").start_span("after", attributes={"betty.skill": "late"}).end()
    assert sorted(entry["inputs"]["number"] for entry in read_entries(path)) == list(range(50))
    assert first_memory.get_finished_spans() == second_memory.get_finished_spans() == ()
