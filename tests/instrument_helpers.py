"""What the @capture_telemetry tests share: a decorated function of each kind, run as used.

- `KINDS`: sync, async, generator, asyncgen; `RESULT_KINDS`: those whose return value is
  the call's result.
- `make`: a decorated function of one kind whose outcome is a body's value or exception.
- `run`: call it the way its kind is used (call, await, iterate to the end).
- `raise_`: raise an exception from an expression (a lambda body).
- `ORIGINALS`: an undecorated function of each kind, with a docstring and a default.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from betty_otel import capture_telemetry

KINDS = ("sync", "async", "generator", "asyncgen")
RESULT_KINDS = ("sync", "async")  # kinds whose return value is the call's result


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


def raise_(exc: BaseException) -> Any:
    """Raise exc: a lambda body cannot."""
    raise exc


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
