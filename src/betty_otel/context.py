"""TelemetryContext: record a block of code (``with`` or ``async with``) as one execution.

Like the decorator, it records through `betty_otel._run.Run`. What the block says
explicitly (set_status, set_error) is its outcome, also when it then raises: the
original Betty skill's pattern ``ctx.set_error(str(e)); raise`` records the
message the code set, and the exception still becomes the span's exception event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span

from betty_otel._entry import (
    ATTR_CALLER,
    ATTR_SKILL,
    validate_mapping,
    validate_status,
    validate_text,
)
from betty_otel._errors import handle_internal_errors
from betty_otel._run import DEFAULT_CALLER, Run, finish_run, start_run, text_of
from betty_otel._sanitize import Sanitizer, default_sanitizer
from betty_otel._setup import current_pipeline
from betty_otel.propagation import detect_caller

__all__ = ["TelemetryContext"]


class TelemetryContext:
    """Record a block of code as one execution: ``with`` or ``async with``.

    An exception inside is recorded (status failure, timeout or error, with its
    message) and re-raised; an error status or message the block set before it
    raised is kept. Nested contexts and decorated calls become children.

    Args:
        skill: the entry's skill.
        caller: who runs it.
        inputs: inputs to record (redacted); more can be set with set_inputs().
        metadata: extra facts to record (redacted); more with set_metadata().
        sanitize_keys: extra key names to redact, on top of the defaults.
        detect_caller: the caller is $BETTY_CALLER, else the enclosing execution's
            skill, else caller; $BETTY_WORKFLOW, $BETTY_AGENT and $BETTY_EXECUTION_ID
            go into the metadata (as workflow, agent, execution_id), read on entering.

    Raises:
        ValueError: skill or caller is empty.
        TypeError: inputs or metadata is not a mapping.
    """

    def __init__(
        self,
        skill: str,
        caller: str = DEFAULT_CALLER,
        inputs: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        sanitize_keys: Iterable[str] = (),
        detect_caller: bool = False,
    ) -> None:
        validate_text("skill", skill)
        validate_text("caller", caller)
        keys = tuple(sanitize_keys)
        self.skill = skill
        self.caller = caller
        self.detect_caller = detect_caller
        self._sanitizer = Sanitizer(keys) if keys else default_sanitizer()
        self._inputs = validate_mapping("inputs", inputs)
        self._metadata = validate_mapping("metadata", metadata)
        self._run: Run | None = None
        self._status: str | None = None
        self._error: str | None = None

    @property
    def span(self) -> Span:
        """The OTel span of the running block, as code sees it (the current span
        inside it; see `betty_otel._current`); a non-recording span outside it."""
        run = self._run
        current = None if run is None else run.current
        return current if current is not None else trace.INVALID_SPAN

    def set_inputs(self, inputs: Mapping[str, Any]) -> None:
        """Replace the recorded inputs (redacted before they reach the span)."""
        self._inputs = validate_mapping("inputs", inputs)
        if self._run is not None:
            self._put_inputs(self._run)

    def set_metadata(self, metadata: Mapping[str, Any]) -> None:
        """Merge keys into the recorded metadata (redacted at the end of the block)."""
        self._metadata.update(validate_mapping("metadata", metadata))

    def set_status(self, status: str) -> None:
        """Set the outcome explicitly; one of success, failure, timeout, error, pending.

        An error status (failure, timeout, error) is kept if the block then raises;
        success or pending gives way to the exception's outcome.

        Raises:
            ValueError: not one of the five statuses.
        """
        self._status = validate_status(status)

    def set_error(self, message: str) -> None:
        """Record an error message; the status becomes failure unless it is error or timeout.

        Kept if the block then raises (the exception's type still reaches the span).
        """
        self._error = text_of(message)
        if self._status not in ("error", "timeout"):
            self._status = "failure"

    def _put_inputs(self, run: Run) -> None:
        with handle_internal_errors("recording inputs"):
            run.set_inputs(self._inputs)

    def __enter__(self) -> TelemetryContext:
        if self._run is not None:
            msg = f"TelemetryContext({self.skill!r}) is already running; create one per block"
            raise RuntimeError(msg)
        current = current_pipeline()
        if current.tracer is None:
            return self
        caller = self.caller
        if self.detect_caller:
            with handle_internal_errors("detecting the caller"):
                caller, found = detect_caller(caller)
                self._metadata = {**found, **self._metadata}  # the block's own keys win
        run = start_run(
            current.tracer,
            self.skill,
            {ATTR_SKILL: self.skill, ATTR_CALLER: caller},
            self._sanitizer,
            current.remote_parent,
        )
        if run is not None:
            if self._inputs:
                self._put_inputs(run)
            if self._metadata:  # known now: its record while in flight holds it too
                with handle_internal_errors("recording metadata"):
                    run.set_metadata(self._metadata)
            run.attach()
            self._run = run
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        run, self._run = self._run, None
        if run is None:
            return
        with handle_internal_errors("recording the outcome"):
            if self._status is not None:
                run.set_error(self._status, self._error)
            if self._metadata:
                run.set_metadata(self._metadata)
        finish_run(run, exc)  # without an exception: a None result, which keeps the status

    async def __aenter__(self) -> TelemetryContext:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)
