"""The span user code sees as current inside a recorded execution.

``trace.get_current_span()`` (and ``TelemetryContext.span``) inside an execution is a
`CurrentSpan`: an OpenTelemetry API span over the execution's real span, so nesting,
propagation and log correlation work as usual, and everything code may do to a span
goes on to the real one, except what would change or leak betty_otel's record of the
execution (see `betty_otel._record`):

- ``end()`` does nothing: the execution ends its span when it ends, with its outcome,
  exactly once (a call that ends its span and then raises is a failure);
- the ``betty.*`` keys of the entry (skill, caller, status, inputs, error message,
  metadata) are betty_otel's: writes to them are ignored;
- everything else goes through redaction first, as betty_otel's own data does
  (attribute values, event and link attributes, names, status descriptions), and the
  execution's known secrets (`betty_otel._known_secrets`) are removed from it;
- ``set_status`` takes effect when the execution ends, unless its outcome is an error
  (then the span status says so, as the entry does);
- ``record_exception`` records the event betty_otel records for an exception.

Reading (``attributes``, ``name``, ``resource``, ...) reads the real span, with the
execution's own ``betty.*`` attributes as betty_otel records them. Nothing here raises
into user code: a failure is logged and counted, as everywhere in betty_otel.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import SpanContext, Status, StatusCode
from opentelemetry.util import types

from betty_otel._entry import ENTRY_ATTRIBUTES
from betty_otel._errors import internal_error
from betty_otel._known_secrets import scrub, scrub_values
from betty_otel._redact import REDACTED

if TYPE_CHECKING:
    from betty_otel._run import Run

__all__ = ["CurrentSpan"]


class CurrentSpan(trace.Span):
    """An execution's span as user code sees it; see the module docstring."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def get_span_context(self) -> SpanContext:
        return self.run.span.get_span_context()

    def is_recording(self) -> bool:
        return self.run.span.is_recording()

    def end(self, end_time: int | None = None) -> None:
        """Nothing: the execution ends its span when it ends (see the module docstring)."""

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        """Set attributes on the span, redacted, except the entry's (ignored)."""
        run = self.run
        try:
            run.touched = True  # they may evict betty_otel's: Run puts its own back
            kept = {key: value for key, value in attributes.items() if key not in ENTRY_ATTRIBUTES}
            if kept:
                run.span.set_attributes(self._redacted(kept))
        except Exception:  # noqa: BLE001 - telemetry must never break the host program
            internal_error("setting attributes on the current span")

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        self.set_attributes({key: value})

    def _redacted(self, attributes: Mapping[str, Any]) -> dict[str, Any]:
        """Attributes as redaction leaves them: a secret name's value whole, secrets in
        text (also in sequences of text) replaced, the known secrets removed."""
        sanitizer = self.run.sanitizer
        is_secret_key = sanitizer.redactor.is_secret_key
        redacted: dict[str, Any] = {}
        for key, value in attributes.items():
            if isinstance(key, str) and is_secret_key(key):
                redacted[key] = REDACTED
            elif isinstance(value, str):
                redacted[key] = sanitizer.sanitize(value)
            elif isinstance(value, (list, tuple)):
                redacted[key] = [
                    sanitizer.sanitize(item) if isinstance(item, str) else item for item in value
                ]
            else:
                redacted[key] = value
        secrets = self.run.secrets
        return scrub_values(redacted, secrets) if secrets else redacted

    def _text(self, text: str) -> str:
        """Text (a name) redacted, the known secrets removed."""
        run = self.run
        return scrub(run.sanitizer.sanitize(text), run.secrets)

    def add_event(
        self,
        name: str,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
    ) -> None:
        """Add an event, its name and attributes redacted."""
        run = self.run
        try:
            redacted = self._redacted(attributes) if attributes else attributes
            run.span.add_event(self._text(name), redacted, timestamp)
        except Exception:  # noqa: BLE001 - telemetry must never break the host program
            internal_error("adding an event to the current span")

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        """Record the exception event betty_otel records (redacted); the execution's
        outcome is still what its code returns or raises."""
        run = self.run
        try:
            event: dict[str, Any] = run.exception_event(exception, escaped=escaped)
            if attributes:
                event.update(self._redacted(attributes))
            run.span.add_event("exception", event, timestamp)
        except Exception:  # noqa: BLE001 - telemetry must never break the host program
            internal_error("recording an exception on the current span")

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        try:
            self.run.span.add_link(context, self._redacted(attributes) if attributes else None)
        except Exception:  # noqa: BLE001 - telemetry must never break the host program
            internal_error("adding a link to the current span")

    def update_name(self, name: str) -> None:
        try:
            self.run.span.update_name(self._text(name))
        except Exception:  # noqa: BLE001 - telemetry must never break the host program
            internal_error("renaming the current span")

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """Asked for the span when the execution ends, as the SDK takes it: an OK status
        is final, UNSET changes nothing. An error outcome's status wins."""
        run = self.run
        try:
            asked = run.asked_status
            if asked is not None and asked.status_code is StatusCode.OK:
                return
            if not isinstance(status, Status):
                status = Status(status, description)
            if status.status_code is not StatusCode.UNSET:
                run.asked_status = status
        except Exception:  # noqa: BLE001 - telemetry must never break the host program
            internal_error("setting the status of the current span")

    @property
    def attributes(self) -> Mapping[str, Any]:
        """The real span's attributes, with the execution's own as betty_otel records them."""
        run = self.run
        held = getattr(run.span, "attributes", None)
        return MappingProxyType({**(held or {}), **run.attributes})

    def __getattr__(self, name: str) -> Any:
        """Everything else a span shows (name, resource, events, ...) is the real span's."""
        if name.startswith("_") or name == "run":
            raise AttributeError(name)
        return getattr(self.run.span, name)
