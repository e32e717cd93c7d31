"""betty_otel: Betty execution telemetry as OpenTelemetry spans and a locked JSON log.

Every execution recorded with `capture_telemetry`, `TelemetryContext` or
`TelemetryCapture.capture` becomes an OTel span; `BettyFileExporter` appends each
finished span as a Betty entry to ``registry/telemetry.json`` (or
$BETTY_TELEMETRY_FILE), and the same spans go to an OTLP collector when one is
configured. `betty_otel.query` reads the log back. `StoreError` (an OSError) is
what reading or appending to the file raises; `LockTimeoutError`, a StoreError,
when the file's lock was not obtained in time.

The names below are imported on first use (PEP 562), so ``import betty_otel`` and
the reading commands of the CLI never load the OpenTelemetry SDK or wrapt.
"""

from __future__ import annotations

from betty_otel._lazy import lazy_exports

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: a capture does not import typing
if TYPE_CHECKING:
    from typing import Final

    from betty_otel._entry import STATUSES
    from betty_otel._errors import internal_errors
    from betty_otel._report import report
    from betty_otel._setup import configure, shutdown
    from betty_otel._state import reset
    from betty_otel._store.errors import LockTimeoutError, StoreError
    from betty_otel.capture import TelemetryCapture
    from betty_otel.context import TelemetryContext
    from betty_otel.exporter import BettyFileExporter
    from betty_otel.instrument import capture_telemetry
    from betty_otel.propagation import subprocess_env

__all__ = [
    "STATUSES",
    "BettyFileExporter",
    "LockTimeoutError",
    "StoreError",
    "TelemetryCapture",
    "TelemetryContext",
    "capture_telemetry",
    "configure",
    "internal_errors",
    "report",
    "reset",
    "shutdown",
    "subprocess_env",
]

__version__ = "0.1.0"

_HOMES: Final = {
    "STATUSES": "betty_otel._entry",
    "BettyFileExporter": "betty_otel.exporter",
    "LockTimeoutError": "betty_otel._store.errors",
    "StoreError": "betty_otel._store.errors",
    "TelemetryCapture": "betty_otel.capture",
    "TelemetryContext": "betty_otel.context",
    "capture_telemetry": "betty_otel.instrument",
    "configure": "betty_otel._setup",
    "internal_errors": "betty_otel._errors",
    "report": "betty_otel._report",
    "reset": "betty_otel._state",
    "shutdown": "betty_otel._setup",
    "subprocess_env": "betty_otel.propagation",
}
"""The module each public name lives in (one entry per name of __all__)."""


__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
