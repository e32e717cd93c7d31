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
inputs: <reason>`` or ``Error capturing telemetry: <reason>`` on stderr, exit 1. A
closed stdout or stderr, or a stdout whose reader went away, shows nothing and is no
error (the entry is written), as with the original's print().

A shim first calls `use_repository`: its repository's log becomes this process's
default. Run by an interpreter that cannot import betty_otel, the shims record
through `serve`, run by the installing interpreter (see `betty_otel.dropin_fallback`).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from betty_otel._entry import validate_duration
from betty_otel._setup.shimlog import set_shim_log, shim_log
from betty_otel.capture import TelemetryCapture as _Capture
from betty_otel.cli.capture import json_object
from betty_otel.cli.terminal import err, out, quiet_stdout
from betty_otel.instrument import TelemetryContext, capture_telemetry

__all__ = [
    "USAGE",
    "TelemetryCapture",
    "TelemetryContext",
    "capture_main",
    "capture_telemetry",
    "serve",
    "use_repository",
]

USAGE: Final = (
    "Usage: python telemetry_capture.py <skill> <status> <duration_ms> <caller>"
    " [inputs_json] [error_message]\n"
    "\nExample:\n"
    "  python telemetry_capture.py plugin.build success 320 CLI\n"
    '  python telemetry_capture.py agent.run failure 1500 API \'{"agent": "api.designer"}\''
)
"""What the original printed (on stdout, exit 1) when given fewer than four arguments."""

_ERROR_KINDS: Final = (ValueError, TypeError)
"""Failures a fallback raises as they are (bad arguments); any other is its OSError."""


def use_repository(home: str | os.PathLike[str], telemetry_file: str | None = None) -> None:
    """Make the log of the repository at home this process's default, for the shims'
    names and the decorator: telemetry_file (install-skill --file), else
    registry/telemetry.json under $BETTY_HOME or home; $BETTY_TELEMETRY_FILE still wins.
    The environment is left alone: child processes resolve their own log."""
    set_shim_log(home, telemetry_file)


class TelemetryCapture(_Capture):
    """betty_otel's `TelemetryCapture` with the original skill's ``telemetry_file``
    attribute; without a file, the log of the shim's repository (see `use_repository`)."""

    def __init__(
        self,
        telemetry_file: str | os.PathLike[str] | None = None,
        *,
        fsync: bool = False,
        lock_timeout: float = 10.0,
    ) -> None:
        chosen = telemetry_file if telemetry_file is not None else shim_log()
        super().__init__(chosen, fsync=fsync, lock_timeout=lock_timeout)

    @property
    def telemetry_file(self) -> Path:
        """The telemetry file (the original skill's name for `path`)."""
        return self.path


def capture_main(argv: Sequence[str]) -> int:
    """The original skill's command line: record one execution; return the exit status."""
    if len(argv) < 4:
        return _printed(USAGE, 1)
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
    return _printed(
        f"{json.dumps(entry, indent=2)}\n\n✓ Telemetry captured to {path_of(telemetry)}", 0
    )


def path_of(telemetry: TelemetryCapture) -> Path:
    """The file a capture wrote (the original's ``telemetry_file``)."""
    return telemetry.telemetry_file


def _printed(text: str, status: int) -> int:
    """Print text on stdout and return status; a reader that went away changes neither."""
    try:
        out(text)
        if sys.stdout is not None:
            sys.stdout.flush()
    except BrokenPipeError:
        quiet_stdout()
    return status


def serve() -> int:
    """Record for a shim run by an interpreter without betty_otel (`dropin_fallback`):
    one JSON request a line on stdin, one JSON reply a line, until stdin ends.

    A request is ``{"op": "capture" | "query", "file": path, "options": {...}, ...}``:
    ``fields`` (capture's arguments; ``text``: duration_ms is command-line text) or
    ``filters`` (query's). The reply is ``{"entry": ...}``, ``{"entries": [...]}`` or
    ``{"error": [kind, message]}``; ``{"ready": true}`` comes first. The replies have
    stdout to themselves (anything else printed goes to stderr), and an interrupt is
    the skill's to handle: this ends when the skill closes the pipe.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    _reply(replies, {"ready": True})
    for line in sys.stdin.buffer:
        _reply(replies, _answer(line))
    return 0


def _reply(replies: Any, reply: dict[str, Any]) -> None:
    replies.write(json.dumps(reply).encode("ascii") + b"\n")
    replies.flush()


def _answer(line: bytes) -> dict[str, Any]:
    """The reply to one request (see serve)."""
    try:
        request = json.loads(line)
        telemetry = TelemetryCapture(request["file"], **request["options"])
        if request["op"] == "query":
            return {"entries": telemetry.query(**request["filters"])}
        fields = request["fields"]
        if request.get("text"):
            fields["duration_ms"] = validate_duration(fields["duration_ms"], text=True)
        return {"entry": telemetry.capture(**fields)}
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the skill's process
        kinds = [kind.__name__ for kind in _ERROR_KINDS if isinstance(exc, kind)]
        return {"error": [(kinds or ["OSError"])[0], str(exc)]}
