"""Executions in flight: what they cost a call, and how fast they are listed.

- The hooks of a call shorter than ``inflight_after`` (registered at its start, taken out
  at its end: no lock, no clock, no disk), per call, against OpenTelemetry's own
  decorator (SimpleSpanProcessor, in memory) on the same function. Target: <= 0.1x (a
  tenth of what a traced call costs anyway; a few hundred nanoseconds).
- ``betty-telemetry running --format json`` over 10,000 records (a third each running,
  abandoned and of another host), the whole command with its interpreter start-up.
  Target: under 1 s (the ratio is its time over 1 s). A detail line gives
  ``betty_otel.query.running`` alone.

    .venv/bin/python benchmarks/bench_inflight.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from table import Row, emit

import betty_otel
from betty_otel._inflight.hooks import claim, track
from betty_otel._inflight.owner import this_process
from betty_otel._inflight.records import (
    encode_record,
    folder_of,
    open_folder,
    record_name,
    write_record,
)
from betty_otel._run import start_run
from betty_otel._sanitize import default_sanitizer
from betty_otel._setup import current_pipeline
from betty_otel.query import running

CALLS = 20_000
RECORDS = 10_000
ROUNDS = 7


def _median(run: object, rounds: int = ROUNDS) -> float:
    """Median seconds of rounds calls of run()."""
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()  # type: ignore[operator]
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _empty() -> None:
    """The function OTel's decorator wraps."""


def _hooks(folder: str) -> None:
    """Per call: track + claim of one run, against the OTel decorator's whole call."""
    betty_otel.configure(Path(folder) / "hooks.json")
    current = current_pipeline()
    assert current.tracer is not None
    run = start_run(current.tracer, "bench", {}, default_sanitizer())
    assert run is not None
    run.inflight = None  # this run itself stays out of the measurement
    run.span.end()

    def hooks() -> None:
        for _ in range(CALLS):
            claim(track(run))

    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    decorated = provider.get_tracer("bench").start_as_current_span("empty")(_empty)

    def otel() -> None:
        for _ in range(CALLS):
            decorated()
        memory.clear()

    ours = _median(hooks) / CALLS * 1e6
    theirs = _median(otel) / CALLS * 1e6
    emit(
        Row(
            target="in-flight hooks of a short call",
            ours=f"{ours:.2f} µs/call",
            baseline=f"OTel decorator (SimpleSpanProcessor, in memory) {theirs:.2f} µs/call",
            ratio=ours / theirs,
            goal="<= 0.1",
        )
    )
    provider.shutdown()
    betty_otel.shutdown()


def _records(log: Path) -> None:
    """RECORDS records beside log: running (this process), abandoned (a pid no process
    has), unknown (another host)."""
    here = this_process()
    owners = [here, here._replace(pid=2**22 + 7, start_ticks=1), here._replace(host="elsewhere")]
    folder_fd = open_folder(folder_of(log), create=True)
    now = time.time_ns()
    try:
        for number in range(RECORDS):
            trace_id, span_id = f"{number + 1:032x}", f"{number + 1:016x}"
            entry = {
                "timestamp": "2025-10-24T14:30:45.123456+00:00",
                "skill": f"workflow.step{number % 7}",
                "status": "pending",
                "duration_ms": 0.0,
                "caller": "CLI",
                "inputs": {"path": f"docs/{number}.md", "options": {"strict": True}},
                "error_message": None,
                "metadata": {},
                "trace_id": trace_id,
                "span_id": span_id,
                "parent_span_id": None,
            }
            data = encode_record(owners[number % 3], now, entry)
            write_record(folder_fd, record_name(trace_id, span_id), data, now)
    finally:
        os.close(folder_fd)


def _listing(folder: str) -> None:
    log = Path(folder) / "telemetry.json"
    _records(log)
    assert len(running(log)) == RECORDS
    python = _median(lambda: running(log))
    command = [str(Path(sys.executable).parent / "betty-telemetry"), "running"]
    command += ["--format", "json", "--file", str(log)]

    def cli() -> None:
        subprocess.run(command, check=True, capture_output=True)

    seconds = _median(cli, rounds=5)
    print(f"  detail: betty_otel.query.running over {RECORDS:,} records: {python * 1000:.0f} ms")
    emit(
        Row(
            target=f"running over {RECORDS:,} records (the whole command)",
            ours=f"{seconds * 1000:.0f} ms",
            baseline="1 s",
            ratio=seconds,
            goal="<= 1.0",
        )
    )


def main() -> None:
    """Measure and print the rows."""
    with tempfile.TemporaryDirectory() as folder:
        _hooks(folder)
        _listing(folder)


if __name__ == "__main__":
    main()
