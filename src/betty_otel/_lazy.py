"""A package's public names, imported from their modules on first use (PEP 562).

``import betty_otel`` then loads neither the OpenTelemetry SDK nor wrapt, and an append
(``betty-telemetry capture``) loads the store's writer without its readers.
`import_module` imports a module named at run time without loading importlib.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: a capture does not import typing
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any

__all__ = ["import_module", "lazy_exports"]


def import_module(name: str) -> ModuleType:
    """The module of that absolute name, imported if it is not yet: what
    ``importlib.import_module(name)`` returns, without importing importlib (a one-shot
    ``betty-telemetry capture`` would load it for this alone).

    Raises:
        ImportError: as ``import`` raises it.
    """
    __import__(name)
    return sys.modules[name]


def lazy_exports(
    package: str, homes: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of package, whose names homes maps to modules."""

    def attribute(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            msg = f"module {package!r} has no attribute {name!r}"
            raise AttributeError(msg)
        return getattr(import_module(home), name)

    def names() -> list[str]:
        return sorted({*vars(sys.modules[package]), *homes})

    return attribute, names
