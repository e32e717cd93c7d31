"""``betty-telemetry capture``: record one execution, checking every argument first.

When nothing but the file would receive the execution's span (`betty_otel._direct.spans_wanted`:
no OTLP or other exporter configured) nor its metrics (OTEL_METRICS_EXPORTER), the entry
goes straight to the file and the OpenTelemetry SDK is never imported; otherwise it is
recorded as a span (and in the metrics) through `TelemetryCapture`. Both paths write the
same entry.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from betty_otel._direct import spans_wanted, write_directly
from betty_otel._entry import validate_duration, validate_status
from betty_otel._environment import metrics_exporters
from betty_otel._logs import configure_now
from betty_otel._manual import manual_execution
from betty_otel._store import TelemetryStore
from betty_otel.cli.terminal import out

__all__ = ["cmd_capture", "json_object"]


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


def cmd_capture(args: argparse.Namespace) -> int:
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
