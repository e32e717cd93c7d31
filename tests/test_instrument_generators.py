"""@capture_telemetry on coroutines and generators: what the span covers.

A coroutine's span covers the awaited body, a generator's its iteration until exhausted;
closed early it is recorded once and its finally runs, never started it records nothing;
sent values, return values and thrown exceptions pass through; the span is current in
the body, never in the consumer. Every test records into a real file.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace

from betty_otel import TelemetryContext, capture_telemetry
from helpers import no_entries, only_entry, read_entries
from instrument_helpers import make, run

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
