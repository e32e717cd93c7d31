"""Tests for betty_otel._inputs: binding call arguments to parameter names."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from betty_otel._inputs import bind_inputs
from betty_otel._redact import REDACTED
from betty_otel._sanitize import Sanitizer
from hostile import HOSTILE

S = Sanitizer()


def greet(name: str, password: str, *extra: Any, greeting: str = "hi", **options: Any) -> None:
    """Signature under test."""


SIG = inspect.signature(greet)


def test_bind_inputs_names_arguments_applies_defaults_and_keeps_var_args_under_their_names() -> (
    None
):
    """Positional and keyword arguments bind by name; *args/**kwargs stay under their names."""
    result = bind_inputs(S, SIG, ("bob", "hunter2", 1, 2), {"api_key": "k", "color": "red"})
    assert result == {
        "name": "bob",
        "password": REDACTED,
        "extra": [1, 2],
        "greeting": "hi",
        "options": {"api_key": REDACTED, "color": "red"},
    }


def test_bind_inputs_redacts_keyword_and_positional_secrets() -> None:
    """f(api_key="x") and f("x") with a parameter named password are both redacted."""

    def f(api_key: str = "") -> None:
        """Keyword secret."""

    def g(password: str) -> None:
        """Positional secret."""

    assert bind_inputs(S, inspect.signature(f), (), {"api_key": "x"}) == {"api_key": REDACTED}
    assert bind_inputs(S, inspect.signature(g), ("x",), {}) == {"password": REDACTED}


def test_bind_inputs_skip_first_drops_self() -> None:
    """skip_first drops the self/cls argument before sanitizing."""

    class C:
        def method(self, x: int, token: str = "t") -> None:
            """Method under test."""

    sig = inspect.signature(C.method)
    assert bind_inputs(S, sig, (C(), 5), {}, skip_first=True) == {"x": 5, "token": REDACTED}

    def varargs(*args: Any) -> None:
        """Only *args: skip_first drops the first positional value."""

    assert bind_inputs(S, inspect.signature(varargs), (C(), 1, 2), {}, skip_first=True) == {
        "args": [1, 2]
    }


def test_bind_inputs_falls_back_when_binding_fails_and_never_raises() -> None:
    """Wrong arguments keep the names they can have; the rest goes under "kwargs"/"args"."""
    result = bind_inputs(S, SIG, ("a",), {"name": "dup", "secret": "s"})
    assert result == {"name": "a", "kwargs": {"name": "dup", "secret": REDACTED}}
    partial = bind_inputs(S, SIG, ("only-name",), {})
    assert partial == {"name": "only-name", "extra": [], "greeting": "hi", "options": {}}
    weird = bind_inputs(S, SIG, None, None)  # type: ignore[arg-type]
    assert weird == {"args": None, "kwargs": None}


@pytest.mark.parametrize("make", HOSTILE.values(), ids=HOSTILE.keys())
def test_bind_inputs_never_raises_on_hostile_values(make: Callable[[], object]) -> None:
    """Hostile arguments, positional or keyword, bind by name as the sanitizer records them."""
    value = make()  # built here: pytest itself would trip over Hostile while collecting
    result = bind_inputs(S, SIG, (value,), {"k": value})
    recorded = S.sanitize(value)
    assert result == {"name": recorded, "extra": [], "greeting": "hi", "options": {"k": recorded}}
