"""The original Betty telemetry.capture skill's API and command line, over betty_otel.

The shims that ``betty-telemetry install-skill`` writes into an existing Betty
repository (``skills/telemetry.capture/telemetry_capture.py`` and
``telemetry_utils.py``) import everything from here, so code written for the
original skill runs unchanged and writes through betty_otel:

    from telemetry_utils import capture_telemetry, TelemetryContext
    from telemetry_capture import TelemetryCapture
    python skills/telemetry.capture/telemetry_capture.py \\
        SKILL STATUS DURATION_MS CALLER [INPUTS_JSON] [ERROR]

The command line prints what the original printed: the entry as indented JSON, a
blank line and ``✓ Telemetry captured to <path>``; ``Error: Invalid JSON for
inputs: <reason>`` or ``Error capturing telemetry: <reason>`` on stderr, exit 1.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from betty_otel._entry import validate_duration
from betty_otel.capture import TelemetryCapture as _Capture
from betty_otel.cli.capture import json_object
from betty_otel.cli.terminal import err, out
from betty_otel.instrument import TelemetryContext, capture_telemetry

__all__ = ["TelemetryCapture", "TelemetryContext", "capture_main", "capture_telemetry"]

USAGE = (
    "Usage: python telemetry_capture.py <skill> <status> <duration_ms> <caller>"
    " [inputs_json] [error_message]\n"
    "\nExample:\n"
    "  python telemetry_capture.py plugin.build success 320 CLI\n"
    '  python telemetry_capture.py agent.run failure 1500 API \'{"agent": "api.designer"}\''
)
"""What the original printed (on stdout, exit 1) when given fewer than four arguments."""


class TelemetryCapture(_Capture):
    """betty_otel's `TelemetryCapture` with the original skill's ``telemetry_file`` attribute."""

    @property
    def telemetry_file(self) -> Path:
        """The telemetry file (the original skill's name for `path`)."""
        return self.path


def capture_main(argv: Sequence[str]) -> int:
    """The original skill's command line: record one execution; return the exit status."""
    if len(argv) < 4:
        out(USAGE)
        return 1
    skill, status, duration, caller = argv[:4]
    try:
        inputs = json_object("inputs", argv[4]) if len(argv) > 4 else None
    except ValueError as exc:
        err(f"Error: {exc}")
        return 1
    try:
        telemetry = TelemetryCapture()
        entry = telemetry.capture(
            skill=skill,
            status=status,
            duration_ms=validate_duration(duration, text=True),
            caller=caller,
            inputs=inputs,
            error_message=argv[5] if len(argv) > 5 else None,
        )
    except Exception as exc:  # noqa: BLE001 - the original reports any failure this way
        err(f"Error capturing telemetry: {exc}")
        return 1
    out(json.dumps(entry, indent=2))
    out(f"\n✓ Telemetry captured to {telemetry.telemetry_file}")
    return 0
