"""The telemetry file: a locked, append-only JSON array (the only code that touches it).

location: where the file is; format: the canonical line layout; lines: positioned
reads; parser: the tolerant forward parser; tail: where the array ends (and whether
a tail may be cut); files and writer: locking, appends, repair, rotation; snapshot:
opening the files for reading, one view across a rotation; readers: streaming
entries and checks.

The names below are imported from their modules on first use (PEP 562): an append
(``betty-telemetry capture``) loads the writer's modules, never the readers'.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from betty_otel._store.errors import LockTimeoutError, StoreError
    from betty_otel._store.format import encode_entry, parse_entry_line
    from betty_otel._store.location import (
        BETTY_MARKERS,
        DEFAULT_PATH,
        ENV_FILE,
        ENV_HOME,
        betty_root,
        default_path,
        resolve_path,
        telemetry_file_of,
    )
    from betty_otel._store.parser import Damage, ForwardParser
    from betty_otel._store.readers import (
        FileReport,
        check_file,
        iter_entries,
        open_log_files,
        warn_damage,
    )
    from betty_otel._store.snapshot import log_files, open_for_reading, read_errors
    from betty_otel._store.writer import TelemetryStore

__all__ = [
    "BETTY_MARKERS",
    "DEFAULT_PATH",
    "ENV_FILE",
    "ENV_HOME",
    "Damage",
    "FileReport",
    "ForwardParser",
    "LockTimeoutError",
    "StoreError",
    "TelemetryStore",
    "betty_root",
    "check_file",
    "default_path",
    "encode_entry",
    "iter_entries",
    "log_files",
    "open_for_reading",
    "open_log_files",
    "parse_entry_line",
    "read_errors",
    "resolve_path",
    "telemetry_file_of",
    "warn_damage",
]

_HOMES: Final = {
    "BETTY_MARKERS": "location",
    "DEFAULT_PATH": "location",
    "ENV_FILE": "location",
    "ENV_HOME": "location",
    "Damage": "parser",
    "FileReport": "readers",
    "ForwardParser": "parser",
    "LockTimeoutError": "errors",
    "StoreError": "errors",
    "TelemetryStore": "writer",
    "betty_root": "location",
    "check_file": "readers",
    "default_path": "location",
    "encode_entry": "format",
    "iter_entries": "readers",
    "log_files": "snapshot",
    "open_for_reading": "snapshot",
    "open_log_files": "readers",
    "parse_entry_line": "format",
    "read_errors": "snapshot",
    "resolve_path": "location",
    "telemetry_file_of": "location",
    "warn_damage": "readers",
}
"""The module of this package each public name lives in (one entry per name of __all__)."""


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use."""
    home = _HOMES.get(name)
    if home is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
