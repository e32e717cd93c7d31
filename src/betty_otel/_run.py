"""One execution being recorded: its span, and how its outcome becomes the span's.

`Run` is the one place where an outcome (a return value, a status, an exception)
becomes the span's betty.* attributes and status, for the decorator, the context
manager and TelemetryCapture alike. Redaction happens before anything is put on
the span, so the file and any collector receive only redacted data.
"""

from __future__ import annotations

import asyncio
import traceback
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span

from betty_otel._entry import (
    ATTR_ERROR,
    ATTR_METADATA,
    ATTR_STATUS,
    ERROR_STATUSES,
    is_status,
    span_status_for,
)
from betty_otel._errors import internal_error
from betty_otel._redact import hide_secret_args
from betty_otel._sanitize import Sanitizer, to_json_text

__all__ = ["Run", "finish_run", "outcome_of_exception", "outcome_of_result", "start_run"]

# asyncio.TimeoutError is TimeoutError from 3.11 on, a separate class before.
_TIMEOUTS: Final = (TimeoutError, asyncio.TimeoutError)


def _describe(exc: BaseException) -> str:
    """``Type: message`` (just ``Type`` when the message is empty or cannot be made)."""
    name = type(exc).__name__
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a user's __str__ may raise anything
        text = ""
    return f"{name}: {text}" if text else name


def outcome_of_exception(exc: BaseException) -> tuple[str, str | None]:
    """The Betty status and raw error message for an exception that ended an execution."""
    if isinstance(exc, SystemExit):
        if exc.code is None or exc.code == 0:
            return "success", None
        return "failure", f"Exited with code {exc.code}"
    if isinstance(exc, _TIMEOUTS):
        return "timeout", _describe(exc)
    if isinstance(exc, Exception):
        return "failure", _describe(exc)
    return "error", _describe(exc)  # KeyboardInterrupt, CancelledError, GeneratorExit, ...


def outcome_of_result(result: object) -> tuple[str, str | None]:
    """Success, unless a Betty-style ``{"status": ...}`` result says otherwise."""
    if isinstance(result, dict):
        status = result.get("status")
        if is_status(status):
            error = result.get("error_message", result.get("error"))
            return status, error if isinstance(error, str) and error else None
    return "success", None


class Run:
    """One execution being recorded: its span and the Betty outcome of it."""

    __slots__ = ("error", "metadata", "sanitizer", "span", "status", "token")

    def __init__(self, span: Span, sanitizer: Sanitizer) -> None:
        self.span = span
        self.sanitizer = sanitizer
        self.status = "success"
        self.error: str | None = None
        self.metadata: dict[str, Any] | None = None
        self.token: object | None = None

    def attach(self) -> None:
        """Make the span current, so nested executions become its children."""
        self.token = otel_context.attach(trace.set_span_in_context(self.span))

    def detach(self) -> None:
        token, self.token = self.token, None
        if token is not None:
            otel_context.detach(token)  # type: ignore[arg-type]

    def set_error(self, status: str, message: str | None) -> None:
        self.status = status
        self.error = None if message is None else self.sanitizer.sanitize(message)

    def record_exception(self, exc: BaseException) -> None:
        """Status and message from the exception, and a redacted exception event."""
        status, message = outcome_of_exception(exc)
        redactor = self.sanitizer.redactor
        self.set_error(status, message and hide_secret_args(exc, redactor, message))
        if status not in ERROR_STATUSES:
            return
        stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        stack = hide_secret_args(exc, redactor, stack)
        kind = type(exc)
        self.span.add_event(
            "exception",
            {
                "exception.type": f"{kind.__module__}.{kind.__qualname__}"
                if kind.__module__ != "builtins"
                else kind.__qualname__,
                "exception.message": self.error or "",
                "exception.stacktrace": self.sanitizer.sanitize(stack),
                "exception.escaped": True,
            },
        )

    def end(self, end_time: int | None = None) -> None:
        """Put the outcome on the span and end it (this exports it)."""
        attributes: dict[str, Any] = {ATTR_STATUS: self.status}
        if self.error is not None:
            attributes[ATTR_ERROR] = self.error
        if self.metadata:
            attributes[ATTR_METADATA] = to_json_text(self.metadata)
        span = self.span
        span.set_attributes(attributes)
        status = span_status_for(self.status, self.error)
        if not status.is_unset:  # setting UNSET changes nothing, yet costs ~2 µs a call
            span.set_status(status)
        span.end(end_time=end_time)


def start_run(
    tracer: trace.Tracer,
    skill: str,
    attributes: dict[str, Any],
    sanitizer: Sanitizer,
) -> Run | None:
    """Start a run; None (logged, counted) if that fails, so the call goes on untraced."""
    # try/except, not handle_internal_errors, here and in finish_run: they run on
    # every instrumented call, and the context manager costs ten times more.
    try:
        return Run(tracer.start_span(skill, attributes=attributes), sanitizer)
    except Exception:  # noqa: BLE001 - telemetry must never break the host program
        internal_error("starting a span")
        return None


def finish_run(run: Run, exc: BaseException | None = None, result: object = None) -> None:
    """Make the span no longer current, record the outcome and end the span; never raises.

    If recording the outcome fails, the span still ends (with what it has), so the
    execution is not missing from the file.
    """
    run.detach()
    try:
        if exc is not None:
            run.record_exception(exc)
        else:
            status, message = outcome_of_result(result)
            if status != "success":
                run.set_error(status, message)
    except Exception:  # noqa: BLE001 - telemetry must never break the host program
        internal_error("recording the outcome")
    try:
        run.end()
    except Exception:  # noqa: BLE001 - telemetry must never break the host program
        internal_error("ending a span")
