"""Shared fixtures: every test gets its own telemetry file and a fresh pipeline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import betty_otel
from betty_otel._store import TelemetryStore
from cli_helpers import entry, write
from collector import rotel_collector  # noqa: F401 - the real-collector fixture
from metrics_receiver import rotel_metrics  # noqa: F401 - a collector passing metrics on

_ENV_TO_CLEAR = (
    "BETTY_TELEMETRY_DISABLED",
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_METRICS_EXPORTER",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    "OTEL_METRIC_EXPORT_INTERVAL",
    "OTEL_EXPORTER_PROMETHEUS_HOST",
    "OTEL_EXPORTER_PROMETHEUS_PORT",
    "BETTY_TELEMETRY_METRICS_MAX_SERIES",
)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test writes outside its tmp_path or sees the machine's OTEL_* settings; each
    starts as in a freshly imported betty_otel (betty_otel.reset: no pipeline, no
    redaction rules, no internal error counted, empty caches)."""
    for name in _ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BETTY_TELEMETRY_FILE", str(tmp_path / "default-telemetry.json"))
    betty_otel.reset()
    yield
    betty_otel.reset()


@pytest.fixture
def telemetry_file(tmp_path: Path) -> Path:
    """A telemetry file configured as the synchronous destination of all spans."""
    path = tmp_path / "telemetry.json"
    betty_otel.configure(path, otlp=False)
    return path


@pytest.fixture
def memory_spans(telemetry_file: Path) -> Iterator[InMemorySpanExporter]:
    """Spans also go to an in-memory exporter on an SDK provider of the program's own."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    betty_otel.configure(telemetry_file, otlp=False, tracer_provider=provider)
    yield memory
    betty_otel.shutdown()
    provider.shutdown()


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    """The log under test, not created; nothing else is configured to write to it."""
    return tmp_path / "telemetry.json"


@pytest.fixture
def store(log_path: Path) -> Iterator[TelemetryStore]:
    """One store on log_path, kept open across the test's appends, closed after."""
    instance = TelemetryStore(log_path)
    yield instance
    instance.close()


@pytest.fixture
def log(tmp_path: Path) -> Path:
    """A CLI log of twelve entries: 4 a failure, 7 a timeout (by API), 9 "failed" (by API)."""
    entries = [entry(i) for i in range(12)]
    entries[4].update(status="failure", error_message="boom\nsecond line", duration_ms=500.0)
    entries[7].update(status="timeout", error_message="too slow", caller="API")
    entries[9].update(status="failed", caller="API")
    return write(tmp_path / "log.json", entries)
