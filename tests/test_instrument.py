"""@capture_telemetry: entries, status rules, function kinds, decorator stacking, inputs, redaction.

Every test records through the real pipeline into a real file (the ``telemetry_file``
fixture) and reads it back with ``read_entries``; span-level checks add an
InMemorySpanExporter to an SDK TracerProvider passed to ``configure``.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import inspect
import json
import pickle
import re
import time
import traceback
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import betty_otel
from betty_otel import TelemetryContext, capture_telemetry
from helpers import ENTRY_KEYS, no_entries, only_entry, read_entries

P = ParamSpec("P")
R = TypeVar("R")

REDACTED = "***REDACTED***"
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")

KINDS = ("sync", "async", "generator", "asyncgen")
RESULT_KINDS = ("sync", "async")  # kinds whose return value is the call's result


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def make(kind: str, body: Callable[[], Any], **options: Any) -> Callable[[], Any]:
    """A decorated function of one kind whose outcome is body()'s (value or exception).

    Generators yield "first", then body()'s value; the async kinds await once first.
    """
    options.setdefault("skill_name", "work")
    decorator = capture_telemetry(**options)
    if kind == "sync":

        @decorator
        def sync_fn() -> Any:
            return body()

        return sync_fn
    if kind == "async":

        @decorator
        async def async_fn() -> Any:
            await asyncio.sleep(0)
            return body()

        return async_fn
    if kind == "generator":

        @decorator
        def gen_fn() -> Iterator[Any]:
            yield "first"
            yield body()

        return gen_fn

    @decorator
    async def agen_fn() -> AsyncIterator[Any]:
        await asyncio.sleep(0)
        yield "first"
        yield body()

    return agen_fn


def run(kind: str, fn: Callable[[], Any]) -> Any:
    """Call fn the way its kind is used: call, await, iterate to the end."""
    if kind == "sync":
        return fn()
    if kind == "async":
        return asyncio.run(fn())
    if kind == "generator":
        return list(fn())

    async def collect() -> list[Any]:
        return [item async for item in fn()]

    return asyncio.run(collect())


def _raise(exc: BaseException) -> Any:
    raise exc


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
        run(kind, make(kind, lambda: _raise(exc)))
    assert info.value is exc
    frames = [frame.f_code.co_name for frame, _ in traceback.walk_tb(exc.__traceback__)]
    assert "_raise" in frames
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
        run(kind, make(kind, lambda: _raise(exc)))
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
        make("sync", lambda: _raise(ValueError("boom")))()
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


# ---------------------------------------------------------------------------
# coroutines and generators: what the span covers
# ---------------------------------------------------------------------------


def test_sync_duration_covers_the_call(telemetry_file: Path) -> None:
    run("sync", make("sync", lambda: time.sleep(0.025)))
    assert only_entry(telemetry_file)["duration_ms"] >= 20


def test_coroutine_span_covers_the_awaited_body(telemetry_file: Path) -> None:
    @capture_telemetry(skill_name="sleeper")
    async def sleeper() -> str:
        await asyncio.sleep(0.025)
        return "done"

    assert asyncio.run(sleeper()) == "done"
    assert only_entry(telemetry_file)["duration_ms"] >= 20


def test_generator_span_covers_iteration_until_exhausted(telemetry_file: Path) -> None:
    @capture_telemetry(skill_name="items")
    def items() -> Iterator[int]:
        yield 1
        yield 2

    iterator = items()
    assert next(iterator) == 1
    time.sleep(0.025)
    assert no_entries(telemetry_file)  # not finished yet
    assert list(iterator) == [2]
    entry = only_entry(telemetry_file)
    assert entry["status"] == "success"
    assert entry["duration_ms"] >= 20


def test_async_generator_span_covers_iteration_until_exhausted(telemetry_file: Path) -> None:
    @capture_telemetry(skill_name="items")
    async def items() -> AsyncIterator[int]:
        yield 1
        yield 2

    async def main() -> None:
        iterator = items()
        assert await iterator.__anext__() == 1
        await asyncio.sleep(0.025)
        assert no_entries(telemetry_file)
        assert [item async for item in iterator] == [2]

    asyncio.run(main())
    entry = only_entry(telemetry_file)
    assert entry["status"] == "success"
    assert entry["duration_ms"] >= 20


def test_generator_closed_early_is_recorded_once_and_its_finally_runs(
    telemetry_file: Path,
) -> None:
    closed: list[bool] = []

    @capture_telemetry(skill_name="endless")
    def endless() -> Generator[int, None, None]:
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.append(True)

    iterator = endless()
    assert [next(iterator), next(iterator)] == [0, 1]
    iterator.close()
    assert closed == [True]
    entry = only_entry(telemetry_file)
    assert entry["status"] == "success"
    assert entry["error_message"] is None


def test_async_generator_closed_early_is_recorded_once_and_its_finally_runs(
    telemetry_file: Path,
) -> None:
    closed: list[bool] = []

    @capture_telemetry(skill_name="endless")
    async def endless() -> AsyncGenerator[int, None]:
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.append(True)

    async def main() -> None:
        iterator = endless()
        assert await iterator.__anext__() == 0
        await iterator.aclose()

    asyncio.run(main())
    assert closed == [True]
    assert only_entry(telemetry_file)["status"] == "success"


def test_generator_never_started_records_nothing_and_leaves_no_open_span(
    telemetry_file: Path,
) -> None:
    """The span covers the iteration: a generator closed (or dropped) unstarted ran no code.

    The span starts at the first next(), so an unstarted generator has no span to leak.
    """

    @capture_telemetry(skill_name="never_started")
    def never_started() -> Generator[int, None, None]:
        yield 1

    never_started().close()
    del_me = never_started()
    del del_me
    assert not telemetry_file.exists()

    @capture_telemetry(skill_name="started")
    def started() -> Generator[int, None, None]:
        yield 1
        yield 2

    iterator = started()
    assert next(iterator) == 1
    iterator.close()
    entry = only_entry(telemetry_file)
    assert (entry["skill"], entry["status"]) == ("started", "success")


def test_async_generator_never_started_records_nothing(telemetry_file: Path) -> None:
    """Same for async generators: aclose() before the first item records nothing."""

    @capture_telemetry(skill_name="never_started")
    async def never_started() -> AsyncGenerator[int, None]:
        yield 1

    async def main() -> None:
        await never_started().aclose()

    asyncio.run(main())
    assert not telemetry_file.exists()


def test_generator_send_values_and_return_value_pass_through(telemetry_file: Path) -> None:
    @capture_telemetry(skill_name="doubler")
    def doubler() -> Generator[int, int | None, str]:
        received = yield 0
        while received is not None:
            received = yield received * 2
        return "finished"

    iterator = doubler()
    assert next(iterator) == 0
    assert iterator.send(21) == 42
    assert iterator.send(5) == 10
    with pytest.raises(StopIteration) as stop:
        iterator.send(None)
    assert stop.value.value == "finished"
    assert only_entry(telemetry_file)["status"] == "success"


def test_yield_from_a_decorated_generator_gets_its_return_value(telemetry_file: Path) -> None:
    @capture_telemetry(skill_name="inner")
    def inner() -> Generator[int, None, str]:
        yield 1
        return "inner-result"

    def outer() -> Iterator[Any]:
        result = yield from inner()
        yield result

    assert list(outer()) == [1, "inner-result"]
    assert only_entry(telemetry_file)["skill"] == "inner"


def test_async_generator_asend_values_pass_through(telemetry_file: Path) -> None:
    @capture_telemetry(skill_name="doubler")
    async def doubler() -> AsyncGenerator[int, int | None]:
        received = yield 0
        while received is not None:
            received = yield received * 2

    async def main() -> None:
        iterator = doubler()
        assert await iterator.asend(None) == 0
        assert await iterator.asend(21) == 42
        with pytest.raises(StopAsyncIteration):
            await iterator.asend(None)

    asyncio.run(main())
    assert only_entry(telemetry_file)["status"] == "success"


def test_exception_thrown_into_a_generator_and_handled_there_continues(
    telemetry_file: Path,
) -> None:
    @capture_telemetry(skill_name="resilient")
    def resilient() -> Generator[str, None, None]:
        try:
            yield "a"
        except KeyError:
            yield "handled"
        yield "b"

    iterator = resilient()
    assert next(iterator) == "a"
    assert iterator.throw(KeyError("k")) == "handled"
    assert list(iterator) == ["b"]
    assert only_entry(telemetry_file)["status"] == "success"


def test_exception_thrown_into_a_generator_and_not_handled_is_recorded_and_reraised(
    telemetry_file: Path,
) -> None:
    @capture_telemetry(skill_name="fragile")
    def fragile() -> Generator[str, None, None]:
        yield "a"
        yield "b"

    iterator = fragile()
    next(iterator)
    exc = KeyError("k")
    with pytest.raises(KeyError) as info:
        iterator.throw(exc)
    assert info.value is exc
    entry = only_entry(telemetry_file)
    assert entry["status"] == "failure"
    assert entry["error_message"] == "KeyError: 'k'"


def test_generator_span_is_current_in_its_body_but_not_in_the_consumer(
    telemetry_file: Path,
) -> None:
    in_body: list[trace.Span] = []
    in_consumer: list[trace.Span] = []

    @capture_telemetry(skill_name="producer")
    def producer() -> Iterator[int]:
        for n in range(3):
            in_body.append(trace.get_current_span())
            yield n

    with TelemetryContext("consumer") as consumer:
        for _ in producer():
            in_consumer.append(trace.get_current_span())
            assert trace.get_current_span() is consumer.span
        consumer_id = format(consumer.span.get_span_context().span_id, "016x")
    assert len(in_consumer) == 3
    by_skill = {entry["skill"]: entry for entry in read_entries(telemetry_file)}
    produced = by_skill["producer"]
    assert produced["parent_span_id"] == consumer_id
    assert {format(span.get_span_context().span_id, "016x") for span in in_body} == {
        produced["span_id"]
    }
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_async_generator_span_is_current_in_its_body_but_not_in_the_consumer(
    telemetry_file: Path,
) -> None:
    in_body: list[trace.Span] = []

    @capture_telemetry(skill_name="producer")
    async def producer() -> AsyncIterator[int]:
        for n in range(3):
            in_body.append(trace.get_current_span())
            await asyncio.sleep(0)
            yield n

    async def main() -> str:
        async with TelemetryContext("consumer") as consumer:
            async for _ in producer():
                assert trace.get_current_span() is consumer.span
            return format(consumer.span.get_span_context().span_id, "016x")

    consumer_id = asyncio.run(main())
    by_skill = {entry["skill"]: entry for entry in read_entries(telemetry_file)}
    assert by_skill["producer"]["parent_span_id"] == consumer_id
    assert {format(span.get_span_context().span_id, "016x") for span in in_body} == {
        by_skill["producer"]["span_id"]
    }


# ---------------------------------------------------------------------------
# methods, classmethods, staticmethods, other decorators
# ---------------------------------------------------------------------------


class Service:
    @capture_telemetry(capture_inputs=True)
    def method(self, x: int) -> object:
        return self if x else None

    @capture_telemetry(capture_inputs=True)
    async def amethod(self, x: int) -> object:
        return self if x else None

    @capture_telemetry(capture_inputs=True)
    def gmethod(self, x: int) -> Iterator[object]:
        yield self if x else None

    @capture_telemetry(capture_inputs=True)
    async def agmethod(self, x: int) -> AsyncIterator[object]:
        yield self if x else None

    @capture_telemetry(capture_inputs=True)
    @classmethod
    def cm_above(cls, x: int) -> object:
        return cls if x else None

    @classmethod
    @capture_telemetry(capture_inputs=True)
    def cm_below(cls, x: int) -> object:
        return cls if x else None

    @capture_telemetry(capture_inputs=True)
    @staticmethod
    def sm_above(x: int) -> object:
        return x

    @staticmethod
    @capture_telemetry(capture_inputs=True)
    def sm_below(x: int) -> object:
        return x


SERVICE = Service()


async def _first(iterator: AsyncIterator[object]) -> object:
    async for item in iterator:
        return item
    return None


METHOD_CALLS: dict[str, tuple[str, Callable[[], object], object]] = {
    "method-via-instance": ("Service.method", lambda: SERVICE.method(1), SERVICE),
    "method-via-class": ("Service.method", lambda: Service.method(SERVICE, 1), SERVICE),
    "method-keyword": ("Service.method", lambda: SERVICE.method(x=1), SERVICE),
    "async-method": ("Service.amethod", lambda: asyncio.run(SERVICE.amethod(1)), SERVICE),
    "generator-method": ("Service.gmethod", lambda: next(SERVICE.gmethod(1)), SERVICE),
    "asyncgen-method": (
        "Service.agmethod",
        lambda: asyncio.run(_first(SERVICE.agmethod(1))),
        SERVICE,
    ),
    "classmethod-above-via-class": ("Service.cm_above", lambda: Service.cm_above(1), Service),
    "classmethod-above-via-instance": ("Service.cm_above", lambda: SERVICE.cm_above(1), Service),
    "classmethod-below-via-class": ("Service.cm_below", lambda: Service.cm_below(1), Service),
    "classmethod-below-via-instance": ("Service.cm_below", lambda: SERVICE.cm_below(1), Service),
    "staticmethod-above-via-class": ("Service.sm_above", lambda: Service.sm_above(1), 1),
    "staticmethod-above-via-instance": ("Service.sm_above", lambda: SERVICE.sm_above(1), 1),
    "staticmethod-below-via-class": ("Service.sm_below", lambda: Service.sm_below(1), 1),
    "staticmethod-below-via-instance": ("Service.sm_below", lambda: SERVICE.sm_below(1), 1),
}


@pytest.mark.parametrize("case", list(METHOD_CALLS))
def test_methods_bind_self_and_cls_correctly_and_never_capture_them(
    case: str, telemetry_file: Path
) -> None:
    skill, call, expected = METHOD_CALLS[case]
    result = call()
    assert result is expected
    entry = only_entry(telemetry_file)
    assert entry["skill"] == skill
    assert entry["inputs"] == {"x": 1}


def _logged(calls: list[str]) -> Callable[[Callable[P, R]], Callable[P, R]]:
    def decorator(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def inner(*args: P.args, **kwargs: P.kwargs) -> R:
            calls.append(fn.__name__)
            return fn(*args, **kwargs)

        return inner

    return decorator


def test_wraps_based_decorator_below(telemetry_file: Path) -> None:
    calls: list[str] = []

    @capture_telemetry(capture_inputs=True)
    @_logged(calls)
    def below(x: int, y: int = 2) -> int:
        return x + y

    assert below(1) == 3
    assert calls == ["below"]
    entry = only_entry(telemetry_file)
    assert entry["skill"] == below.__qualname__
    assert entry["inputs"] == {"x": 1, "y": 2}


def test_wraps_based_decorator_above(telemetry_file: Path) -> None:
    calls: list[str] = []

    @_logged(calls)
    @capture_telemetry(capture_inputs=True)
    def above(x: int, y: int = 2) -> int:
        return x + y

    assert above(1, y=5) == 6
    assert calls == ["above"]
    entry = only_entry(telemetry_file)
    assert entry["skill"] == above.__qualname__
    assert entry["inputs"] == {"x": 1, "y": 5}
    assert list(inspect.signature(above).parameters) == ["x", "y"]


def test_lru_cache_below_records_every_call_and_keeps_cache_api(telemetry_file: Path) -> None:
    computed: list[int] = []

    @capture_telemetry(capture_inputs=True)
    @functools.lru_cache(maxsize=8)
    def square(x: int) -> int:
        computed.append(x)
        return x * x

    assert [square(3), square(3), square(4)] == [9, 9, 16]
    assert computed == [3, 4]
    entries = read_entries(telemetry_file)
    assert [entry["inputs"] for entry in entries] == [{"x": 3}, {"x": 3}, {"x": 4}]
    assert {entry["skill"] for entry in entries} == {square.__qualname__}
    assert square.cache_info().hits == 1  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------
# introspection
# ---------------------------------------------------------------------------


def _sync_original(a: int, b: str = "x") -> str:
    """Sync doc."""
    return b * a


async def _async_original(a: int, b: str = "x") -> str:
    """Async doc."""
    return b * a


def _gen_original(a: int, b: str = "x") -> Iterator[str]:
    """Generator doc."""
    yield b * a


async def _agen_original(a: int, b: str = "x") -> AsyncIterator[str]:
    """Async generator doc."""
    yield b * a


ORIGINALS: dict[str, Callable[..., Any]] = {
    "sync": _sync_original,
    "async": _async_original,
    "generator": _gen_original,
    "asyncgen": _agen_original,
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bare", [True, False], ids=["bare", "called"])
def test_decorated_function_keeps_name_doc_qualname_wrapped_signature_and_kind(
    kind: str, bare: bool
) -> None:
    original = ORIGINALS[kind]
    decorated = (
        capture_telemetry(original)
        if bare
        else capture_telemetry(skill_name="s", capture_inputs=True)(original)
    )
    assert decorated.__name__ == original.__name__
    assert decorated.__qualname__ == original.__qualname__
    assert decorated.__doc__ == original.__doc__
    assert decorated.__module__ == original.__module__
    assert getattr(decorated, "__wrapped__", None) is original
    assert inspect.signature(decorated) == inspect.signature(original)
    for predicate in (
        inspect.iscoroutinefunction,
        inspect.isgeneratorfunction,
        inspect.isasyncgenfunction,
    ):
        assert predicate(decorated) == predicate(original), predicate.__name__


@capture_telemetry(skill_name="module.level", capture_inputs=True)
def module_level_skill(x: int) -> int:
    return x + 1


def test_decorated_module_level_function_pickles_and_copies_by_reference(
    telemetry_file: Path,
) -> None:
    """Like the plain function, so it can be sent to a ProcessPoolExecutor / Pool."""
    assert pickle.loads(pickle.dumps(module_level_skill)) is module_level_skill
    assert copy.copy(module_level_skill) is module_level_skill
    assert copy.deepcopy({"skill": module_level_skill})["skill"] is module_level_skill
    assert module_level_skill(1) == 2
    assert only_entry(telemetry_file)["inputs"] == {"x": 1}


def test_decorating_a_bound_method_leaves_self_out(telemetry_file: Path) -> None:
    class Client:
        def fetch(self, url: str, retries: int = 1) -> str:
            return url * retries

    traced = capture_telemetry(capture_inputs=True)(Client().fetch)
    assert traced("u") == "u"
    assert only_entry(telemetry_file)["inputs"] == {"url": "u", "retries": 1}


def test_decorated_method_signature_drops_self_when_bound() -> None:
    assert list(inspect.signature(SERVICE.method).parameters) == ["x"]
    assert list(inspect.signature(Service.cm_below).parameters) == ["x"]
    assert list(inspect.signature(Service.sm_below).parameters) == ["x"]


# ---------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------


def test_inputs_bind_parameter_names_with_defaults_varargs_and_kwargs(
    telemetry_file: Path,
) -> None:
    @capture_telemetry(capture_inputs=True)
    def full(a: int, b: int = 2, *rest: int, c: int, d: int = 4, **extra: int) -> None:
        pass

    full(1, 2, 5, 6, c=3, e=7)
    full(1, c=3)
    first, second = read_entries(telemetry_file)
    assert first["inputs"] == {"a": 1, "b": 2, "rest": [5, 6], "c": 3, "d": 4, "extra": {"e": 7}}
    assert second["inputs"] == {"a": 1, "b": 2, "rest": [], "c": 3, "d": 4, "extra": {}}


@pytest.mark.parametrize("kind", KINDS)
def test_inputs_are_captured_for_every_function_kind(kind: str, telemetry_file: Path) -> None:
    original = ORIGINALS[kind]
    decorated = capture_telemetry(capture_inputs=True)(original)
    run(kind, functools.partial(decorated, 2))
    assert only_entry(telemetry_file)["inputs"] == {"a": 2, "b": "x"}


def test_inputs_are_those_at_call_time(telemetry_file: Path) -> None:
    @capture_telemetry(capture_inputs=True)
    def mutate(items: list[int]) -> None:
        items.append(99)

    mutate([1])
    assert only_entry(telemetry_file)["inputs"] == {"items": [1]}


def test_secret_keys_are_redacted_at_any_depth_in_any_case_or_separator_style(
    telemetry_file: Path,
) -> None:
    @capture_telemetry(capture_inputs=True)
    def call_api(apiKey: str, payload: dict[str, Any], **options: Any) -> None:  # noqa: N803
        pass

    payload = {
        "nested": [{"api-key": "value-2222", "author": "Ann", "authors": ["Bo"]}],
        "API_KEY": "value-3333",
        "deeper": {"list": [{"inner": {"Password": "value-4444"}}]},
        "max_tokens": 256,
    }
    call_api("value-1111", payload, API_KEY="value-5555", max_tokens=5)
    call_api(apiKey="value-6666", payload={})
    first, second = read_entries(telemetry_file)
    assert first["inputs"] == {
        "apiKey": REDACTED,
        "payload": {
            "nested": [{"api-key": REDACTED, "author": "Ann", "authors": ["Bo"]}],
            "API_KEY": REDACTED,
            "deeper": {"list": [{"inner": {"Password": REDACTED}}]},
            "max_tokens": 256,
        },
        "options": {"API_KEY": REDACTED, "max_tokens": 5},
    }
    assert second["inputs"] == {"apiKey": REDACTED, "payload": {}, "options": {}}
    raw = telemetry_file.read_bytes()
    for n in (1, 2, 3, 4, 5, 6):
        assert f"value-{n}{n}{n}{n}".encode() not in raw


def test_sanitize_keys_adds_a_key_in_any_style_on_top_of_the_defaults(
    telemetry_file: Path,
) -> None:
    @capture_telemetry(capture_inputs=True, sanitize_keys=["customer_id"])
    def charge(customer_id: str, order: dict[str, Any], password: str) -> None:
        pass

    @capture_telemetry(capture_inputs=True)
    def charge_default(customer_id: str) -> None:
        pass

    charge("C-111", {"customerId": "C-222", "Customer-ID": "C-333", "amount": 5}, "pw-444")
    charge_default("C-555")
    first, second = read_entries(telemetry_file)
    assert first["inputs"] == {
        "customer_id": REDACTED,
        "order": {"customerId": REDACTED, "Customer-ID": REDACTED, "amount": 5},
        "password": REDACTED,
    }
    assert second["inputs"] == {"customer_id": "C-555"}  # not secret unless asked


SECRET_VALUES = {
    "bearer": ("Authorization: Bearer abcDEF123456ghiJKL789", "abcDEF123456ghiJKL789"),
    "jwt": (
        "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U in use",
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ),
    "pem": (
        "key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAx7Qm9ZkS3cretKeyMaterial\n"
        "-----END RSA PRIVATE KEY-----\n",
        "MIIEpAIBAAKCAQEAx7Qm9ZkS3cretKeyMaterial",
    ),
    "url": ("connect to postgres://admin:s3cr3tPassw0rd@db.example.com/app", "s3cr3tPassw0rd"),
    "password-pair": ("login with password=CorrectHorse9Battery now", "CorrectHorse9Battery"),
}


def assert_secret_nowhere(secret: str, path: Path, memory: InMemorySpanExporter) -> None:
    raw = path.read_bytes()
    assert secret.encode() not in raw
    assert REDACTED.encode() in raw
    spans = memory.get_finished_spans()
    assert spans
    for span in spans:
        assert secret not in span.to_json()
        assert secret not in (span.status.description or "")
        for event in span.events:
            assert secret not in repr(dict(event.attributes or {}))


@pytest.mark.parametrize("kind", list(SECRET_VALUES))
def test_secret_values_in_inputs_and_exception_never_reach_file_or_span(
    kind: str, telemetry_file: Path, memory_spans: InMemorySpanExporter
) -> None:
    text, secret = SECRET_VALUES[kind]

    @capture_telemetry(capture_inputs=True)
    def leaky(note: str, items: list[dict[str, str]]) -> None:
        raise RuntimeError(f"request failed: {note}")

    with pytest.raises(RuntimeError) as info:
        leaky(text, [{"description": text}])
    assert secret in str(info.value)  # the user's exception itself is untouched
    entry = only_entry(telemetry_file)
    assert entry["status"] == "failure"
    assert entry["error_message"].startswith("RuntimeError: request failed:")
    assert_secret_nowhere(secret, telemetry_file, memory_spans)


@pytest.mark.parametrize("kind", list(SECRET_VALUES))
def test_secret_values_in_a_returned_error_never_reach_file_or_span(
    kind: str, telemetry_file: Path, memory_spans: InMemorySpanExporter
) -> None:
    text, secret = SECRET_VALUES[kind]
    result = {"status": "error", "error": text}
    assert make("sync", lambda: result)() is result
    entry = only_entry(telemetry_file)
    assert entry["status"] == "error"
    assert_secret_nowhere(secret, telemetry_file, memory_spans)


def test_ordinary_names_are_not_redacted(telemetry_file: Path) -> None:
    @capture_telemetry(capture_inputs=True)
    def generate(
        author: str, authors: list[str], max_tokens: int, tokenizer: str, keyboard: str
    ) -> None:
        pass

    generate("Ann", ["Bo", "Cy"], 512, "bpe", "qwerty")
    assert only_entry(telemetry_file)["inputs"] == {
        "author": "Ann",
        "authors": ["Bo", "Cy"],
        "max_tokens": 512,
        "tokenizer": "bpe",
        "keyboard": "qwerty",
    }


def test_unserialisable_inputs_do_not_break_the_call(telemetry_file: Path) -> None:
    class Weird:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    cycle: list[Any] = []
    cycle.append(cycle)

    @capture_telemetry(capture_inputs=True)
    def odd(a: object, b: object, c: float) -> str:
        return "ok"

    errors_before = betty_otel.internal_errors()
    assert odd(Weird(), cycle, float("nan")) == "ok"
    entry = only_entry(telemetry_file)
    assert set(entry["inputs"]) == {"a", "b", "c"}
    assert betty_otel.internal_errors() == errors_before
