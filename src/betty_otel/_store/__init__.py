"""The telemetry file: a locked, append-only JSON array (the only code that touches it).

location: where the file is; format: the canonical line layout; lines: positioned
reads; parser: the tolerant forward parser; tail: where the array ends; files and
writer: locking, appends, repair, rotation; readers: streaming entries and checks.
"""

from betty_otel._store.errors import LockTimeoutError, StoreError
from betty_otel._store.format import encode_entry, parse_entry_line
from betty_otel._store.location import DEFAULT_PATH, ENV_FILE, resolve_path
from betty_otel._store.parser import Damage, ForwardParser
from betty_otel._store.readers import (
    FileReport,
    check_file,
    iter_entries,
    log_files,
    open_log_files,
    warn_damage,
)
from betty_otel._store.writer import TelemetryStore

__all__ = [
    "DEFAULT_PATH",
    "ENV_FILE",
    "Damage",
    "FileReport",
    "ForwardParser",
    "LockTimeoutError",
    "StoreError",
    "TelemetryStore",
    "check_file",
    "encode_entry",
    "iter_entries",
    "log_files",
    "open_log_files",
    "parse_entry_line",
    "resolve_path",
    "warn_damage",
]
