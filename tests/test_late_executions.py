"""An execution in flight across a reconfigure or ``shutdown()`` is still in the log, once.

- On the file-only path, it is written to the file of the configuration it started
  under, synchronous or batched, and the shut-down exporter keeps no descriptor open.
- On a span path (a real collector configured, or a program's own provider), it is
  written by the file of the configuration current when it ends; after ``shutdown()``
  by the file that was current. A span that starts after ``shutdown()`` on a
  program's provider is not betty_otel's to record.
- Closing a store waits for an append of this process in progress, so its descriptor
  is never closed under it (its number could go to another file and take the entry).
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import betty_otel
from betty_otel import TelemetryContext, capture_telemetry
from betty_otel._store import TelemetryStore
from collector import RotelCollector
from helpers import betty_errors, read_entries

MODES = pytest.mark.parametrize("batch", [False, True], ids=["sync", "batch"])


def _skills(path: Path) -> list[str]:
    return [entry["skill"] for entry in read_entries(path)] if path.exists() else []


def _open_descriptors() -> set[str]:
    """The files this process has open (listing the folder opens one that then closes)."""
    names = set()
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):
            names.add(str(fd.readlink()))
    return names


@MODES
def test_file_only_executions_across_a_reconfigure_and_shutdown_are_written_where_they_began(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, batch: bool
) -> None:
    """Two nested executions open across a reconfigure go to the first file, one open
    across shutdown() to the second; nothing is dropped or logged as an error."""
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    exporter = betty_otel.configure(first, otlp=False, batch=batch)
    assert exporter is not None
    with TelemetryContext("spanning.outer", caller="test"), TelemetryContext("spanning.inner"):
        betty_otel.configure(second, otlp=False, batch=batch)
    with TelemetryContext("spanning.shutdown", caller="test"):
        betty_otel.shutdown()
    assert sorted(_skills(first)) == ["spanning.inner", "spanning.outer"]
    assert _skills(second) == ["spanning.shutdown"]
    assert exporter.dropped == 0
    assert betty_errors(caplog.records) == []
    assert betty_otel.internal_errors() == 0
    assert not {str(first), str(second)} & _open_descriptors()


@MODES
def test_a_decorated_call_spanning_a_reconfigure_on_another_thread_is_written_once(
    tmp_path: Path, batch: bool
) -> None:
    """A call running on a thread while the main thread reconfigures twice is in exactly
    one of the files, once, with its own result."""
    started, release = threading.Event(), threading.Event()

    @capture_telemetry(skill_name="thread.long", caller="test")
    def long_call() -> str:
        started.set()
        release.wait(10)
        return "done"

    paths = [tmp_path / f"log{number}.json" for number in range(3)]
    betty_otel.configure(paths[0], otlp=False, batch=batch)
    results: list[str] = []
    worker = threading.Thread(target=lambda: results.append(long_call()))
    worker.start()
    assert started.wait(10)
    betty_otel.configure(paths[1], otlp=False, batch=batch)
    betty_otel.configure(paths[2], otlp=False, batch=batch)
    release.set()
    worker.join(10)
    betty_otel.shutdown()
    assert results == ["done"]
    assert [skill for path in paths for skill in _skills(path)] == ["thread.long"]
    assert _skills(paths[0]) == ["thread.long"]


@pytest.mark.collector
@MODES
def test_with_a_collector_executions_across_a_reconfigure_and_shutdown_are_written_once(
    tmp_path: Path, rotel_collector: RotelCollector, batch: bool
) -> None:
    """On the span path (a real collector), an execution open across a reconfigure is
    written by the new configuration's file, one open across shutdown() by the last
    configured file, each once."""
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    endpoint = rotel_collector.http_endpoint
    betty_otel.configure(first, otlp=True, otlp_endpoint=endpoint, batch=batch)
    with TelemetryContext("spanning.reconfigure", caller="test"):
        betty_otel.configure(second, otlp=True, otlp_endpoint=endpoint, batch=batch)
    with TelemetryContext("spanning.shutdown", caller="test"):
        betty_otel.shutdown()
    assert _skills(first) == []
    assert sorted(_skills(second)) == ["spanning.reconfigure", "spanning.shutdown"]


def test_on_a_programs_provider_only_spans_begun_before_shutdown_are_written_after_it(
    tmp_path: Path,
) -> None:
    """The program's provider keeps our processor after shutdown(): a span of an
    execution begun before is written; one begun after is not ours to record."""
    provider = TracerProvider(shutdown_on_exit=False)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    path = tmp_path / "telemetry.json"
    betty_otel.configure(path, otlp=False, tracer_provider=provider)
    tracer = provider.get_tracer("app")
    before = tracer.start_span("before", attributes={"betty.skill": "app.before"})
    betty_otel.shutdown()
    after = tracer.start_span("after", attributes={"betty.skill": "app.after"})
    before.end()
    after.end()
    assert _skills(path) == ["app.before"]
    assert [span.name for span in memory.get_finished_spans()] == ["before", "after"]


def test_closing_a_store_waits_for_an_append_in_progress(tmp_path: Path) -> None:
    """close() from another thread while an append holds the store: the holder's
    descriptor stays open until it lets go, then close() closes it."""
    store = TelemetryStore(tmp_path / "telemetry.json", lock_timeout=30)
    store.append([{"skill": "first", "status": "success"}])
    holding, closing_started, closed = threading.Event(), threading.Event(), threading.Event()
    seen: list[int] = []

    def hold() -> None:
        with store.locked() as fd:
            holding.set()
            assert closing_started.wait(10)
            assert not closed.wait(0.2)  # close() is waiting for us
            seen.append(os.fstat(fd).st_size)  # the descriptor is still ours

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(10)
    closing_started.set()
    store.close()
    closed.set()
    holder.join(10)
    assert len(seen) == 1
    assert seen[0] > 0
    assert str(store.path) not in _open_descriptors()
    store.append([{"skill": "second", "status": "success"}])  # reopened on next use
    store.close()
    assert _skills(store.path) == ["first", "second"]
