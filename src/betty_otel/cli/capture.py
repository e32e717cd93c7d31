"""``betty-telemetry capture``: record one execution, checking every argument first.

When nothing but the file would receive the execution's span (`betty_otel._direct.spans_wanted`:
no OTLP or other exporter configured) nor its metrics (OTEL_METRICS_EXPORTER), the entry
goes straight to the file and the OpenTelemetry SDK is never imported; otherwise it is
recorded as a span (and in the metrics) through `TelemetryCapture`. Both paths write the
same entry.

A plain capture line (`plain_capture`: positional arguments only, as Betty's scripts
write it) is read here without argparse, whose import and parser are a sixth of a
capture's start-up; any other line goes through the parser (`betty_otel.cli.commandline`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from betty_otel._direct import spans_wanted, write_directly
from betty_otel._entry import validate_duration, validate_status
from betty_otel._environment import metrics_exporters
from betty_otel._logs import configure_now
from betty_otel._manual import manual_execution
from betty_otel._store import TelemetryStore
from betty_otel.cli.terminal import out

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: a capture does not import typing
if TYPE_CHECKING:
    import argparse
    from typing import Any, Final

__all__ = ["CaptureLine", "cmd_capture", "json_object", "plain_capture"]

_POSITIONALS: Final = (4, 6)
"""SKILL STATUS DURATION_MS CALLER, then INPUTS_JSON and ERROR_MESSAGE if given."""


class CaptureLine:
    """A capture's arguments as the parser names them (``args.skill``, ``args.file`` ...)."""

    __slots__ = (
        "caller",
        "command",
        "duration_ms",
        "error_message",
        "file",
        "inputs",
        "metadata",
        "skill",
        "status",
    )

    def __init__(self, words: Sequence[str]) -> None:
        self.command = "capture"
        self.skill, self.status, self.duration_ms, self.caller = words[:4]
        self.inputs = words[4] if len(words) > 4 else None
        self.error_message = words[5] if len(words) > 5 else None
        self.file: str | None = None
        self.metadata: str | None = None


def plain_capture(argv: Sequence[str]) -> CaptureLine | None:
    """What the parser reads from ``capture SKILL STATUS MS CALLER [INPUTS [ERROR]]``
    without an option; None for any other line (the parser reads it, and says what is
    wrong). A word starting with "-" may be an option, so it goes to the parser too."""
    words = argv[1:]
    if argv[:1] != ["capture"] or not _POSITIONALS[0] <= len(words) <= _POSITIONALS[1]:
        return None
    if any(word.startswith("-") for word in words):
        return None
    return CaptureLine(words)


def json_object(name: str, text: str | None) -> dict[str, Any] | None:
    """text parsed as a JSON object. Errors give the parser's reason and position, never the
    text itself: it may hold a secret (the original skill's message form is kept)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except RecursionError:
        reason = "nested too deeply"
    except ValueError as exc:  # JSONDecodeError, or an integer with too many digits
        reason = str(exc)
    else:
        if isinstance(value, dict):
            return value
        msg = f"{name} must be a JSON object, got {type(value).__name__}"
        raise ValueError(msg)
    msg = f"Invalid JSON for {name}: {reason}"
    raise ValueError(msg)


def cmd_capture(args: argparse.Namespace | CaptureLine) -> int:
    # Everything is checked before anything is written.
    status = validate_status(args.status)
    duration = validate_duration(args.duration_ms, text=True)
    inputs = json_object("inputs", args.inputs)
    metadata = json_object("metadata", args.metadata)
    if spans_wanted() or metrics_exporters():
        # Only then: the SDK (and the OTLP exporter) is most of a capture's start-up time.
        from betty_otel.capture import TelemetryCapture  # noqa: PLC0415

        configure_now()  # logging is loaded now: the CLI's handler before anything logs
        capture = TelemetryCapture(args.file)
        path = capture.path
        entry = capture.capture(
            args.skill,
            status,
            duration,
            args.caller,
            inputs=inputs,
            error_message=args.error_message,
            metadata=metadata,
        )
    else:
        store = TelemetryStore(args.file)
        path = store.path
        execution = manual_execution(
            args.skill, status, duration, args.caller, inputs, args.error_message, metadata
        )
        entry = write_directly(store, execution)
    out(json.dumps(entry, indent=2, ensure_ascii=False))
    out(f"✓ Telemetry captured to {path}")
    return 0
