"""Per-call overhead of @capture_telemetry against OpenTelemetry's own decorator.

Prints ratios measured in one process (absolute times on shared machines mean
little): our decorator with capture_inputs=True on an empty function, against
``tracer.start_as_current_span`` used as a decorator, both with a synchronous
pipeline (ours writing the file; OTel's SimpleSpanProcessor with an in-memory
exporter) and both batched (ours batching file writes; OTel's BatchSpanProcessor
with a do-nothing exporter). Targets: <= 1.3x each. Then exporter throughput.

    .venv/bin/python benchmarks/bench_decorator.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from table import Row, emit

import betty_otel
from betty_otel.exporter import BettyFileExporter

CALLS = 20_000
ROUNDS = 7


class _NullExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:  # noqa: ARG002
        return SpanExportResult.SUCCESS


def _per_call_us(function: Callable[..., object]) -> float:
    """Median over rounds of the mean µs per call."""
    samples = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for i in range(CALLS):
            function(i, "x", flag=True)
        samples.append((time.perf_counter() - start) / CALLS * 1e6)
    return statistics.median(samples)


def _otel(batch: bool) -> tuple[Callable[..., object], TracerProvider]:
    provider = TracerProvider(shutdown_on_exit=False)
    if batch:
        provider.add_span_processor(BatchSpanProcessor(_NullExporter()))
    else:
        memory = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")

    @tracer.start_as_current_span("empty")
    def empty(a: int, b: str, flag: bool = False) -> None:
        pass

    if not batch:
        # Keep the in-memory exporter from growing without bound between rounds.
        def call(*args: object, **kwargs: object) -> object:
            result = empty(*args, **kwargs)  # type: ignore[arg-type]
            if len(memory._finished_spans) > 1000:
                memory.clear()
            return result

        return call, provider
    return empty, provider


def _ours(path: Path, batch: bool) -> Callable[..., object]:
    betty_otel.configure(path, batch=batch, otlp=False)

    @betty_otel.capture_telemetry(capture_inputs=True)
    def empty(a: int, b: str, flag: bool = False) -> None:
        pass

    return empty


def main() -> None:
    """Measure and print the ratios."""
    with tempfile.TemporaryDirectory() as folder:
        for batch in (False, True):
            otel, provider = _otel(batch)
            ours = _ours(Path(folder) / f"bench-{batch}.json", batch)
            _per_call_us(otel)  # warm up both
            _per_call_us(ours)
            base = _per_call_us(otel)
            mine = _per_call_us(ours)
            provider.shutdown()
            label = "batch" if batch else "synchronous"
            processor = "BatchSpanProcessor" if batch else "SimpleSpanProcessor, in memory"
            emit(
                Row(
                    target=f"decorator, {label} export",
                    ours=f"{mine:.2f} µs/call",
                    baseline=f"OTel decorator ({processor}) {base:.2f} µs/call",
                    ratio=mine / base,
                    goal="<= 1.3" if batch else "<= 1.5",
                )
            )
        betty_otel.shutdown()
        # Exporter throughput: map and append prepared spans in batches of 512.
        provider = TracerProvider(shutdown_on_exit=False)
        memory = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        tracer = provider.get_tracer("bench")
        for i in range(512):
            with tracer.start_as_current_span(
                "skill.run",
                attributes={
                    "betty.skill": "skill.run",
                    "betty.status": "success",
                    "betty.caller": "API",
                    "betty.inputs": f'{{"i":{i},"path":"/tmp/x"}}',
                },
            ):
                pass
        spans = memory.get_finished_spans()
        exporter = BettyFileExporter(Path(folder) / "throughput.json")
        start = time.perf_counter()
        batches = 200
        for _ in range(batches):
            exporter.export(spans)
        elapsed = time.perf_counter() - start
        exporter.shutdown()
        print(
            f"exporter throughput: {len(spans) * batches / elapsed:,.0f} entries/s (batches of 512)"
        )
    sys.exit(0)


if __name__ == "__main__":
    main()
