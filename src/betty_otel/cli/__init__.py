"""betty-telemetry: record, read, check and export the Betty telemetry log from a shell.

Every command takes ``--file`` (default: $BETTY_TELEMETRY_FILE, else
./registry/telemetry.json). Exit status: 0 success, 1 an error (printed as
``Error: ...`` on stderr, never a traceback), 2 a usage error. Each command's
module (`capture`, `read`, `check`, `export`) is imported only when that command
runs, so ``--help`` and the reading commands never load the OpenTelemetry SDK, and
``capture`` never loads the OTLP stack unless OTLP is configured.
"""

from betty_otel.cli.app import main

__all__ = ["main"]
