"""Metrics leave the process the standard way, checked on real parts.

- OTLP over http/protobuf and grpc to a real ``rotel-agent``, which passes them on to a
  receiver that decodes them (`metrics_receiver`): a process that records ten executions
  and exits at once delivers them (the final export at exit; the interval is a minute);
  ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` alone sends metrics and no spans;
  ``OTEL_METRIC_EXPORT_INTERVAL`` exports while the program runs; the CLI's capture
  sends its execution too.
- A collector that is down costs the exit at most the exit budget, with one warning per
  kind of signal.
- ``prometheus``: the scrape endpoint read over HTTP and parsed with prometheus_client's
  parser, one endpoint however often betty_otel is configured, gone after shutdown.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

import betty_otel
from betty_otel import TelemetryCapture, capture_telemetry
from betty_otel._metrics.conventions import BUCKETS
from collector import free_port
from helpers import read_entries
from metrics_receiver import Point, RotelMetrics, latest

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "BETTY_"))}

PROGRAM = textwrap.dedent(
    """
    import time

    from betty_otel import capture_telemetry

    @capture_telemetry(skill_name="exit.skill")
    def main(number):
        time.sleep(0.02)
        if number % 4 == 0:
            raise LookupError(number)
        return number

    for number in range(10):
        try:
            main(number)
        except LookupError:
            pass
    """
)
"""Ten executions of 20 ms or more, three of them failures, then the process exits at once."""


def _run(
    env: dict[str, str], code: str = PROGRAM
) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return time.monotonic() - started, done


def _of_service(points: list[Point], service: str) -> list[Point]:
    return [point for point in points if point.resource.get("service.name") == service]


@pytest.mark.collector
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_a_process_that_exits_right_after_its_calls_delivers_them_through_a_collector(
    tmp_path: Path, rotel_metrics: RotelMetrics, protocol: str
) -> None:
    """Both instruments arrive with their names, units, buckets and labels; the counts
    match the file's entries, the active count is back to zero."""
    path = tmp_path / "telemetry.json"
    env = {
        **CLEAN_ENV,
        "OTEL_EXPORTER_OTLP_ENDPOINT": rotel_metrics.endpoint(protocol),
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_SERVICE_NAME": "exit-test",
        "BETTY_TELEMETRY_FILE": str(path),
    }
    _, done = _run(env)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    received = rotel_metrics.receiver.wait_until(
        lambda points: any(p.metric == "betty.executions.active" for p in points),
        what="the metrics of the exited process",
    )
    mine = _of_service(received, "exit-test")
    histogram = latest(mine, "betty.execution.duration")
    by_status = {dict(attributes)["betty.status"]: point for attributes, point in histogram.items()}
    assert {status: point.count for status, point in by_status.items()} == {
        "success": 7,
        "failure": 3,
    }
    failure = by_status["failure"]
    assert failure.attributes == {
        "betty.skill": "exit.skill",
        "betty.status": "failure",
        "betty.caller": "runtime",
        "error.type": "LookupError",
    }
    assert failure.unit == "s"
    assert failure.bounds == BUCKETS
    assert sum(failure.bucket_counts) == 3
    entries = read_entries(path)
    assert len(entries) == 10
    total = sum(entry["duration_ms"] for entry in entries) / 1000
    # Each execution sleeps 20 ms: the few microseconds (a millisecond for the first
    # traceback) between the metric's clock and the span's cannot move the sum by 10%.
    measured = sum(point.sum or 0 for point in by_status.values())
    assert measured >= 0.2
    assert measured == pytest.approx(total, rel=0.1)
    (gauge,) = latest(mine, "betty.executions.active").values()
    assert (gauge.kind, gauge.value, gauge.monotonic) == ("sum", 0, False)


@pytest.mark.collector
def test_the_metrics_endpoint_alone_sends_metrics_and_no_spans(
    tmp_path: Path, rotel_metrics: RotelMetrics
) -> None:
    env = {
        **CLEAN_ENV,
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"{rotel_metrics.endpoint('http')}/v1/metrics",
        "OTEL_SERVICE_NAME": "metrics-only",
        "BETTY_TELEMETRY_FILE": str(tmp_path / "telemetry.json"),
    }
    _, done = _run(env)
    assert done.returncode == 0, done.stderr
    received = rotel_metrics.receiver.wait_until(
        lambda points: bool(_of_service(points, "metrics-only")), what="metrics"
    )
    histogram = latest(_of_service(received, "metrics-only"), "betty.execution.duration")
    assert sum(point.count or 0 for point in histogram.values()) == 10
    rotel_metrics.collector.stop()
    assert "/v1/traces" not in rotel_metrics.receiver.paths
    assert rotel_metrics.collector.raw_output().count("Span #") == 0


@pytest.mark.collector
def test_metrics_are_exported_every_interval_while_the_program_runs(
    tmp_path: Path, rotel_metrics: RotelMetrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rotel_metrics.endpoint("http"))
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "100")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "periodic")
    betty_otel.configure(tmp_path / "telemetry.json")

    @capture_telemetry(skill_name="periodic.skill")
    def work() -> int:
        return 1

    work()
    received = rotel_metrics.receiver.wait_until(
        lambda points: bool(_of_service(points, "periodic")), what="a periodic export"
    )
    assert betty_otel.internal_errors() == 0
    assert {p.metric for p in _of_service(received, "periodic")} == {
        "betty.execution.duration",
        "betty.executions.active",
    }


@pytest.mark.collector
def test_the_cli_capture_sends_its_execution_as_a_metric(
    tmp_path: Path, rotel_metrics: RotelMetrics
) -> None:
    env = {
        **CLEAN_ENV,
        "OTEL_METRICS_EXPORTER": "OTLP",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_ENDPOINT": rotel_metrics.endpoint("grpc"),
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_SERVICE_NAME": "cli-capture",
    }
    cli = str(Path(sys.executable).parent / "betty-telemetry")
    argv = [
        cli,
        "capture",
        "cli.skill",
        "failure",
        "1500",
        "CI",
        "--file",
        str(tmp_path / "t.json"),
    ]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    received = rotel_metrics.receiver.wait_until(
        lambda points: bool(_of_service(points, "cli-capture")), what="the capture's metric"
    )
    (point,) = latest(_of_service(received, "cli-capture"), "betty.execution.duration").values()
    assert point.attributes == {
        "betty.skill": "cli.skill",
        "betty.status": "failure",
        "betty.caller": "CI",
        "error.type": "failure",
    }
    assert point.count == 1
    assert point.sum == pytest.approx(1.5)


@pytest.mark.faults
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_a_collector_that_is_down_costs_the_exit_at_most_the_exit_budget(
    tmp_path: Path, protocol: str
) -> None:
    """Spans and metrics are closed together within one budget (about 1 s), with one
    concise warning for each."""
    path = tmp_path / "telemetry.json"
    env = {
        **CLEAN_ENV,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "BETTY_TELEMETRY_FILE": str(path),
    }
    baseline, _ = _run(env, "import betty_otel")
    took, done = _run(env)
    assert done.returncode == 0, done.stderr
    assert len(read_entries(path)) == 10  # the file never pays for the collector
    # A bound against the defect (the exporters' own 10-30 s), not a speed measurement.
    assert took - baseline < 4.0, (took, baseline, done.stderr)
    warnings = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(warnings) <= 2, done.stderr
    assert all("did not take" in line for line in warnings), done.stderr
    assert "Traceback" not in done.stderr


# --------------------------------------------------------------------------- prometheus


@pytest.fixture
def prometheus_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """OTEL_METRICS_EXPORTER=prometheus on a free loopback port."""
    port = free_port()
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "prometheus")
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", str(port))
    yield port
    betty_otel.shutdown()


def scrape(port: int) -> dict[str, list[Sample]]:
    """The endpoint's samples by family, parsed by prometheus_client's text parser."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode("utf-8")
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def _betty_collectors() -> int:
    return sum(
        1 for c in list(REGISTRY._collector_to_names) if type(c).__name__ == "_CustomCollector"
    )


def test_the_prometheus_endpoint_serves_the_histogram_with_betty_labels(
    tmp_path: Path, prometheus_port: int
) -> None:
    betty_otel.configure(tmp_path / "telemetry.json")

    @capture_telemetry(skill_name="prom.skill")
    def work(fail: bool) -> None:
        if fail:
            raise ValueError("no")

    for number in range(5):
        with contextlib.suppress(ValueError):
            work(number == 0)
    TelemetryCapture(tmp_path / "telemetry.json").capture("prom.captured", "success", 40, "CLI")
    families = scrape(prometheus_port)
    samples = families["betty_execution_duration_seconds"]
    counts = {
        (s.labels["betty_skill"], s.labels["betty_status"], s.labels["betty_caller"]): s.value
        for s in samples
        if s.name == "betty_execution_duration_seconds_count"
    }
    assert counts == {
        ("prom.skill", "success", "runtime"): 4,
        ("prom.skill", "failure", "runtime"): 1,
        ("prom.captured", "success", "CLI"): 1,
    }
    failure_buckets = [
        s for s in samples if s.name.endswith("_bucket") and s.labels["betty_status"] == "failure"
    ]
    assert [float(s.labels["le"]) for s in failure_buckets] == [*BUCKETS, float("inf")]
    assert {s.labels["error_type"] for s in failure_buckets} == {"ValueError"}
    captured = [
        s for s in samples if s.labels["betty_skill"] == "prom.captured" and s.name.endswith("_sum")
    ]
    assert [s.value for s in captured] == [pytest.approx(0.04)]
    # Nothing runs now: every skill recorded here is at 0, the captured one too.
    active = {s.labels["betty_skill"]: s.value for s in families["betty_executions_active"]}
    assert active == {"prom.skill": 0, "prom.captured": 0}


def test_one_scrape_endpoint_however_often_betty_otel_is_configured_and_none_after_shutdown(
    tmp_path: Path, prometheus_port: int
) -> None:
    before = _betty_collectors()
    for _ in range(10):
        betty_otel.configure(tmp_path / "telemetry.json")

        @capture_telemetry(skill_name="prom.again")
        def work() -> int:
            return 1

        work()
    assert _betty_collectors() == before + 1
    samples = scrape(prometheus_port)["betty_execution_duration_seconds"]
    assert [s.value for s in samples if s.name.endswith("_count")] == [10]
    betty_otel.shutdown()
    assert _betty_collectors() == before
    with pytest.raises(urllib.error.URLError):
        scrape(prometheus_port)


def test_a_port_that_is_taken_costs_the_endpoint_only_with_one_warning(
    tmp_path: Path, prometheus_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", prometheus_port))
        taken.listen(1)
        betty_otel.configure(tmp_path / "telemetry.json")

        @capture_telemetry(skill_name="prom.taken")
        def work() -> int:
            return 1

        assert work() == 1
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("betty_otel")]
    assert len(messages) == 1, messages
    assert f"127.0.0.1:{prometheus_port}" in messages[0]
    assert len(read_entries(tmp_path / "telemetry.json")) == 1
