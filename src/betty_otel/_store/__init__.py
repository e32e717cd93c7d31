"""The telemetry file: a locked, append-only JSON array (the only code that touches it).

location: where the file is; format: the canonical line layout; lines: positioned
reads; parser: the tolerant forward parser; tail: where the array ends (and whether
a tail may be cut); last_write: the tail our last append left, checked with one read;
files and writer: locking, appends, repair, rotation; snapshot:
opening the files for reading, one view across a rotation; readers: streaming
entries and checks.
"""

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
