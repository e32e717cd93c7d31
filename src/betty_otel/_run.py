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
from opentelemetry.context import Context
from opentelemetry.trace import Span

from betty_otel._entry import (
    ATTR_CALLER,
    ATTR_ERROR,
    ATTR_METADATA,
    ATTR_STATUS,
    ERROR_STATUSES,
    canonical_status,
    entry_error,
    is_status,
)
from betty_otel._errors import internal_error
from betty_otel._metrics import execution_ended, execution_started
from betty_otel._metrics.record import Started
from betty_otel._redact import hide_secret_args, type_name
from betty_otel._sanitize import Sanitizer, to_json_text
from betty_otel._span_status import span_status_for
from betty_otel.propagation import root_parent

__all__ = [
    "DEFAULT_CALLER",
    "Run",
    "finish_run",
    "outcome_of_exception",
    "outcome_of_result",
    "start_run",
    "text_of",
]

DEFAULT_CALLER: Final = "runtime"

# asyncio.TimeoutError is TimeoutError from 3.11 on, a separate class before.
_TIMEOUTS: Final = (TimeoutError, asyncio.TimeoutError)
_UNNAMED: Final = "<unreadable type>"


def text_of(value: object) -> str:
    """``str(value)``; a marker when the user's ``__str__`` raises."""
    try:
        return str(value)
    except Exception:  # noqa: BLE001 - a user's __str__ may raise anything
        return f"<unrepresentable {type_name(value)}>"


def _type_text(kind: type, *, qualified: bool = False) -> str:
    """A class's name (``module.Name`` when qualified and not a builtin), or a marker
    when a hostile metaclass will not say."""
    try:
        name = kind.__qualname__
        module = kind.__module__ if qualified else "builtins"
    except Exception:  # noqa: BLE001 - a metaclass may raise from any attribute
        return _UNNAMED
    return name if module == "builtins" else f"{module}.{name}"


def _message_of(exc: BaseException) -> str:
    """The exception's own message, ``str(exc)`` (empty when its ``__str__`` raises)."""
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - a user's __str__ may raise anything
        return ""


def _exit_outcome(exc: SystemExit) -> tuple[str, str | None]:
    """SystemExit: success for code None or 0; failure otherwise, and when the code
    cannot be read or compared (a user's ``__eq__`` may raise)."""
    try:
        code = exc.code
        if code is None or code == 0:
            return "success", None
    except Exception:  # noqa: BLE001 - never let an odd exit code read as success
        return "failure", "Exited with an unreadable code"
    return "failure", f"Exited with code {text_of(code)}"


def outcome_of_exception(exc: BaseException) -> tuple[str, str | None]:
    """The Betty status and raw error message for an exception that ended an execution.

    The message is ``Type: message`` (just ``Type`` when the message is empty), as
    the SDK describes an exception in a span's status; the exception event keeps the
    two apart (see Run.record_exception). Never raises: the class decides the status
    (`issubclass` on the real class runs no user code), so a call that raised is
    never recorded as success because its exception could not be described.
    """
    return _outcome(exc, _message_of(exc))


def _outcome(exc: BaseException, text: str) -> tuple[str, str | None]:
    """outcome_of_exception, given the exception's message text."""
    kind = type(exc)
    if issubclass(kind, SystemExit):
        return _exit_outcome(exc)  # type: ignore[arg-type] # a SystemExit by the check
    name = _type_text(kind)
    described = f"{name}: {text}" if text else name
    if issubclass(kind, _TIMEOUTS):
        return "timeout", described
    if issubclass(kind, Exception):
        return "failure", described
    return "error", described  # KeyboardInterrupt, CancelledError, GeneratorExit, ...


def outcome_of_result(result: object) -> tuple[str, str | None]:
    """Success, unless a Betty-style ``{"status": ...}`` result says otherwise.

    The status may be any word old Betty tools use (``"failed"``, ``"Timed out"``):
    it maps to its canonical status; a word that is no status means success. The
    message is the result's ``error_message``, else its ``error``.
    """
    if isinstance(result, dict):
        status = result.get("status")
        if not is_status(status) and isinstance(status, str):
            status = canonical_status(status)
        if is_status(status):
            if status == "success":
                return status, None
            try:
                return status, entry_error(result)
            except Exception:  # noqa: BLE001 - an odd error value must not lose the status
                return status, None
    return "success", None


class Run:
    """One execution being recorded: its span and the Betty outcome of it."""

    __slots__ = (
        "error",
        "error_type",
        "metadata",
        "metrics",
        "sanitizer",
        "span",
        "status",
        "token",
    )

    def __init__(self, span: Span, sanitizer: Sanitizer) -> None:
        self.span = span
        self.sanitizer = sanitizer
        self.status = "success"
        self.error: str | None = None
        self.error_type: str | None = None
        """The qualified class of the exception that ended the execution, if one did."""
        self.metadata: dict[str, Any] | None = None
        self.token: object | None = None
        self.metrics: Started | None = None
        """This execution in the metrics, while they are recorded; set by start_run."""

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
        """Status and message from the exception, and a redacted exception event.

        An error status the code set before it raised (TelemetryContext.set_error or
        set_status) is kept, with its message if it gave one: the code knows best
        what went wrong. The exception still becomes the span's exception event,
        with the semantic conventions' attributes: ``exception.type`` the qualified
        class name, ``exception.message`` the exception's own message only.
        """
        text = _message_of(exc)
        status, message = _outcome(exc, text)
        self.error_type = _type_text(type(exc), qualified=True)
        kept = self.status in ERROR_STATUSES
        if not kept:
            self.status = status  # before anything that can fail: never a false success
        redactor = self.sanitizer.redactor
        if not kept or self.error is None:
            self.error = (
                None
                if message is None
                else self.sanitizer.sanitize(hide_secret_args(exc, redactor, message))
            )
        if status not in ERROR_STATUSES:
            return
        try:
            stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        except Exception:  # noqa: BLE001 - traceback reads the class's name, which may raise
            stack = message or ""
        stack = hide_secret_args(exc, redactor, stack)
        self.span.add_event(
            "exception",
            {
                "exception.type": _type_text(type(exc), qualified=True),
                "exception.message": self.sanitizer.sanitize(hide_secret_args(exc, redactor, text)),
                "exception.stacktrace": self.sanitizer.sanitize(stack),
                "exception.escaped": True,
            },
        )

    def end(self, end_time: int | None = None) -> None:
        """Put the outcome on the span and end it (this exports it)."""
        status = self.status
        execution_ended(self.metrics, status, self.error_type)  # never raises
        attributes: dict[str, Any] = {ATTR_STATUS: status}
        if self.error is not None:
            attributes[ATTR_ERROR] = self.error
        if self.metadata:
            attributes[ATTR_METADATA] = to_json_text(self.metadata)
        span = self.span
        span.set_attributes(attributes)
        if status in ERROR_STATUSES:  # setting UNSET changes nothing, yet costs ~2 µs a call
            span.set_status(span_status_for(status, self.error))
        span.end(end_time=end_time)


def start_run(
    tracer: trace.Tracer,
    skill: str,
    attributes: dict[str, Any],
    sanitizer: Sanitizer,
    remote_parent: Context | None = None,
) -> Run | None:
    """Start a run; None (logged, counted) if that fails, so the call goes on untraced.

    A root execution (no span current) is a child of remote_parent when given (the
    pipeline's $TRACEPARENT).
    """
    # try/except, not handle_internal_errors, here and in finish_run: they run on
    # every instrumented call, and the context manager costs ten times more.
    try:
        context = root_parent(remote_parent)
        run = Run(tracer.start_span(skill, context, attributes=attributes), sanitizer)
    except Exception:  # noqa: BLE001 - telemetry must never break the host program
        internal_error("starting a span")
        return None
    run.metrics = execution_started(skill, attributes.get(ATTR_CALLER, DEFAULT_CALLER))
    return run


def finish_run(run: Run, exc: BaseException | None = None, result: object = None) -> None:
    """Make the span no longer current, record the outcome and end the span; never raises.

    If recording the outcome fails, the span still ends (with what it has), so the
    execution is not missing from the file.
    """
    run.detach()
    try:
        if exc is not None:
            run.record_exception(exc)
        elif result is not None:  # None, the usual result, keeps the status as it is
            status, message = outcome_of_result(result)
            if status != "success":
                run.set_error(status, message)
    except Exception:  # noqa: BLE001 - telemetry must never break the host program
        internal_error("recording the outcome")
    try:
        run.end()
    except Exception:  # noqa: BLE001 - telemetry must never break the host program
        internal_error("ending a span")
