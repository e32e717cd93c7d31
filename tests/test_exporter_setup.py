"""BettyFileExporter (export never raises, counts, logging, threads) and configure() wiring.

Spans for the exporter come from a real SDK TracerProvider with an InMemorySpanExporter;
everything is written to real files under tmp_path and read back with ``read_entries``.
Batch mode, interpreter exit and fork children: test_exporter_batch.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

import betty_otel
from betty_otel import BettyFileExporter, TelemetryContext, _setup, capture_telemetry
from helpers import betty_errors, no_entries, read_entries, run_script


def make_spans(
    count: int, *, betty: bool = True, prefix: str = "skill", status: str = "success"
) -> list[ReadableSpan]:
    """count finished SDK spans, with betty.* attributes or with foreign ones."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests")
    for n in range(count):
        attributes: dict[str, Any] = (
            {"betty.skill": f"{prefix}{n}", "betty.caller": "tests", "betty.status": status}
            if betty
            else {"http.method": "GET", "http.status_code": 200}
        )
        tracer.start_span(f"span-{prefix}{n}", attributes=attributes).end()
    provider.shutdown()
    return list(memory.get_finished_spans())


@pytest.fixture
def provider_and_memory() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """The program's own SDK provider, exporting to memory."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield provider, memory
    betty_otel.shutdown()
    provider.shutdown()


# ---------------------------------------------------------------------------
# BettyFileExporter
# ---------------------------------------------------------------------------


def test_export_appends_one_entry_per_span_in_order(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    exporter = BettyFileExporter(path)
    assert exporter.path == path
    assert exporter.export(make_spans(3)) is SpanExportResult.SUCCESS
    assert exporter.export(make_spans(2, prefix="more")) is SpanExportResult.SUCCESS
    entries = read_entries(path)
    assert [e["skill"] for e in entries] == ["skill0", "skill1", "skill2", "more0", "more1"]
    assert exporter.exported == 5
    assert exporter.dropped == 0


def test_export_maps_betty_attributes_to_the_entry(tmp_path: Path) -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    span = provider.get_tracer("tests").start_span(
        "mapped",
        attributes={
            "betty.skill": "mapped",
            "betty.caller": "API",
            "betty.status": "failure",
            "betty.inputs": json.dumps({"a": [1, {"b": None}]}),
            "betty.metadata": json.dumps({"m": "v"}),
            "betty.error_message": "ValueError: x",
        },
    )
    span.set_status(Status(StatusCode.ERROR, "ValueError: x"))
    span.end()
    provider.shutdown()
    path = tmp_path / "t.json"
    BettyFileExporter(path).export(memory.get_finished_spans())
    (entry,) = read_entries(path)
    context = span.get_span_context()
    assert entry == {
        "timestamp": entry["timestamp"],
        "skill": "mapped",
        "status": "failure",
        "duration_ms": entry["duration_ms"],
        "caller": "API",
        "inputs": {"a": [1, {"b": None}]},
        "error_message": "ValueError: x",
        "metadata": {"m": "v"},
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
        "parent_span_id": None,
    }


def test_export_uses_the_configured_timezone(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    BettyFileExporter(path, timezone=timezone(timedelta(hours=2))).export(make_spans(1))
    assert read_entries(path)[0]["timestamp"].endswith("+02:00")


def test_spans_without_betty_skill_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    exporter = BettyFileExporter(path)
    assert exporter.export(make_spans(2, betty=False)) is SpanExportResult.SUCCESS
    assert no_entries(path)
    assert exporter.export(make_spans(1) + make_spans(1, betty=False)) is SpanExportResult.SUCCESS
    assert [e["skill"] for e in read_entries(path)] == ["skill0"]


def test_all_spans_writes_foreign_spans_with_their_name_as_skill(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    exporter = BettyFileExporter(path, all_spans=True)
    assert exporter.export(make_spans(1, betty=False)) is SpanExportResult.SUCCESS
    (entry,) = read_entries(path)
    assert entry["skill"] == "span-skill0"
    assert entry["status"] == "success"
    assert entry["metadata"] == {"http.method": "GET", "http.status_code": 200}


def _under_a_file(tmp_path: Path) -> Path:
    blocker = tmp_path / "afile"
    blocker.write_text("a regular file")
    return blocker / "x.json"


def _a_directory(tmp_path: Path) -> Path:
    path = tmp_path / "is-a-dir.json"
    path.mkdir()
    (path / "keep").write_text("kept")
    return path


@pytest.mark.parametrize("where", [_under_a_file, _a_directory], ids=["under-a-file", "a-dir"])
def test_export_to_an_unwritable_path_fails_counts_logs_once_and_never_raises(
    where: Callable[[Path], Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = where(tmp_path)
    exporter = BettyFileExporter(path)
    caplog.set_level(logging.DEBUG, logger="betty_otel")
    results = [exporter.export(make_spans(2)) for _ in range(3)]
    assert results == [SpanExportResult.FAILURE] * 3
    assert exporter.dropped == 6
    assert exporter.exported == 0
    errors = betty_errors(caplog.records)
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert str(path) in errors[0].getMessage()
    # nothing that was there is destroyed
    if path.parent.name == "afile":
        assert path.parent.read_text() == "a regular file"
    else:
        assert (path / "keep").read_text() == "kept"


def test_export_after_recovery_succeeds_again(tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    exporter = BettyFileExporter(blocker / "x.json")
    assert exporter.export(make_spans(1)) is SpanExportResult.FAILURE
    blocker.unlink()
    blocker.mkdir()
    assert exporter.export(make_spans(1)) is SpanExportResult.SUCCESS
    assert len(read_entries(blocker / "x.json")) == 1
    assert (exporter.dropped, exporter.exported) == (1, 1)


def test_shutdown_twice_is_safe_and_later_exports_fail_quietly(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    exporter = BettyFileExporter(path)
    assert exporter.export(make_spans(1)) is SpanExportResult.SUCCESS
    exporter.shutdown()
    exporter.shutdown()
    assert exporter.export(make_spans(1)) is SpanExportResult.FAILURE
    assert len(read_entries(path)) == 1


def test_force_flush_returns_true(tmp_path: Path) -> None:
    exporter = BettyFileExporter(tmp_path / "t.json")
    assert exporter.force_flush() is True
    assert exporter.force_flush(timeout_millis=1) is True


def test_export_from_eight_threads_at_once_gives_exact_counts(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    exporter = BettyFileExporter(path)
    threads_n, batches, per_batch = 8, 25, 4
    work = [
        [make_spans(per_batch, prefix=f"t{t}b{b}-") for b in range(batches)]
        for t in range(threads_n)
    ]
    barrier = threading.Barrier(threads_n)
    results: list[SpanExportResult] = []
    lock = threading.Lock()

    def worker(mine: list[list[ReadableSpan]]) -> None:
        barrier.wait()
        for batch in mine:
            result = exporter.export(batch)
            with lock:
                results.append(result)

    threads = [threading.Thread(target=worker, args=(mine,)) for mine in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = threads_n * batches * per_batch
    assert results == [SpanExportResult.SUCCESS] * (threads_n * batches)
    assert exporter.exported == total
    assert exporter.dropped == 0
    entries = read_entries(path)
    assert len(entries) == total
    assert len({entry["span_id"] for entry in entries}) == total
    # each batch stays together, in order
    skills = [entry["skill"] for entry in entries]
    for index in range(0, total, per_batch):
        prefix = skills[index][:-1]
        assert skills[index : index + per_batch] == [f"{prefix}{n}" for n in range(per_batch)]


# ---------------------------------------------------------------------------
# configure(): providers, resource, env switches
# ---------------------------------------------------------------------------


def test_configure_returns_the_file_exporter_and_writes_synchronously(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    exporter = betty_otel.configure(path, otlp=False)
    assert isinstance(exporter, BettyFileExporter)
    assert exporter.path == path

    @capture_telemetry(skill_name="sync.write")
    def work() -> int:
        return 1

    assert work() == 1
    assert [e["skill"] for e in read_entries(path)] == ["sync.write"]  # on disk already


def test_configure_adds_our_processor_to_a_given_sdk_provider(
    tmp_path: Path, provider_and_memory: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, memory = provider_and_memory
    path = tmp_path / "t.json"
    betty_otel.configure(path, otlp=False, tracer_provider=provider)
    assert _setup.current_pipeline().provider is provider

    @capture_telemetry(skill_name="shared")
    def work() -> None:
        pass

    work()
    with provider.get_tracer("app").start_as_current_span("app.own"):
        work()
    (first, second) = read_entries(path)
    names = [span.name for span in memory.get_finished_spans()]
    assert names == ["shared", "shared", "app.own"]
    app_span = memory.get_finished_spans()[2]
    assert second["parent_span_id"] == format(app_span.context.span_id, "016x")
    assert first["span_id"] == format(memory.get_finished_spans()[0].context.span_id, "016x")


def test_reconfiguring_a_given_provider_does_not_duplicate_entries(
    tmp_path: Path, provider_and_memory: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, memory = provider_and_memory
    first_path, second_path = tmp_path / "first.json", tmp_path / "second.json"

    @capture_telemetry(skill_name="once")
    def work() -> None:
        pass

    betty_otel.configure(first_path, otlp=False, tracer_provider=provider)
    work()
    betty_otel.configure(second_path, otlp=False, tracer_provider=provider)
    work()
    betty_otel.configure(second_path, otlp=False, tracer_provider=provider)
    work()
    assert len(read_entries(first_path)) == 1
    assert len(read_entries(second_path)) == 2
    assert len(memory.get_finished_spans()) == 3


def test_shutdown_detaches_our_processor_from_a_given_provider(
    tmp_path: Path, provider_and_memory: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, memory = provider_and_memory
    path = tmp_path / "t.json"
    betty_otel.configure(path, otlp=False, tracer_provider=provider)
    tracer = provider.get_tracer("app")
    tracer.start_span("x", attributes={"betty.skill": "before"}).end()
    betty_otel.shutdown()
    tracer.start_span("x", attributes={"betty.skill": "after"}).end()
    assert [e["skill"] for e in read_entries(path)] == ["before"]
    assert len(memory.get_finished_spans()) == 2  # the program's own exporter goes on


def test_a_globally_set_sdk_provider_gets_our_processor(tmp_path: Path) -> None:
    path = tmp_path / "global.json"
    out = run_script(
        """
        import json
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        memory = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        trace.set_tracer_provider(provider)

        from betty_otel import capture_telemetry

        @capture_telemetry(skill_name="global")
        def work():
            return 1

        work()
        with trace.get_tracer("app").start_as_current_span("app.span") as span:
            work()
        print(json.dumps({
            "names": [s.name for s in memory.get_finished_spans()],
            "app": format(span.get_span_context().span_id, "016x"),
        }))
        """,
        tmp_path,
        {"BETTY_TELEMETRY_FILE": str(path)},
    )
    seen = json.loads(out)
    assert seen["names"] == ["global", "global", "app.span"]
    first, second = read_entries(path)
    assert first["parent_span_id"] is None
    assert second["parent_span_id"] == seen["app"]


def test_own_provider_resource_honours_otel_service_name_and_resource_attributes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "betty-tests")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=ci,team=betty")
    # A collector (here the console) receives the spans, so they are the SDK's, on our
    # provider (with the file alone there is no provider: see test_filespan).
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    betty_otel.configure(tmp_path / "t.json", otlp=False)
    current = _setup.current_pipeline()
    assert current.provider is not None
    attributes = current.provider.resource.attributes
    assert attributes["service.name"] == "betty-tests"
    assert attributes["deployment.environment"] == "ci"
    assert attributes["team"] == "betty"


def test_lazy_configuration_uses_betty_telemetry_file(tmp_path: Path) -> None:
    @capture_telemetry(skill_name="lazy")
    def work() -> None:
        pass

    work()
    assert [e["skill"] for e in read_entries(tmp_path / "default-telemetry.json")] == ["lazy"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_SDK_DISABLED", "true"),
        ("OTEL_SDK_DISABLED", "TRUE"),
        ("BETTY_TELEMETRY_DISABLED", "1"),
    ],
)
def test_disabled_by_env_makes_the_decorator_a_pass_through(
    variable: str, value: str, telemetry_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    betty_otel.shutdown()
    default_file = Path(os.environ["BETTY_TELEMETRY_FILE"])
    value_obj = {"v": 1}
    exc = ValueError("still raised")

    @capture_telemetry(capture_inputs=True)
    def sync_fn(x: int) -> dict[str, int]:
        return value_obj

    @capture_telemetry
    async def async_fn() -> dict[str, int]:
        return value_obj

    @capture_telemetry
    def gen_fn() -> Iterator[int]:
        yield 1
        yield 2

    @capture_telemetry
    async def agen_fn() -> AsyncIterator[int]:
        yield 1

    @capture_telemetry
    def failing() -> None:
        raise exc

    async def collect() -> list[int]:
        return [item async for item in agen_fn()]

    assert sync_fn(1) is value_obj
    assert asyncio.run(async_fn()) is value_obj
    assert list(gen_fn()) == [1, 2]
    assert asyncio.run(collect()) == [1]
    with pytest.raises(ValueError, match="still raised") as info:
        failing()
    assert info.value is exc
    assert _setup.current_pipeline().tracer is None
    assert betty_otel.configure(telemetry_file, otlp=False) is None
    assert sync_fn(2) is value_obj
    assert no_entries(telemetry_file)
    assert no_entries(default_file)


# ---------------------------------------------------------------------------
# an unwritable file never breaks the program
# ---------------------------------------------------------------------------


def test_decorated_code_runs_normally_when_the_file_is_unwritable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    exporter = betty_otel.configure(blocker / "x.json", otlp=False)
    assert exporter is not None
    exc = KeyError("k")

    @capture_telemetry(capture_inputs=True)
    def ok(n: int) -> list[int]:
        return [n]

    @capture_telemetry
    def bad() -> None:
        raise exc

    @capture_telemetry
    async def aok() -> str:
        return "async"

    for n in range(3):
        assert ok(n) == [n]
    with pytest.raises(KeyError) as info:
        bad()
    assert info.value is exc
    assert asyncio.run(aok()) == "async"
    with TelemetryContext("ctx") as ctx:
        ctx.set_metadata({"a": 1})
    assert exporter.dropped == 6
    assert len(betty_errors(caplog.records)) == 1
    assert blocker.read_text() == "x"
