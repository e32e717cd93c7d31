"""One execution being recorded: its span, its record, and how its outcome becomes both.

`Run` is the one place where an outcome (a return value, a status, an exception)
becomes betty_otel's record of the execution (the entry is made from it, see
`betty_otel._record`) and the span's betty.* attributes and status (its projection
for a collector), for the decorator and the context manager alike. Redaction happens
before anything is put on the span, so the file and any collector receive only
redacted data; what it removed is removed from the rest of the execution too (see
`betty_otel._known_secrets`).
"""

from __future__ import annotations

import asyncio
import traceback
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, Status

from betty_otel._current import CurrentSpan
from betty_otel._entry import (
    ATTR_CALLER,
    ATTR_ERROR,
    ATTR_INPUTS,
    ATTR_METADATA,
    ATTR_STATUS,
    ERROR_STATUSES,
    canonical_status,
    entry_error,
    is_status,
)
from betty_otel._errors import internal_error
from betty_otel._inflight.hooks import claim, track
from betty_otel._known_secrets import NO_SECRETS, Secrets, learned, scrub, scrub_json_text
from betty_otel._metrics import execution_ended, execution_started
from betty_otel._metrics.record import Started
from betty_otel._record import end_with_record
from betty_otel._redact import hide_secret_args, type_name
from betty_otel._sanitize import Sanitizer, to_json_text
from betty_otel._span_status import span_status_for
from betty_otel.propagation import root_parent

if TYPE_CHECKING:
    from betty_otel._inflight.tracker import Handle

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
    """One execution being recorded: its span, and betty_otel's own record of it.

    The record (`attributes` as the span started with them, then the outcome) is what
    the entry is made of (see `betty_otel._record`); the span is its projection for a
    collector. User code sees its `current` span, never the span itself.
    """

    __slots__ = (
        "asked_status",
        "attributes",
        "current",
        "error",
        "error_type",
        "inflight",
        "metadata",
        "metrics",
        "sanitizer",
        "secrets",
        "span",
        "status",
        "token",
        "touched",
    )

    def __init__(self, span: Span, sanitizer: Sanitizer, attributes: dict[str, Any]) -> None:
        self.span = span
        self.sanitizer = sanitizer
        self.attributes = attributes
        """The span's attributes at its start (betty.skill, betty.caller, betty.inputs,
        code.*); replaced, never changed in place (the decorator shares one dict)."""
        self.status = "success"
        self.error: str | None = None
        self.metadata: str | None = None
        """The redacted metadata as JSON text; None when there is none."""
        self.secrets: Secrets = NO_SECRETS
        """What redaction removed from the inputs and metadata (see _known_secrets)."""
        self.touched = False
        """User code set attributes on the span (which may have evicted ours)."""
        self.asked_status: Status | None = None
        """The span status user code asked for (see CurrentSpan.set_status)."""
        self.token: object | None = None
        self.current: CurrentSpan | None = CurrentSpan(self)
        """The span code sees as current; dropped when the run ends, so the reference
        cycle between the two does not keep a finished run for the garbage collector."""
        self.inflight: Handle | None = None
        """This execution while in flight (see betty_otel._inflight); set by start_run."""
        self.error_type: str | None = None
        """The qualified class of the exception that ended the execution, if one did."""
        self.metrics: Started | None = None
        """This execution in the metrics, while they are recorded; set by start_run."""

    def attach(self) -> None:
        """Make the execution current, so nested executions become its children."""
        self.token = otel_context.attach(trace.set_span_in_context(self.current or self.span))

    def detach(self) -> None:
        token, self.token = self.token, None
        if token is not None:
            otel_context.detach(token)  # type: ignore[arg-type]

    def set_inputs(self, inputs: object) -> None:
        """Record inputs (TelemetryContext): redacted, their secrets learned, on the span."""
        sanitizer = self.sanitizer
        text = to_json_text(sanitizer.sanitize(inputs))
        self.secrets = learned(self.secrets, text, lambda: inputs, sanitizer.redactor)
        self.attributes = {**self.attributes, ATTR_INPUTS: text}
        self.span.set_attribute(ATTR_INPUTS, text)

    def set_metadata(self, metadata: object) -> None:
        """Record metadata: redacted, its secrets learned; on the span when it ends."""
        sanitizer = self.sanitizer
        sanitized = sanitizer.sanitize(metadata)
        text = to_json_text(sanitized) if sanitized else None
        if text is not None:
            self.secrets = learned(self.secrets, text, lambda: metadata, sanitizer.redactor)
        self.metadata = text

    def set_error(self, status: str, message: str | None) -> None:
        self.status = status
        self.error = None if message is None else self.sanitizer.sanitize(message)

    def record_exception(self, exc: BaseException) -> None:
        """Status and message from the exception, and a redacted exception event.

        An error status the code set before it raised (TelemetryContext.set_error or
        set_status) is kept, with its message if it gave one: the code knows best
        what went wrong. The exception still becomes the span's exception event.
        """
        text = _message_of(exc)
        status, message = _outcome(exc, text)
        self.error_type = _type_text(type(exc), qualified=True)
        kept = self.status in ERROR_STATUSES
        if not kept:
            self.status = status  # before anything that can fail: never a false success
        if not kept or self.error is None:
            self.error = (
                None
                if message is None
                else self.sanitizer.sanitize(
                    hide_secret_args(exc, self.sanitizer.redactor, message)
                )
            )
        if status in ERROR_STATUSES:
            self.span.add_event("exception", self.exception_event(exc, text))

    def exception_event(
        self, exc: BaseException, text: str | None = None, *, escaped: bool = True
    ) -> dict[str, Any]:
        """The attributes of an exception event, as the semantic conventions name them:
        ``exception.type`` the qualified class name, ``exception.message`` the
        exception's own message only; text redacted, known secrets removed."""
        if text is None:
            text = _message_of(exc)
        try:
            stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        except Exception:  # noqa: BLE001 - traceback reads the class's name, which may raise
            stack = text
        redactor = self.sanitizer.redactor
        sanitize = self.sanitizer.sanitize
        secrets = self.secrets
        return {
            "exception.type": scrub(_type_text(type(exc), qualified=True), secrets),
            "exception.message": scrub(sanitize(hide_secret_args(exc, redactor, text)), secrets),
            "exception.stacktrace": scrub(
                sanitize(hide_secret_args(exc, redactor, stack)), secrets
            ),
            "exception.escaped": escaped,
        }

    def end(self, end_time: int | None = None) -> None:
        """Complete the record, put it on the span (its projection) and end the span
        with it: the file's entry is made from the record (see betty_otel._record)."""
        execution_ended(self.metrics, self.status, self.error_type)  # never raises
        ends = self.outcome(self.status)
        if self.secrets:
            self.error = ends.get(ATTR_ERROR)  # the span's status says it too
        record = {**self.attributes, **ends}
        span = self.span
        # Attributes user code added may have evicted ours (the SDK's count limit):
        # then all of the record goes on again, as the newest.
        span.set_attributes(record if self.touched else ends)
        if self.status in ERROR_STATUSES or self.asked_status is not None:
            span.set_status(self._span_status())
        self.current = None
        end_with_record(span, record, end_time)

    def outcome(self, status: str) -> dict[str, Any]:
        """The record's ``betty.*`` outcome as of now, with status: error message and
        metadata, the execution's known secrets removed (the inputs keep what redaction
        left: they are where the secrets were learned). The in-flight record asks for
        it too, from its own thread: it reads, never changes, the run."""
        ends: dict[str, Any] = {ATTR_STATUS: status}
        error, metadata, secrets = self.error, self.metadata, self.secrets
        if error is not None:
            ends[ATTR_ERROR] = scrub(error, secrets) if secrets else error
        if metadata is not None:
            ends[ATTR_METADATA] = scrub_json_text(metadata, secrets) if secrets else metadata
        return ends

    def _span_status(self) -> Status:
        """ERROR with the message for a failed execution, else the status user code
        asked for, its description redacted."""
        status = self.status
        asked = self.asked_status
        if status in ERROR_STATUSES or asked is None:
            return span_status_for(status, self.error)
        if asked.description is None:
            return asked
        description = scrub(self.sanitizer.sanitize(asked.description), self.secrets)
        return Status(asked.status_code, description)


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
        run = Run(tracer.start_span(skill, context, attributes=attributes), sanitizer, attributes)
    except Exception:  # noqa: BLE001 - telemetry must never break the host program
        internal_error("starting a span")
        return None
    run.inflight = track(run)  # never raises
    run.metrics = execution_started(skill, attributes.get(ATTR_CALLER, DEFAULT_CALLER))
    return run


def finish_run(run: Run, exc: BaseException | None = None, result: object = None) -> None:
    """Make the span no longer current, record the outcome and end the span; never raises.

    If recording the outcome fails, the span still ends (with what it has), so the
    execution is not missing from the file.
    """
    run.detach()
    if not claim(run.inflight):  # never raises
        return  # recorded already, at exit
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
