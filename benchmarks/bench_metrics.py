"""Per-call cost of the metrics: @capture_telemetry with OTLP metrics on against off.

Both sides decorate the same function (capture_inputs=True) and write the file in batch
mode through the same tracer (OTEL_TRACES_EXPORTER=none: the file alone receives the
spans). "On" adds OTEL_METRICS_EXPORTER=otlp: betty_otel's own MeterProvider with its
periodic OTLP reader (every minute, so no export falls inside a round: the cost measured
is what each call pays, the active count and the histogram); "off" is
OTEL_METRICS_EXPORTER=none, where a call pays one test. Rounds alternate between the
sides (reconfiguring outside the timing) and the median rounds are compared. Target: at
most a few microseconds more per call (the row's ratio is the difference in µs).

    .venv/bin/python benchmarks/bench_metrics.py   (BENCH_CALLS=2000 for a quicker run)
"""

from __future__ import annotations

import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

from table import Row, emit

import betty_otel
from betty_otel._setup import pipeline

CALLS = int(os.environ.get("BENCH_CALLS", "5000"))
ROUNDS = 9
GOAL_MICROSECONDS = 5.0


@betty_otel.capture_telemetry(skill_name="bench.metrics", capture_inputs=True)
def work(a: int, b: str, flag: bool = False) -> None:  # noqa: ARG001 - recorded as inputs
    return None


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _configure(path: Path, metrics: bool) -> None:
    os.environ["OTEL_METRICS_EXPORTER"] = "otlp" if metrics else "none"
    betty_otel.configure(path, batch=True, exit_timeout=0.2)


def _round(path: Path, metrics: bool) -> float:
    """Seconds per call over CALLS calls, the batch flushed inside the timing."""
    _configure(path, metrics)
    started = time.perf_counter()
    for number in range(CALLS):
        work(number, "text", flag=True)
    pipeline().force_flush()
    return (time.perf_counter() - started) / CALLS


def main() -> None:
    os.environ["OTEL_TRACES_EXPORTER"] = "none"
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{_closed_port()}"
    os.environ.pop("OTEL_METRIC_EXPORT_INTERVAL", None)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "telemetry.json"
        for metrics in (True, False):  # warm-up
            _round(path, metrics)
        times: dict[bool, list[float]] = {True: [], False: []}
        for number in range(ROUNDS):
            order = (True, False) if number % 2 else (False, True)
            for metrics in order:
                times[metrics].append(_round(path, metrics))
                path.unlink(missing_ok=True)
        betty_otel.shutdown()
    on = statistics.median(times[True]) * 1e6
    off = statistics.median(times[False]) * 1e6
    print(f"decorator, batch: {on:.2f} µs/call with OTLP metrics, {off:.2f} µs/call without")
    emit(
        Row(
            target="decorator: µs more per call with OTLP metrics on",
            ours=f"{on:.2f} µs/call with metrics",
            baseline=f"{off:.2f} µs/call without",
            ratio=on - off,
            goal=f"<= {GOAL_MICROSECONDS:g}",
        )
    )


if __name__ == "__main__":
    main()
