"""betty_otel: Betty execution telemetry as OpenTelemetry spans and a locked JSON log.

Every execution recorded with `capture_telemetry`, `TelemetryContext` or
`TelemetryCapture.capture` becomes an OTel span; `BettyFileExporter` appends each
finished span as a Betty entry to ``registry/telemetry.json`` (or
$BETTY_TELEMETRY_FILE), and the same spans go to an OTLP collector when one is
configured. `betty_otel.query` reads the log back.
"""

from betty_otel._entry import STATUSES
from betty_otel._errors import internal_errors
from betty_otel._setup import configure, shutdown
from betty_otel.capture import TelemetryCapture
from betty_otel.exporter import BettyFileExporter
from betty_otel.instrument import TelemetryContext, capture_telemetry

__all__ = [
    "STATUSES",
    "BettyFileExporter",
    "TelemetryCapture",
    "TelemetryContext",
    "capture_telemetry",
    "configure",
    "internal_errors",
    "shutdown",
]

__version__ = "0.1.0"
