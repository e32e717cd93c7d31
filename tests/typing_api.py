"""Checked by mypy --strict (not collected by pytest): decorated functions keep their types.

``assert_type`` fails if a decorated function's type became ``Any`` or lost its
parameters, and every ``# type: ignore[...]`` below marks a call that must stay an
error: with ``warn_unused_ignores`` (part of --strict) mypy fails as soon as the
decorator stops preserving the signature (ParamSpec) and the call type-checks.
The functions are defined but never called at import time.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any

from betty_otel import capture_telemetry

if sys.version_info >= (3, 11):
    from typing import assert_type
else:  # pragma: no cover - mypy checks this file for python_version 3.10
    from typing_extensions import assert_type


@capture_telemetry
def add(a: int, b: int = 2) -> int:
    return a + b


@capture_telemetry(skill_name="greet", caller="API", capture_inputs=True, sanitize_keys=["x"])
def greet(name: str, *, excited: bool = False) -> str:
    return name + ("!" if excited else "")


@capture_telemetry()
def variadic(*parts: str, **options: int) -> list[str]:
    return list(parts)


@capture_telemetry
async def fetch(url: str, retries: int = 0) -> bytes:
    return url.encode()


@capture_telemetry(skill_name="count")
def count(limit: int) -> Iterator[int]:
    yield from range(limit)


@capture_telemetry
async def stream(limit: int) -> AsyncIterator[str]:
    for n in range(limit):
        yield str(n)


class Service:
    @capture_telemetry
    def method(self, x: int) -> str:
        return str(x)

    @capture_telemetry(capture_inputs=True)
    async def amethod(self, x: int) -> float:
        return float(x)

    @classmethod
    @capture_telemetry
    def build(cls, size: int) -> Service:
        assert size >= 0
        return cls()

    @staticmethod
    @capture_telemetry
    def helper(text: str) -> int:
        return len(text)


def check_plain_functions() -> None:
    assert_type(add(1), int)
    assert_type(add(1, b=3), int)
    assert_type(greet("ann", excited=True), str)
    assert_type(variadic("a", "b", x=1), list[str])
    as_callable: Callable[[int, int], int] = add
    assert_type(as_callable(1, 2), int)

    add("1")  # type: ignore[arg-type]
    add(1, 2, 3)  # type: ignore[call-arg]
    add(1, c=3)  # type: ignore[call-arg]
    greet("ann", True)  # type: ignore[call-arg]
    greet(name=1)  # type: ignore[arg-type]
    variadic(1)  # type: ignore[arg-type]
    wrong_return: Callable[[int], str] = add  # type: ignore[assignment]
    del wrong_return


async def check_async_and_generators() -> None:
    pending: Coroutine[Any, Any, bytes] = assert_type(fetch("u"), Coroutine[Any, Any, bytes])
    pending.close()
    assert_type(await fetch("u", retries=2), bytes)
    assert_type(count(3), Iterator[int])
    assert_type(stream(3), AsyncIterator[str])
    assert_type([n async for n in stream(2)], list[str])
    for item in count(2):
        assert_type(item, int)

    coroutine = fetch(1)  # type: ignore[arg-type]
    coroutine.close()
    count("3")  # type: ignore[arg-type]
    stream(limit="x")  # type: ignore[arg-type]


async def check_methods() -> None:
    service = Service()
    assert_type(service.method(1), str)
    assert_type(await service.amethod(2), float)
    assert_type(Service.build(3), Service)
    assert_type(service.build(3), Service)
    assert_type(Service.helper("abc"), int)
    assert_type(service.helper("abc"), int)

    service.method("1")  # type: ignore[arg-type]
    Service.build()  # type: ignore[call-arg]
    Service.helper(1)  # type: ignore[arg-type]
