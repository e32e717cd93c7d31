"""Per-call overhead of @capture_telemetry against OpenTelemetry's own decorator.

Prints ratios measured in one process (absolute times on shared machines mean
little). Both sides decorate the same function and call it with the same
arguments; ours with capture_inputs=True, OTel's ``tracer.start_as_current_span``
used as a decorator:

Ours records through the FileTracer (the file is its spans' only receiver: no
collector, not all_spans), as a program configuring betty_otel alone does.

- synchronous: ours writing the file; OTel's SimpleSpanProcessor with an in-memory
  exporter (cleared between rounds, outside the timing). Target: <= 1.5x.
- batch: ours batching file writes; OTel's BatchSpanProcessor with a do-nothing
  exporter. Each round ends with a flush of both, inside the timing, so the work of
  the background threads is counted (it competes for the GIL with the caller).
  Target: <= 1.3x.

Each is warmed up first; rounds alternate between the sides (the order flips each
round) and the median round is compared. A detail line also times OTel's decorator
starting its span with the same six attributes ours starts with (static, since it
cannot record arguments): the part of our cost that is the SDK's handling of
attributes. Then exporter throughput.

    .venv/bin/python benchmarks/bench_decorator.py   (BENCH_CALLS=2000 for a quicker run)
"""

from __future__ import annotations

import os
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
from opentelemetry.util.types import Attributes
from table import Row, emit

import betty_otel
from betty_otel._setup import current_pipeline
from betty_otel.exporter import BettyFileExporter

CALLS = int(os.environ.get("BENCH_CALLS", "5000"))
ROUNDS = 9


class _NullExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:  # noqa: ARG002
        return SpanExportResult.SUCCESS


def empty(a: int, b: str, flag: bool = False) -> None:
    """The function both decorators wrap."""


class Side:
    """One decorated function, and what to do after a round (flush, clear)."""

    def __init__(self, function: Callable[..., object], after: Callable[[], object]) -> None:
        self.function = function
        self.after = after
        self.samples: list[float] = []

    def round(self, *, record: bool = True) -> None:
        """CALLS calls, then the flush; the mean µs per call is one sample."""
        function = self.function
        start = time.perf_counter()
        for i in range(CALLS):
            function(i, "x", flag=True)
        self.after()
        if record:
            self.samples.append((time.perf_counter() - start) / CALLS * 1e6)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


# What our span carries at its start (betty.inputs as recorded for one call): the
# detail line "OTel with the same attributes" shows what the SDK itself costs for them.
SAME_ATTRIBUTES: Attributes = {
    "betty.skill": "empty",
    "betty.caller": "runtime",
    "code.function.name": f"{__name__}.empty",
    "code.file.path": __file__,
    "code.line.number": 1,
    "betty.inputs": '{"a":1,"b":"x","flag":true}',
}


def _otel(
    batch: bool, attributes: Attributes = None
) -> tuple[Side, TracerProvider, Callable[[], object]]:
    provider = TracerProvider(shutdown_on_exit=False)
    memory = InMemorySpanExporter()
    if batch:
        provider.add_span_processor(BatchSpanProcessor(_NullExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    decorated = tracer.start_as_current_span("empty", attributes=attributes)(empty)
    after = provider.force_flush if batch else (lambda: None)
    return Side(decorated, after), provider, memory.clear


def _ours(path: Path, batch: bool) -> Side:
    betty_otel.configure(path, batch=batch, otlp=False)
    # The file is the only receiver here, so the spans are FileSpans (see _setup.filespan).
    print(f"  ours records through {type(current_pipeline().tracer).__name__}")
    decorated = betty_otel.capture_telemetry(capture_inputs=True)(empty)
    return Side(decorated, current_pipeline().force_flush if batch else (lambda: None))


def _compare(folder: str, batch: bool) -> None:
    otel, provider, clear = _otel(batch)
    same, same_provider, same_clear = _otel(batch, SAME_ATTRIBUTES)
    ours = _ours(Path(folder) / f"bench-{batch}.json", batch)
    sides = (otel, same, ours)
    for side in sides:  # warm up all
        side.round(record=False)
        clear()
        same_clear()
    for number in range(ROUNDS):
        for side in sides if number % 2 == 0 else sides[::-1]:
            side.round()
            clear()  # outside the timing: keeps the in-memory exporters small
            same_clear()
    provider.shutdown()
    same_provider.shutdown()
    print(
        f"  detail: OTel decorator with the 6 attributes our span starts with: "
        f"{same.median:.2f} µs/call; ours is {ours.median / same.median:.2f}x that"
    )
    label = "batch" if batch else "synchronous"
    processor = "BatchSpanProcessor" if batch else "SimpleSpanProcessor, in memory"
    emit(
        Row(
            target=f"decorator, {label} export",
            ours=f"{ours.median:.2f} µs/call",
            baseline=f"OTel decorator ({processor}) {otel.median:.2f} µs/call",
            ratio=ours.median / otel.median,
            goal="<= 1.3" if batch else "<= 1.5",
        )
    )


def _throughput(folder: str) -> None:
    """Exporter throughput: map and append prepared spans in batches of 512."""
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
    print(f"exporter throughput: {len(spans) * batches / elapsed:,.0f} entries/s (batches of 512)")


def main() -> None:
    """Measure and print the ratios."""
    with tempfile.TemporaryDirectory() as folder:
        for batch in (False, True):
            _compare(folder, batch)
        betty_otel.shutdown()
        _throughput(folder)
    sys.exit(0)


if __name__ == "__main__":
    main()
