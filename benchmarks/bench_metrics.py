"""Per-call cost of the metrics: @capture_telemetry with OTLP metrics on against off.

Both sides decorate the same function (capture_inputs=True) and write the file in batch
mode through the same tracer (OTEL_TRACES_EXPORTER=none: the file alone receives the
spans). "On" adds OTEL_METRICS_EXPORTER=otlp: betty_otel's own MeterProvider with its
periodic OTLP reader (every minute, so no export falls inside a round: the cost measured
is what each call pays, the active count and the duration kept for the collection),
sending to a local collector that takes everything; "off" is OTEL_METRICS_EXPORTER=none,
where a call pays one test. Rounds alternate between the sides in pairs (each configured
afresh outside the timing: the provider's last collection and export are waited for, so
they never fall inside the next round), and the row is the median of
the differences within each pair, so a change of the machine's load between rounds
cancels out. Target: at most a few microseconds more per call (the row's ratio is the
difference in µs). It compares the calling thread's CPU time per call, what a call pays:
an absolute difference on the clock grows with whatever else the machine runs (every
microsecond of ours waits its turn for a core), and the process's CPU time adds the file
writer's, the same work on both sides but noisier; detail lines give both.

The durations a call keeps go into the SDK's histogram when the meter collects (or, when
thousands wait, in a thread of their own): a detail line times that too, in CPU µs per
execution, paid by the collecting thread once per export interval, not by the calls.

    .venv/bin/python benchmarks/bench_metrics.py   (BENCH_CALLS=2000 for a quicker run)
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from table import Row, emit

import betty_otel
from betty_otel._setup import current_pipeline

CALLS = int(os.environ.get("BENCH_CALLS", "5000"))
ROUNDS = 15
GOAL_MICROSECONDS = 5.0
CLOSE_SECONDS = 10.0


@betty_otel.capture_telemetry(skill_name="bench.metrics", capture_inputs=True)
def work(a: int, b: str, flag: bool = False) -> None:  # noqa: ARG001 - recorded as inputs
    return None


class _Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP collector that takes every export (an empty response is a success)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _configure(path: Path, metrics: bool) -> None:
    """Metrics on or off, from scratch: the shutdown closes our provider (if on), waiting
    for its last collection and export (an exit budget they never need in full), so none
    of that work falls inside the next round and every round starts with nothing waiting
    to be recorded (rounds with metrics on never follow one another into a provider that
    has the last round's durations to record)."""
    betty_otel.shutdown()
    os.environ["OTEL_METRICS_EXPORTER"] = "otlp" if metrics else "none"
    betty_otel.configure(path, batch=True, exit_timeout=CLOSE_SECONDS)


CLOCKS = (time.thread_time, time.process_time, time.perf_counter)
"""What a round is timed with: the calling thread's CPU time, the process's (every thread
of it, the file writer's included) and the time on the clock."""


def _round(path: Path, metrics: bool) -> list[float]:
    """Seconds per call over CALLS calls by each of CLOCKS, the batch flushed inside."""
    _configure(path, metrics)
    started = [clock() for clock in CLOCKS]
    for number in range(CALLS):
        work(number, "text", flag=True)
    current_pipeline().force_flush()
    return [(clock() - start) / CALLS for clock, start in zip(CLOCKS, started, strict=True)]


def _collection(path: Path) -> float:
    """CPU seconds per execution a collection takes to record the durations kept by
    CALLS calls (a program's provider read in memory: no export in the timing)."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    betty_otel.configure(path, batch=True, meter_provider=provider)
    samples = []
    for _ in range(ROUNDS):
        for number in range(CALLS):
            work(number, "text", flag=True)
        started = time.process_time()
        reader.collect()
        samples.append((time.process_time() - started) / CALLS)
    betty_otel.shutdown()
    provider.shutdown()
    return statistics.median(samples)


def main() -> None:
    collector = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    os.environ["OTEL_TRACES_EXPORTER"] = "none"
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{collector.server_port}"
    os.environ.pop("OTEL_METRIC_EXPORT_INTERVAL", None)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "telemetry.json"
        for metrics in (True, False):  # warm-up
            _round(path, metrics)
        pairs: list[dict[bool, list[float]]] = []
        for number in range(ROUNDS):
            pair = {}
            for metrics in (True, False) if number % 2 else (False, True):
                pair[metrics] = _round(path, metrics)
                path.unlink(missing_ok=True)
            pairs.append(pair)
        betty_otel.shutdown()
        os.environ["OTEL_METRICS_EXPORTER"] = "none"
        collection = _collection(path) * 1e6
    collector.shutdown()
    cpu, process, clock = (_figures(pairs, kind) for kind in range(len(CLOCKS)))
    print(
        f"decorator, batch, the calling thread's CPU time: {cpu.on:.2f} µs/call with OTLP "
        f"metrics, {cpu.off:.2f} without; pair by pair {cpu.more:.2f} µs more ({cpu.spread})"
    )
    for name, figures in (("the process's CPU time", process), ("on the clock", clock)):
        print(
            f"  detail: {name}: {figures.on:.2f} µs/call with, {figures.off:.2f} without; "
            f"pair by pair {figures.more:.2f} µs more ({figures.spread})"
        )
    print(f"  detail: the collection records the kept durations: {collection:.2f} µs/execution")
    emit(
        Row(
            target="decorator: µs more per call with OTLP metrics on",
            ours=f"{cpu.on:.2f} µs/call with metrics",
            baseline=f"{cpu.off:.2f} µs/call without",
            ratio=cpu.more,
            goal=f"<= {GOAL_MICROSECONDS:g}",
        )
    )


class _Figures(NamedTuple):
    on: float
    off: float
    more: float
    """The median of the differences between the two rounds of each pair."""
    spread: str


def _figures(pairs: list[dict[bool, list[float]]], kind: int) -> _Figures:
    """µs per call by CLOCKS[kind]. The difference is taken per pair of neighbouring
    rounds, so a change of the machine's load between rounds cancels out."""
    on = [pair[True][kind] * 1e6 for pair in pairs]
    off = [pair[False][kind] * 1e6 for pair in pairs]
    more = [with_ - without for with_, without in zip(on, off, strict=True)]
    low, _, high = statistics.quantiles(more, n=4)
    spread = f"quartiles {low:.2f} .. {high:.2f}, {min(more):.2f} .. {max(more):.2f} in all"
    return _Figures(statistics.median(on), statistics.median(off), statistics.median(more), spread)


if __name__ == "__main__":
    main()
