"""@capture_telemetry: the entry, values and exceptions passing through, status rules.

Every test records through the real pipeline into a real file (the ``telemetry_file``
fixture) and reads it back with ``read_entries``; span-level checks add an
InMemorySpanExporter to an SDK TracerProvider passed to ``configure``. Coroutines and
generators, methods and introspection, and inputs: test_instrument_*.py.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from betty_otel import capture_telemetry
from helpers import ENTRY_KEYS, no_entries, only_entry, read_entries
from instrument_helpers import KINDS, RESULT_KINDS, make, raise_, run

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")

# ---------------------------------------------------------------------------
# the entry
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_bare_decorator_defaults_skill_qualname_caller_runtime_no_inputs(
    kind: str, telemetry_file: Path
) -> None:
    def sync_fn(a: int) -> int:
        return a

    async def async_fn(a: int) -> int:
        return a

    def gen_fn(a: int) -> Iterator[int]:
        yield a

    async def agen_fn(a: int) -> AsyncIterator[int]:
        yield a

    original: Callable[[int], Any] = {
        "sync": sync_fn,
        "async": async_fn,
        "generator": gen_fn,
        "asyncgen": agen_fn,
    }[kind]
    decorated = capture_telemetry(original)
    run(kind, functools.partial(decorated, 7))
    entry = only_entry(telemetry_file)
    assert entry["skill"] == original.__qualname__
    assert entry["skill"].endswith(f"<locals>.{original.__name__}")
    assert entry["caller"] == "runtime"
    assert entry["inputs"] == {}
    assert entry["status"] == "success"
    assert entry["error_message"] is None
    assert entry["metadata"] == {}
    assert entry["parent_span_id"] is None


def test_called_decorator_sets_skill_caller_and_captures_inputs(telemetry_file: Path) -> None:
    @capture_telemetry(skill_name="skill.create", caller="workflow.compose", capture_inputs=True)
    def create(name: str, size: int = 3) -> str:
        return name * size

    assert create("ab") == "ababab"
    entry = only_entry(telemetry_file)
    assert entry["skill"] == "skill.create"
    assert entry["caller"] == "workflow.compose"
    assert entry["inputs"] == {"name": "ab", "size": 3}


def test_called_decorator_without_arguments_uses_defaults(telemetry_file: Path) -> None:
    @capture_telemetry()
    def plain(x: int) -> int:
        return x

    assert plain(4) == 4
    entry = only_entry(telemetry_file)
    assert entry["skill"] == plain.__qualname__
    assert entry["caller"] == "runtime"
    assert entry["inputs"] == {}


@pytest.mark.parametrize("options", [{"skill_name": ""}, {"caller": ""}])
def test_empty_skill_name_or_caller_is_a_value_error(
    options: dict[str, Any], telemetry_file: Path
) -> None:
    def fn() -> None:
        pass

    with pytest.raises(ValueError, match="non-empty"):
        capture_telemetry(**options)(fn)
    assert no_entries(telemetry_file)


@pytest.mark.parametrize("kind", KINDS)
def test_entry_keys_are_in_design_order_with_hex_ids_and_utc_microsecond_timestamp(
    kind: str, telemetry_file: Path
) -> None:
    before = datetime.now(timezone.utc)
    run(kind, make(kind, lambda: 1))
    after = datetime.now(timezone.utc)
    entry = only_entry(telemetry_file)
    assert tuple(entry) == ENTRY_KEYS
    assert TIMESTAMP.match(entry["timestamp"]), entry["timestamp"]
    moment = datetime.fromisoformat(entry["timestamp"])
    # the timestamp is the end of the execution, i.e. now (µs truncation allowed)
    assert before - timedelta(microseconds=1) <= moment <= after
    assert HEX32.match(entry["trace_id"])
    assert HEX16.match(entry["span_id"])
    assert isinstance(entry["duration_ms"], float)
    assert entry["duration_ms"] >= 0


def test_each_call_is_one_entry_with_its_own_trace(telemetry_file: Path) -> None:
    fn = make("sync", lambda: None)
    for _ in range(3):
        fn()
    entries = read_entries(telemetry_file)
    assert len(entries) == 3
    assert len({entry["trace_id"] for entry in entries}) == 3
    assert len({entry["span_id"] for entry in entries}) == 3


# ---------------------------------------------------------------------------
# values and exceptions pass through unchanged
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_return_value_and_yielded_items_are_the_same_objects(
    kind: str, telemetry_file: Path
) -> None:
    value = {"payload": [1, 2, 3]}
    result = run(kind, make(kind, lambda: value))
    if kind in RESULT_KINDS:
        assert result is value
    else:
        assert result[1] is value
    assert only_entry(telemetry_file)["status"] == "success"


@pytest.mark.parametrize("kind", KINDS)
def test_exception_is_the_same_object_and_keeps_the_raising_frame(
    kind: str, telemetry_file: Path
) -> None:
    exc = ValueError("bad input")
    with pytest.raises(ValueError, match="bad input") as info:
        run(kind, make(kind, lambda: raise_(exc)))
    assert info.value is exc
    frames = [frame.f_code.co_name for frame, _ in traceback.walk_tb(exc.__traceback__)]
    assert "raise_" in frames
    entry = only_entry(telemetry_file)
    assert entry["status"] == "failure"
    assert entry["error_message"] == "ValueError: bad input"


# ---------------------------------------------------------------------------
# status rules
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", RESULT_KINDS)
@pytest.mark.parametrize("status", ["success", "failure", "timeout", "error", "pending"])
def test_dict_result_with_one_of_the_five_statuses_is_used_as_given(
    kind: str, status: str, telemetry_file: Path
) -> None:
    result = {"status": status, "data": 1}
    assert run(kind, make(kind, lambda: result)) is result
    entry = only_entry(telemetry_file)
    assert entry["status"] == status
    assert entry["error_message"] is None


@pytest.mark.parametrize("kind", RESULT_KINDS)
def test_dict_result_failure_with_error_text_becomes_the_error_message(
    kind: str, telemetry_file: Path
) -> None:
    run(kind, make(kind, lambda: {"status": "failure", "error": "x"}))
    entry = only_entry(telemetry_file)
    assert entry["status"] == "failure"
    assert entry["error_message"] == "x"


@pytest.mark.parametrize("kind", RESULT_KINDS)
@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("failed", "failure"),
        ("FAILURE", "failure"),
        ("Fail", "failure"),
        ("errored", "error"),
        ("timed_out", "timeout"),
        ("Timed Out", "timeout"),
        ("succeeded", "success"),
        ("OK", "success"),
        ("running", "pending"),
    ],
)
def test_dict_result_with_a_legacy_status_word_records_its_canonical_status(
    kind: str, word: str, status: str, telemetry_file: Path
) -> None:
    """Betty's utilities return {"status": "failed"}: the file holds the canonical status
    (writers use only the five), with the result's error text; the result is unchanged."""
    result = {"status": word, "error": "step 3 failed"}
    assert run(kind, make(kind, lambda: result)) is result
    entry = only_entry(telemetry_file)
    assert entry["status"] == status
    assert entry["error_message"] == (None if status == "success" else "step 3 failed")


@pytest.mark.parametrize("kind", RESULT_KINDS)
@pytest.mark.parametrize(
    "result",
    [{"status": "weird"}, {"status": 3}, {"status": None}, {"ok": False}, "failed", None],
)
def test_other_results_are_success(kind: str, result: object, telemetry_file: Path) -> None:
    assert run(kind, make(kind, lambda: result)) == result
    entry = only_entry(telemetry_file)
    assert entry["status"] == "success"
    assert entry["error_message"] is None


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("exc", "status", "message"),
    [
        (ValueError("msg"), "failure", "ValueError: msg"),
        (RuntimeError(), "failure", "RuntimeError"),
        (TimeoutError("too slow"), "timeout", "TimeoutError: too slow"),
        (asyncio.TimeoutError("too slow"), "timeout", "TimeoutError: too slow"),
        (KeyboardInterrupt(), "error", "KeyboardInterrupt"),
        (SystemExit(0), "success", None),
        (SystemExit(None), "success", None),
        (SystemExit(3), "failure", "Exited with code 3"),
    ],
    ids=[
        "ValueError",
        "RuntimeError-empty",
        "TimeoutError",
        "asyncio.TimeoutError",
        "KeyboardInterrupt",
        "SystemExit0",
        "SystemExitNone",
        "SystemExit3",
    ],
)
def test_exception_status_rules_and_reraise(
    kind: str, exc: BaseException, status: str, message: str | None, telemetry_file: Path
) -> None:
    with pytest.raises(type(exc)) as info:
        run(kind, make(kind, lambda: raise_(exc)))
    assert info.value is exc
    entry = only_entry(telemetry_file)
    assert entry["status"] == status
    assert entry["error_message"] == message


def test_real_asyncio_timeout_inside_a_coroutine_is_timeout(telemetry_file: Path) -> None:
    @capture_telemetry(skill_name="slow")
    async def slow() -> None:
        await asyncio.wait_for(asyncio.sleep(1), timeout=0.01)

    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(slow())
    assert only_entry(telemetry_file)["status"] == "timeout"


@pytest.mark.parametrize("kind", ["async", "asyncgen"])
def test_cancelled_coroutine_or_async_generator_is_error_and_cancellation_propagates(
    kind: str, telemetry_file: Path
) -> None:
    started = asyncio.Event()

    @capture_telemetry(skill_name="waits")
    async def waits() -> None:
        started.set()
        await asyncio.sleep(10)

    @capture_telemetry(skill_name="waits")
    async def waits_gen() -> AsyncIterator[int]:
        started.set()
        await asyncio.sleep(10)
        yield 1

    async def consume() -> None:
        if kind == "async":
            await waits()
        else:
            async for _ in waits_gen():
                pass

    async def main() -> None:
        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    entry = only_entry(telemetry_file)
    assert entry["status"] == "error"
    assert entry["error_message"] == "CancelledError"


def test_failed_execution_sets_span_status_error_and_an_exception_event(
    memory_spans: InMemorySpanExporter,
) -> None:
    with pytest.raises(ValueError, match="boom"):
        make("sync", lambda: raise_(ValueError("boom")))()
    (span,) = memory_spans.get_finished_spans()
    assert span.name == "work"
    assert span.status.status_code is trace.StatusCode.ERROR
    assert span.status.description == "ValueError: boom"
    assert span.attributes is not None
    assert span.attributes["betty.status"] == "failure"
    assert span.attributes["betty.error_message"] == "ValueError: boom"
    (event,) = [event for event in span.events if event.name == "exception"]
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.message"] == "boom"


def test_span_name_and_betty_attributes_match_the_entry(
    memory_spans: InMemorySpanExporter, telemetry_file: Path
) -> None:
    @capture_telemetry(skill_name="attrs", caller="API", capture_inputs=True)
    def attrs(items: list[int], note: str = "n") -> None:
        pass

    attrs([1, 2])
    (span,) = memory_spans.get_finished_spans()
    entry = only_entry(telemetry_file)
    assert span.name == "attrs"
    attributes = dict(span.attributes or {})
    assert attributes["betty.skill"] == "attrs"
    assert attributes["betty.caller"] == "API"
    assert attributes["betty.status"] == "success"
    assert json.loads(str(attributes["betty.inputs"])) == {"items": [1, 2], "note": "n"}
    assert "betty.error_message" not in attributes
    assert str(attributes["code.function.name"]).endswith("attrs")
    assert span.status.status_code is trace.StatusCode.UNSET
    assert entry["span_id"] == format(span.context.span_id, "016x")
    assert entry["trace_id"] == format(span.context.trace_id, "032x")


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("success", trace.StatusCode.UNSET),
        ("pending", trace.StatusCode.UNSET),
        ("failure", trace.StatusCode.ERROR),
        ("timeout", trace.StatusCode.ERROR),
        ("error", trace.StatusCode.ERROR),
    ],
)
def test_failure_timeout_error_set_the_span_status_to_error_with_the_message(
    status: str, code: trace.StatusCode, memory_spans: InMemorySpanExporter
) -> None:
    make("sync", lambda: {"status": status, "error": "why"})()
    (span,) = memory_spans.get_finished_spans()
    assert span.status.status_code is code
    if code is trace.StatusCode.ERROR:
        assert span.status.description == "why"
