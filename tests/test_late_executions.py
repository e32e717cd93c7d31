"""An execution in flight across a reconfigure or ``shutdown()`` is still in the log, once.

- On the file-only path, it is written to the file of the configuration it started
  under, synchronous or batched, and the shut-down exporter keeps no descriptor open.
- On a span path (a real collector configured, or a program's own provider), it is
  written by the file of the configuration current when it ends; after ``shutdown()``
  by the file that was current. A span that starts after ``shutdown()`` on a
  program's provider is not betty_otel's to record.
- Closing a store while an append of this process holds it (another thread, or the
  frame a signal handler interrupted) never closes the descriptor under it (its number
  could go to another file and take the entry), nor waits: the append closes it.
- An execution whose span begins after a shutdown, on a program's provider, is written.
"""

from __future__ import annotations

import contextlib
import json
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
from helpers import betty_errors, read_entries, run_script

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


def test_closing_a_store_during_an_append_leaves_the_descriptor_to_the_append(
    tmp_path: Path,
) -> None:
    """close() from another thread while an append holds the store returns at once; the
    holder's descriptor stays its own until it lets go, and is closed then."""
    store = TelemetryStore(tmp_path / "telemetry.json")
    store.append([{"skill": "first", "status": "success"}])
    holding, closed = threading.Event(), threading.Event()
    seen: list[bool] = []

    def hold() -> None:
        with store.locked() as fd:
            holding.set()
            assert closed.wait(60)
            seen.append(os.fstat(fd).st_size > 0)  # still this file's descriptor
            seen.append(str(store.path) in _open_descriptors())

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(60)
    store.close()
    closed.set()
    holder.join(60)
    assert seen == [True, True]
    assert str(store.path) not in _open_descriptors()
    store.append([{"skill": "second", "status": "success"}])  # reopened on next use
    store.close()
    assert _skills(store.path) == ["first", "second"]


def test_a_shutdown_from_a_signal_handler_during_an_append_does_not_wait(tmp_path: Path) -> None:
    """A signal handler calls shutdown() while the thread it interrupted is inside an
    append: the program goes on at once (no lock_timeout spent), and the interrupted
    entry is written."""
    output = run_script(_SIGNAL_PROGRAM, tmp_path, {"LOG": str(tmp_path / "telemetry.json")})
    assert json.loads(output.strip().splitlines()[-1]) == {"handler ran": True, "waited": False}
    assert _skills(tmp_path / "telemetry.json") == ["signal.main"]


_SIGNAL_PROGRAM = """
    import json, os, signal, time
    import betty_otel
    from betty_otel._store import writer

    betty_otel.configure(os.environ["LOG"], otlp=False, lock_timeout=120)
    ran = []


    def on_signal(signum, frame):
        started = time.monotonic()
        betty_otel.shutdown()
        ran.append(time.monotonic() - started)


    signal.signal(signal.SIGUSR1, on_signal)
    real_append = writer.TelemetryStore._append_locked


    def append_then_signal(self, fd, lines):  # the fault: the signal lands mid-append
        real_append(self, fd, lines)
        os.kill(os.getpid(), signal.SIGUSR1)


    writer.TelemetryStore._append_locked = append_then_signal
    with betty_otel.TelemetryContext("signal.main"):
        pass
    writer.TelemetryStore._append_locked = real_append
    betty_otel.shutdown()
    print(json.dumps({"handler ran": len(ran) == 1, "waited": ran[0] > 60}), flush=True)
    """


def test_an_execution_whose_span_begins_after_shutdown_on_a_programs_provider_is_written(
    tmp_path: Path,
) -> None:
    """A call took the pipeline, then shutdown() ran (from its inputs' repr, standing for
    another thread) before its span began: the execution is still written, once."""
    provider = TracerProvider(shutdown_on_exit=False)
    path = tmp_path / "telemetry.json"
    betty_otel.configure(path, otlp=False, tracer_provider=provider)

    class ShutsDown:
        def __repr__(self) -> str:
            betty_otel.shutdown()
            return "ShutsDown()"

    @capture_telemetry(skill_name="late.start", capture_inputs=True)
    def call(value: object) -> str:
        return "ran"

    assert call(ShutsDown()) == "ran"
    assert _skills(path) == ["late.start"]
