"""The telemetry file: a locked, append-only JSON array (the only code that touches it).

location: where the file is; format: the canonical line layout; lines: positioned
reads; parser: the tolerant forward parser; tail: where the array ends (and whether
a tail may be cut); last_write: the tail our last append left, checked with one read;
files and writer: locking, appends; repair: cutting a torn tail; rotation: a new log put
in place; legacy: the original Betty writer's late bytes and cap; snapshot:
opening the files for reading, one view across a rotation; readers: streaming
entries and checks.

The names below are imported from their modules on first use (PEP 562): an append
(``betty-telemetry capture``) loads the writer's modules, never the readers'.
"""

from __future__ import annotations

from betty_otel._lazy import lazy_exports

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: a capture does not import typing
if TYPE_CHECKING:
    from typing import Final

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
    "BETTY_MARKERS": "betty_otel._store.location",
    "DEFAULT_PATH": "betty_otel._store.location",
    "ENV_FILE": "betty_otel._store.location",
    "ENV_HOME": "betty_otel._store.location",
    "Damage": "betty_otel._store.parser",
    "FileReport": "betty_otel._store.readers",
    "ForwardParser": "betty_otel._store.parser",
    "LockTimeoutError": "betty_otel._store.errors",
    "StoreError": "betty_otel._store.errors",
    "TelemetryStore": "betty_otel._store.writer",
    "betty_root": "betty_otel._store.location",
    "check_file": "betty_otel._store.readers",
    "default_path": "betty_otel._store.location",
    "encode_entry": "betty_otel._store.format",
    "iter_entries": "betty_otel._store.readers",
    "log_files": "betty_otel._store.snapshot",
    "open_for_reading": "betty_otel._store.snapshot",
    "open_log_files": "betty_otel._store.readers",
    "parse_entry_line": "betty_otel._store.format",
    "read_errors": "betty_otel._store.snapshot",
    "resolve_path": "betty_otel._store.location",
    "telemetry_file_of": "betty_otel._store.location",
    "warn_damage": "betty_otel._store.readers",
}
"""The module of this package each public name lives in (one entry per name of __all__)."""


__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
