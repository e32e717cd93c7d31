"""``betty-telemetry capture``: record one execution, checking every argument first."""

from __future__ import annotations

import argparse
import json
from typing import Any

from betty_otel._entry import validate_duration, validate_status
from betty_otel.capture import TelemetryCapture
from betty_otel.cli.render import out

__all__ = ["cmd_capture"]


def _json_object(name: str, text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"Invalid JSON for {name}: {exc}"
        raise ValueError(msg) from None
    except RecursionError:
        msg = f"Invalid JSON for {name}: nested too deeply"
        raise ValueError(msg) from None
    if not isinstance(value, dict):
        msg = f"{name} must be a JSON object, got {type(value).__name__}: {text}"
        raise ValueError(msg)
    return value


def _duration(text: str) -> float:
    """DURATION_MS as a number, checked by the schema's rule; the messages name the text."""
    try:
        value = float(text)
    except ValueError:
        msg = f"Invalid duration_ms: {text!r} is not a number"
        raise ValueError(msg) from None
    try:
        return validate_duration(value)
    except ValueError:
        msg = f"Invalid duration_ms: {text!r} must be a finite number >= 0"
        raise ValueError(msg) from None


def cmd_capture(args: argparse.Namespace) -> int:
    # Everything is checked before anything is written.
    status = validate_status(args.status)
    duration = _duration(args.duration_ms)
    inputs = _json_object("inputs", args.inputs)
    metadata = _json_object("metadata", args.metadata)
    capture = TelemetryCapture(args.file)
    entry = capture.capture(
        args.skill,
        status,
        duration,
        args.caller,
        inputs=inputs,
        error_message=args.error_message,
        metadata=metadata,
    )
    out(json.dumps(entry, indent=2, ensure_ascii=False))
    out(f"✓ Telemetry captured to {capture.path}")
    return 0
