"""An execution timed elsewhere (TelemetryCapture.capture, ``betty-telemetry capture``).

`manual_execution` checks a capture's arguments, as the original skill did, and turns
them into what its span carries: the betty.* attributes (redacted) and the start and end
times. The span path hands these to a tracer; the direct path (`betty_otel._direct`)
writes the entry they make without one. Both start here, so both write the same entry.
The sanitizer is imported only when there is something to redact: a plain capture
from a shell script stays quick.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping

from betty_otel._entry import (
    ATTR_CALLER,
    ATTR_ERROR,
    ATTR_INPUTS,
    ATTR_METADATA,
    ATTR_SKILL,
    ATTR_STATUS,
    validate_duration,
    validate_mapping,
    validate_status,
    validate_text,
)

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: a capture does not import typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ManualExecution", "manual_execution"]


class ManualExecution:
    """A checked capture: the attributes and times of its span, its status and message."""

    __slots__ = ("attributes", "end", "error", "skill", "start", "status")

    def __init__(
        self,
        skill: str,
        status: str,
        error: str | None,
        attributes: dict[str, Any],
        start: int,
        end: int,
    ) -> None:
        self.skill = skill
        self.status = status
        self.error = error
        """The redacted error message (betty.error_message), or None."""
        self.attributes = attributes
        self.start = start
        self.end = end


def manual_execution(
    skill: str,
    status: str,
    duration_ms: float,
    caller: str,
    inputs: Mapping[str, Any] | None = None,
    error_message: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> ManualExecution:
    """One execution that ended now and took duration_ms, checked and redacted.

    Raises:
        ValueError: an invalid status (``Invalid status: X. Must be one of: ...``),
            a negative or non-finite duration, an empty skill or caller, a duration
            reaching back before 1970.
        TypeError: a value of the wrong type (duration not a number, inputs or
            metadata not a dict, error_message not a string).
    """
    validate_text("skill", skill, strict=True)
    validate_text("caller", caller, strict=True)
    status = validate_status(status)
    duration = validate_duration(duration_ms)
    inputs_copy = validate_mapping("inputs", inputs)
    metadata_copy = validate_mapping("metadata", metadata)
    given: object = error_message  # callers without type checking pass anything
    if given is not None and not isinstance(given, str):
        msg = f"error_message must be a string or None, got {type(error_message).__name__}"
        raise TypeError(msg)
    end = time.time_ns()
    if duration * 1_000_000 > end:
        msg = f"duration_ms must not reach back before 1970, got {duration_ms!r}"
        raise ValueError(msg)
    start = end - round(duration * 1_000_000)
    attributes: dict[str, Any] = {ATTR_SKILL: skill, ATTR_CALLER: caller, ATTR_STATUS: status}
    error = None
    if inputs_copy or metadata_copy or error_message is not None:
        error = _redact_into(attributes, inputs_copy, error_message, metadata_copy)
    return ManualExecution(skill, status, error, attributes, start, end)


def _redact_into(
    attributes: dict[str, Any],
    inputs: dict[Any, Any],
    error_message: str | None,
    metadata: dict[Any, Any],
) -> str | None:
    """Put the redacted inputs, error message and metadata into attributes; return the
    message. What redaction removed from the inputs and metadata is also removed from
    the message and the metadata (see `betty_otel._known_secrets`)."""
    # Only now: the sanitizer and its secret rules are most of this path's imports.
    from betty_otel._known_secrets import NO_SECRETS, learned, scrub, scrub_json_text  # noqa: PLC0415
    from betty_otel._sanitize import default_sanitizer, to_json_text  # noqa: PLC0415

    sanitizer = default_sanitizer()
    redactor = sanitizer.redactor
    secrets = NO_SECRETS
    texts = {}
    for key, raw in ((ATTR_INPUTS, inputs), (ATTR_METADATA, metadata)):
        sanitized = sanitizer.sanitize(raw) if raw else None
        if sanitized:
            texts[key] = text = to_json_text(sanitized)
            secrets = learned(secrets, text, functools.partial(dict, raw), redactor)
    attributes.update(texts)
    if secrets and ATTR_METADATA in texts:
        attributes[ATTR_METADATA] = scrub_json_text(texts[ATTR_METADATA], secrets)
    if error_message is None:
        return None
    error = attributes[ATTR_ERROR] = scrub(sanitizer.sanitize(error_message), secrets)
    return error
