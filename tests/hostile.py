"""Hostile values for the never-raise tests of the redactor, the sanitizer and input binding."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Hostile:
    """Raises from everything it can."""

    def __getattribute__(self, name: str) -> Any:
        raise RuntimeError(name)

    def __repr__(self) -> str:
        raise RuntimeError("repr")


class BadMapping(dict[str, int]):
    def items(self) -> Any:
        raise RuntimeError("items")


class Unrepresentable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __str__(self) -> str:
        raise RuntimeError("no str")


def a_function() -> None:
    """A plain function: its repr holds an address."""


HOSTILE: dict[str, Callable[[], object]] = {
    "hostile": Hostile,
    "bad-mapping": lambda: BadMapping(a=1),
    "nested-hostile": lambda: {"k": [Hostile()]},
    "unrepresentable": Unrepresentable,
    "type": lambda: type,
    "function": lambda: a_function,
}
