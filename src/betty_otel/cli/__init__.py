"""betty-telemetry: record, read, check and export the Betty telemetry log from a shell.

Every command takes ``--file`` (default: $BETTY_TELEMETRY_FILE, else
./registry/telemetry.json). Exit status: 0 success, 1 an error (printed as
``Error: ...`` on stderr, never a traceback), 2 a usage error. Each command's
module (`capture`, `read`, `check`, `export`, ...) is imported only when that command
runs, so ``--help`` and the reading commands never load OpenTelemetry, and ``capture``
loads the SDK (and the OTLP stack) only when something besides the file receives its
span (see `betty_otel.cli.capture`).
"""

from betty_otel.cli.app import main

__all__ = ["main"]
