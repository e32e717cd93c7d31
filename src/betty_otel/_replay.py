"""An entry of the log as the span the live pipeline would have sent: what export replays.

The inverse of `betty_otel._entry.span_to_entry` for betty_otel's own entries. Old
tools' entries keep what they hold: ids missing or unreadable are derived from the
entry's content (stable, so a backend can deduplicate), a status word such as
``failed`` is its canonical status (an ERROR span), the error text under ``error``
is ``betty.error_message``, ``exit_code`` and ``execution_id`` have attributes of
their own, and every other top-level key is ``betty.legacy.<key>`` (the status word
too, when it is not the canonical status), sanitized like inputs. The OTel SDK is
imported only inside `entry_to_span`: reading the log needs none of it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Final

from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

from betty_otel._entry import (
    ATTR_CALLER,
    ATTR_ERROR,
    ATTR_INPUTS,
    ATTR_METADATA,
    ATTR_SKILL,
    ATTR_STATUS,
    ENTRY_KEYS,
    canonical_status,
    entry_error,
    entry_signature,
    entry_status,
    is_finite_number,
    value_text,
)
from betty_otel._span_status import span_status_for
from betty_otel._timestamps import entry_time

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

__all__ = ["ATTR_LEGACY", "ATTR_NOTE", "ATTR_TIMESTAMP", "LEGACY_ATTRIBUTES", "entry_to_span"]

_ENTRY_KEY_SET: Final = frozenset(ENTRY_KEYS)

_HEX: Final = frozenset("0123456789abcdef")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)
_OTLP_LAST: Final = 2**64 - 1
"""The last time OTLP can carry: nanoseconds since 1970 in 64 bits (2554-07-21)."""
ATTR_TIMESTAMP: Final = "betty.timestamp"
"""The entry's timestamp as written, on a span sent at another time (see ATTR_NOTE)."""
ATTR_NOTE: Final = "betty.note"
"""What export had to change to send an entry: its time, outside what OTLP carries."""
_TIME_NOTE: Final = (
    "the entry's timestamp is outside the times OTLP carries (1970 to 2554 UTC): the span"
    " is sent at the nearest one; betty.timestamp holds the time as written"
)


def _hex_id(value: object, digits: int) -> int | None:
    """A non-zero id from its lowercase hex text of exactly digits digits, else None."""
    if not isinstance(value, str) or len(value) != digits or not set(value) <= _HEX:
        return None
    number = int(value, 16)
    return number or None


def _derived_ids(entry: Mapping[str, Any]) -> tuple[int, int]:
    """Stable ids for an entry without its own: the same entry always gets the same ids."""
    digest = hashlib.blake2b(entry_signature(entry), digest_size=24).digest()
    return int.from_bytes(digest[:16], "big") or 1, int.from_bytes(digest[16:], "big") or 1


def _span_times(entry: Mapping[str, Any], otlp: bool) -> tuple[int, int, bool] | None:
    """(start, end) in ns since the epoch, and whether end was moved into OTLP's range.

    end is the timestamp, start end minus the duration. OTLP carries times from 1970
    to 2554 (unsigned 64-bit nanoseconds): with otlp, a time outside is moved to the
    nearest one (the span then says so, `ATTR_NOTE`), rather than failing its batch.
    """
    moment = entry_time(entry.get("timestamp"))
    if moment is None:
        return None
    delta = moment - _EPOCH
    exact = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    end = min(max(exact, 0), _OTLP_LAST) if otlp else exact
    duration = entry.get("duration_ms")
    start = end
    if is_finite_number(duration) and duration >= 0:
        # A duration longer than the time since 1970 (a bad entry) starts at 0.
        start = max(0, end - round(min(duration, end / 1_000_000) * 1_000_000))
    return start, end, end != exact


def _span_contexts(entry: Mapping[str, Any]) -> tuple[SpanContext, SpanContext | None]:
    """The span's context and its parent's, from the entry's ids (derived when missing)."""
    trace_id = _hex_id(entry.get("trace_id"), 32)
    span_id = _hex_id(entry.get("span_id"), 16)
    parent_id = _hex_id(entry.get("parent_span_id"), 16)
    if trace_id is None or span_id is None:
        derived_trace, derived_span = _derived_ids(entry)
        if trace_id is None:
            trace_id, parent_id = derived_trace, None
        span_id = span_id or derived_span
    flags = TraceFlags(TraceFlags.SAMPLED)
    context = SpanContext(trace_id, span_id, is_remote=False, trace_flags=flags)
    parent = (
        SpanContext(trace_id, parent_id, is_remote=False, trace_flags=flags)
        if parent_id is not None
        else None
    )
    return context, parent


ATTR_LEGACY: Final = "betty.legacy."
"""Prefix of the attributes of other top-level keys of an old tool's entry (exported only)."""
LEGACY_ATTRIBUTES: Final[Mapping[str, str]] = {
    "exit_code": "betty.exit_code",
    "execution_id": "betty.execution_id",
}
"""Old tools' keys with attributes of their own (Betty's exit code and execution id)."""


def _attribute_value(value: object) -> Any:
    """A sanitized JSON value as an OTel attribute value: a scalar as it is, else JSON text.

    (The sanitizer already made an integer beyond 64 bits text.)
    """
    if isinstance(value, (str, bool, int, float)):
        return value
    return value_text(value)


def _bounded_text(value: object) -> str:
    """`value_text` of a skill, status or caller as a span carries it (`bounded_text`)."""
    from betty_otel._leaves import bounded_text  # noqa: PLC0415 - as the sanitizer, below

    return bounded_text(value_text(value))


def _legacy_keys(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The entry's keys outside ENTRY_KEYS (``error`` only when it is not the error text),
    and the status word when it is not the canonical status."""
    extra = {key: value for key, value in entry.items() if key not in _ENTRY_KEY_SET}
    if entry.get("error_message") in (None, ""):
        extra.pop("error", None)  # entry_error reads it: it is betty.error_message
    status = entry.get("status")
    if isinstance(status, str) and canonical_status(status) != status:
        extra["status"] = status
    return extra


def _span_attributes(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The betty.* attributes of an entry (inputs, metadata, error, other keys sanitized again)."""
    # Only the way back to spans sanitizes: reading the log does not load the sanitizer.
    from betty_otel._sanitize import default_sanitizer, to_json_text  # noqa: PLC0415

    sanitizer = default_sanitizer()
    attributes: dict[str, Any] = {}
    names = (ATTR_SKILL, ATTR_STATUS, ATTR_CALLER)
    values = (entry.get("skill"), entry_status(entry), entry.get("caller"))
    for name, value in zip(names, values, strict=True):
        if value is not None:
            attributes[name] = _bounded_text(value)
    for key, name in (("inputs", ATTR_INPUTS), ("metadata", ATTR_METADATA)):
        value = entry.get(key)
        if value not in (None, {}):
            attributes[name] = to_json_text(sanitizer.sanitize(value))
    error = entry_error(entry)
    if error is None and entry.get("error_message") is not None:
        error = value_text(entry["error_message"])  # an empty message is kept as it is
    if error is not None:
        attributes[ATTR_ERROR] = value_text(sanitizer.sanitize(error))
    extra = sanitizer.sanitize(_legacy_keys(entry))
    for key, value in extra.items() if isinstance(extra, dict) else ():
        name = LEGACY_ATTRIBUTES.get(key, ATTR_LEGACY + key)
        attributes.setdefault(name, _attribute_value(value))
    return attributes


def entry_to_span(
    entry: Mapping[str, Any],
    resource: Resource,
    scope: InstrumentationScope,
    *,
    otlp: bool = False,
) -> ReadableSpan | None:
    """The span of one entry, as the live pipeline would have sent it; None without a time.

    Entries of other tools work too (see the module's docstring); a missing or
    negative duration gives a zero-length span. With otlp (for a span to send), a
    time OTLP cannot carry is moved to the nearest it can, and the span says so
    (`ATTR_NOTE`); without, the span has the entry's time, whatever it is.
    """
    # The SDK only where spans are built: readers of the log never load it.
    from opentelemetry.sdk.trace import ReadableSpan  # noqa: PLC0415

    times = _span_times(entry, otlp)
    if times is None:
        return None
    start, end, moved = times
    context, parent = _span_contexts(entry)
    attributes = _span_attributes(entry)
    if moved:
        attributes[ATTR_TIMESTAMP] = value_text(entry.get("timestamp"))
        attributes[ATTR_NOTE] = _TIME_NOTE
    skill = entry.get("skill")
    return ReadableSpan(
        name=_bounded_text(skill) if skill is not None else "unknown",
        context=context,
        parent=parent,
        resource=resource,
        attributes=attributes,
        kind=SpanKind.INTERNAL,
        status=span_status_for(entry_status(entry), attributes.get(ATTR_ERROR)),
        start_time=start,
        end_time=end,
        instrumentation_scope=scope,
    )
