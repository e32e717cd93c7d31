"""TelemetryContext, and nesting of executions (sync, async, threads).

All entries are written to a real file (the ``telemetry_file`` fixture) and read back.
TelemetryCapture.capture() and .query(): test_telemetry_capture.py.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from betty_otel import TelemetryCapture, TelemetryContext, capture_telemetry
from helpers import no_entries, only_entry, read_entries, span_hex

REDACTED = "***REDACTED***"
INVALID_STATUS = "Invalid status: bogus. Must be one of: success, failure, timeout, error, pending"


# ---------------------------------------------------------------------------
# TelemetryContext
# ---------------------------------------------------------------------------


def test_context_with_records_skill_caller_inputs_metadata(telemetry_file: Path) -> None:
    with TelemetryContext(
        "ctx.skill", caller="API", inputs={"q": "x", "token": "t-1"}, metadata={"m": 1}
    ) as ctx:
        assert isinstance(ctx, TelemetryContext)
    entry = only_entry(telemetry_file)
    assert entry["skill"] == "ctx.skill"
    assert entry["caller"] == "API"
    assert entry["status"] == "success"
    assert entry["inputs"] == {"q": "x", "token": REDACTED}
    assert entry["metadata"] == {"m": 1}
    assert entry["error_message"] is None


def test_context_defaults_caller_runtime_and_empty_inputs_metadata(telemetry_file: Path) -> None:
    with TelemetryContext("plain"):
        pass
    entry = only_entry(telemetry_file)
    assert entry["caller"] == "runtime"
    assert entry["inputs"] == {}
    assert entry["metadata"] == {}


def test_context_async_with_covers_the_awaited_block(telemetry_file: Path) -> None:
    async def main() -> None:
        async with TelemetryContext("async.ctx", caller="CLI") as ctx:
            assert trace.get_current_span() is ctx.span
            await asyncio.sleep(0.025)

    asyncio.run(main())
    entry = only_entry(telemetry_file)
    assert entry["skill"] == "async.ctx"
    assert entry["caller"] == "CLI"
    assert entry["status"] == "success"
    assert entry["duration_ms"] >= 20


def test_context_set_inputs_replaces_the_inputs(telemetry_file: Path) -> None:
    with TelemetryContext("s", inputs={"old": 1}) as ctx:
        ctx.set_inputs({"new": 2, "apiKey": "k-123"})
    assert only_entry(telemetry_file)["inputs"] == {"new": 2, "apiKey": REDACTED}


def test_context_set_inputs_before_enter_is_recorded(telemetry_file: Path) -> None:
    ctx = TelemetryContext("s")
    ctx.set_inputs({"a": 1})
    with ctx:
        pass
    assert only_entry(telemetry_file)["inputs"] == {"a": 1}


def test_context_set_metadata_merges_keys(telemetry_file: Path) -> None:
    with TelemetryContext("s", metadata={"a": 1}) as ctx:
        ctx.set_metadata({"b": 2})
        ctx.set_metadata({"a": 3, "nested": {"password": "pw"}})
    assert only_entry(telemetry_file)["metadata"] == {
        "a": 3,
        "b": 2,
        "nested": {"password": REDACTED},
    }


@pytest.mark.parametrize("status", ["success", "failure", "timeout", "error", "pending"])
def test_context_set_status_is_recorded(status: str, telemetry_file: Path) -> None:
    with TelemetryContext("s") as ctx:
        ctx.set_status(status)
    assert only_entry(telemetry_file)["status"] == status


def test_context_set_status_rejects_an_unknown_status_with_the_design_message(
    telemetry_file: Path,
) -> None:
    with TelemetryContext("s") as ctx:
        with pytest.raises(ValueError, match="Invalid status") as info:
            ctx.set_status("bogus")
        assert str(info.value) == INVALID_STATUS
    assert only_entry(telemetry_file)["status"] == "success"


def test_context_set_error_makes_it_a_failure_with_that_message(telemetry_file: Path) -> None:
    with TelemetryContext("s") as ctx:
        ctx.set_error("disk full")
    entry = only_entry(telemetry_file)
    assert entry["status"] == "failure"
    assert entry["error_message"] == "disk full"


@pytest.mark.parametrize("status", ["error", "timeout"])
def test_context_set_error_keeps_an_error_or_timeout_status(
    status: str, telemetry_file: Path
) -> None:
    with TelemetryContext("s") as ctx:
        ctx.set_status(status)
        ctx.set_error("why")
    entry = only_entry(telemetry_file)
    assert entry["status"] == status
    assert entry["error_message"] == "why"


def test_context_set_error_after_pending_is_failure(telemetry_file: Path) -> None:
    with TelemetryContext("s") as ctx:
        ctx.set_status("pending")
        ctx.set_error("why")
    assert only_entry(telemetry_file)["status"] == "failure"


def test_context_span_is_the_current_otel_span_of_the_entry(
    memory_spans: InMemorySpanExporter, telemetry_file: Path
) -> None:
    with TelemetryContext("spanned") as ctx:
        span = ctx.span
        assert span.is_recording()
        assert trace.get_current_span() is span
        span.set_attribute("custom.attr", "v")
    assert trace.get_current_span() is not span
    entry = only_entry(telemetry_file)
    assert entry["span_id"] == span_hex(span)
    assert entry["trace_id"] == format(span.get_span_context().trace_id, "032x")
    (finished,) = memory_spans.get_finished_spans()
    assert finished.name == "spanned"
    assert finished.attributes is not None
    assert finished.attributes["custom.attr"] == "v"
    assert finished.attributes["betty.skill"] == "spanned"


@pytest.mark.parametrize(
    ("exc", "status", "message"),
    [
        (ValueError("boom"), "failure", "ValueError: boom"),
        (TimeoutError("late"), "timeout", "TimeoutError: late"),
        (KeyboardInterrupt(), "error", "KeyboardInterrupt"),
        (SystemExit(0), "success", None),
        (SystemExit(2), "failure", "Exited with code 2"),
    ],
    ids=["ValueError", "TimeoutError", "KeyboardInterrupt", "SystemExit0", "SystemExit2"],
)
@pytest.mark.parametrize("use_async", [False, True], ids=["with", "async-with"])
def test_context_exception_is_recorded_and_reraised_unchanged(
    exc: BaseException, status: str, message: str | None, use_async: bool, telemetry_file: Path
) -> None:
    def body() -> None:
        raise exc

    async def main() -> None:
        async with TelemetryContext("s"):
            body()

    def block() -> None:
        if use_async:
            asyncio.run(main())
        else:
            with TelemetryContext("s"):
                body()

    with pytest.raises(type(exc)) as info:
        block()
    assert info.value is exc
    entry = only_entry(telemetry_file)
    assert entry["status"] == status
    assert entry["error_message"] == message


def test_context_exception_overrides_an_explicit_success(telemetry_file: Path) -> None:
    def block() -> None:
        with TelemetryContext("s") as ctx:
            ctx.set_status("success")
            raise ValueError("late")

    with pytest.raises(ValueError, match="late"):
        block()
    assert only_entry(telemetry_file)["status"] == "failure"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"skill": ""}, ValueError),
        ({"skill": "s", "caller": ""}, ValueError),
        ({"skill": "s", "inputs": [1, 2]}, TypeError),
        ({"skill": "s", "metadata": "text"}, TypeError),
    ],
    ids=["empty-skill", "empty-caller", "inputs-list", "metadata-str"],
)
def test_context_constructor_validation(
    kwargs: dict[str, Any], error: type[Exception], telemetry_file: Path
) -> None:
    with pytest.raises(error):
        TelemetryContext(**kwargs)
    assert no_entries(telemetry_file)


def test_context_setters_reject_non_mappings(telemetry_file: Path) -> None:
    with TelemetryContext("s") as ctx:
        with pytest.raises(TypeError):
            ctx.set_inputs([1])  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            ctx.set_metadata("x")  # type: ignore[arg-type]
    assert only_entry(telemetry_file)["status"] == "success"


def test_context_reentered_while_running_is_an_error(telemetry_file: Path) -> None:
    ctx = TelemetryContext("once")
    with ctx, pytest.raises(RuntimeError), ctx:
        pass
    assert only_entry(telemetry_file)["skill"] == "once"


def test_context_can_be_reused_sequentially(telemetry_file: Path) -> None:
    ctx = TelemetryContext("again")
    with ctx:
        pass
    with ctx:
        pass
    entries = read_entries(telemetry_file)
    assert [entry["skill"] for entry in entries] == ["again", "again"]
    assert entries[0]["span_id"] != entries[1]["span_id"]


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Bearer abcDEF123456ghiJKL789", "abcDEF123456ghiJKL789"),
        (
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
            "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        ),
        (
            "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n"
            "-----END PRIVATE KEY-----",
            "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
        ),
        ("https://bob:hunter2Hunter2@example.com/x", "hunter2Hunter2"),
        ("retry with password=CorrectHorse9Battery", "CorrectHorse9Battery"),
    ],
    ids=["bearer", "jwt", "pem", "url", "password-pair"],
)
def test_context_secret_values_in_inputs_metadata_and_errors_never_reach_file_or_span(
    text: str, secret: str, telemetry_file: Path, memory_spans: InMemorySpanExporter
) -> None:
    def block() -> None:
        with TelemetryContext("leaky", inputs={"note": text}) as ctx:
            ctx.set_metadata({"detail": [text]})
            raise RuntimeError(f"failed: {text}")

    with pytest.raises(RuntimeError, match="failed"):
        block()
    with TelemetryContext("leaky.set_error") as ctx:
        ctx.set_error(f"failed: {text}")
    capture = TelemetryCapture(telemetry_file)
    capture.capture(
        "leaky.capture",
        "failure",
        1.0,
        "API",
        inputs={"note": text},
        error_message=f"failed: {text}",
        metadata={"detail": text},
    )
    raw = telemetry_file.read_bytes()
    assert len(read_entries(telemetry_file)) == 3
    assert secret.encode() not in raw
    assert REDACTED.encode() in raw
    spans = memory_spans.get_finished_spans()
    assert len(spans) == 3
    for span in spans:
        assert secret not in span.to_json()
        assert secret not in (span.status.description or "")


# ---------------------------------------------------------------------------
# nesting
# ---------------------------------------------------------------------------


def tree(entries: list[dict[str, Any]]) -> dict[str, str | None]:
    """skill -> parent skill, checking skills are unique and all share one trace."""
    by_id = {entry["span_id"]: entry["skill"] for entry in entries}
    assert len(by_id) == len(entries)
    assert len({entry["trace_id"] for entry in entries}) == 1
    result: dict[str, str | None] = {}
    for entry in entries:
        parent = entry["parent_span_id"]
        assert entry["skill"] not in result
        result[entry["skill"]] = None if parent is None else by_id[parent]
    return result


def test_nesting_decorator_in_context_in_decorator_sync(telemetry_file: Path) -> None:
    @capture_telemetry(skill_name="inner")
    def inner() -> str:
        return "x"

    @capture_telemetry(skill_name="outer")
    def outer() -> str:
        with TelemetryContext("middle"):
            return inner()

    assert outer() == "x"
    entries = read_entries(telemetry_file)
    assert [entry["skill"] for entry in entries] == ["inner", "middle", "outer"]
    assert tree(entries) == {"outer": None, "middle": "outer", "inner": "middle"}


def test_nesting_async_children_gathered_under_a_context(telemetry_file: Path) -> None:
    @capture_telemetry(skill_name="leaf")
    def leaf(n: int) -> int:
        return n

    @capture_telemetry
    async def child(n: int) -> int:
        await asyncio.sleep(0.005 * (3 - n))
        with TelemetryContext(f"child{n}.ctx"):
            return leaf(n)

    @capture_telemetry(skill_name="root")
    async def root() -> list[int]:
        async with TelemetryContext("middle"):
            return list(await asyncio.gather(child(0), child(1), child(2)))

    assert asyncio.run(root()) == [0, 1, 2]
    entries = read_entries(telemetry_file)
    assert len(entries) == 1 + 1 + 3 * 3
    by_id = {entry["span_id"]: entry for entry in entries}
    assert len({entry["trace_id"] for entry in entries}) == 1
    (root_entry,) = [e for e in entries if e["skill"] == "root"]
    (middle,) = [e for e in entries if e["skill"] == "middle"]
    assert root_entry["parent_span_id"] is None
    assert middle["parent_span_id"] == root_entry["span_id"]
    children = [e for e in entries if e["skill"] == child.__qualname__]
    assert len(children) == 3
    for entry in children:
        assert entry["parent_span_id"] == middle["span_id"]
    for n in range(3):
        (ctx_entry,) = [e for e in entries if e["skill"] == f"child{n}.ctx"]
        assert by_id[ctx_entry["parent_span_id"]]["skill"] == child.__qualname__
    leaves = [e for e in entries if e["skill"] == "leaf"]
    assert len(leaves) == 3
    for entry in leaves:
        assert by_id[entry["parent_span_id"]]["skill"].endswith(".ctx")
    # each leaf hangs under its own child's context
    assert len({entry["parent_span_id"] for entry in leaves}) == 3


def test_nesting_across_a_thread_that_propagates_context(telemetry_file: Path) -> None:
    @capture_telemetry(skill_name="worker")
    def worker(n: int) -> int:
        with TelemetryContext("worker.step"):
            return n * 2

    @capture_telemetry(skill_name="dispatcher")
    def dispatcher() -> list[int]:
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(contextvars.copy_context().run, worker, n) for n in range(2)]
            return [future.result() for future in futures]

    assert dispatcher() == [0, 2]
    entries = read_entries(telemetry_file)
    assert len(entries) == 5
    assert len({entry["trace_id"] for entry in entries}) == 1
    by_id = {entry["span_id"]: entry for entry in entries}
    (top,) = [e for e in entries if e["skill"] == "dispatcher"]
    assert top["parent_span_id"] is None
    workers = [e for e in entries if e["skill"] == "worker"]
    assert [w["parent_span_id"] for w in workers] == [top["span_id"]] * 2
    for step in (e for e in entries if e["skill"] == "worker.step"):
        assert by_id[step["parent_span_id"]]["skill"] == "worker"


def test_a_thread_without_context_propagation_starts_its_own_trace(telemetry_file: Path) -> None:
    @capture_telemetry(skill_name="detached")
    def detached() -> None:
        pass

    @capture_telemetry(skill_name="spawner")
    def spawner() -> None:
        thread = threading.Thread(target=detached)
        thread.start()
        thread.join()

    spawner()
    by_skill = {entry["skill"]: entry for entry in read_entries(telemetry_file)}
    assert by_skill["detached"]["parent_span_id"] is None
    assert by_skill["detached"]["trace_id"] != by_skill["spawner"]["trace_id"]


def test_sibling_top_level_calls_are_separate_traces(telemetry_file: Path) -> None:
    with TelemetryContext("a"):
        pass
    with TelemetryContext("b"):
        pass
    first, second = read_entries(telemetry_file)
    assert first["parent_span_id"] is None
    assert second["parent_span_id"] is None
    assert first["trace_id"] != second["trace_id"]
