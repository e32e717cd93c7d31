"""@capture_telemetry on methods and beside other decorators, and what introspection sees.

Methods, classmethods and staticmethods bind self and cls correctly and never capture
them; wraps-based decorators above or below and lru_cache keep working; the decorated
function keeps its name, doc, qualname, signature and kind, pickles and copies by
reference, and a bound method's signature drops self.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import inspect
import pickle
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import ParamSpec, TypeVar

import pytest

from betty_otel import capture_telemetry
from helpers import only_entry, read_entries
from instrument_helpers import KINDS, ORIGINALS

# ---------------------------------------------------------------------------
# methods, classmethods, staticmethods, other decorators
# ---------------------------------------------------------------------------

P = ParamSpec("P")
R = TypeVar("R")


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
