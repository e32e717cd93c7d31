"""The entry schema: statuses, validation, span -> entry (timestamps: `betty_otel._timestamps`).

`execution_entry` is the only place an execution becomes an entry (in `span_to_entry`, from
betty_otel's record of the execution (see `betty_otel._record`) or a span's attributes, or
from what a span would hold on TelemetryCapture's direct path), and
`betty_otel._replay` the only place an entry becomes a span again, so the file and any
OTel backend always describe an execution the same way. Nothing here imports OpenTelemetry:
reading and writing the log need neither its SDK nor its API.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Mapping
from datetime import tzinfo

from betty_otel._jsontext import JSONDecodeError, loads
from betty_otel._timestamps import format_timestamp

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: a capture does not import typing
if TYPE_CHECKING:
    from typing import Any, Final, Protocol, TypeGuard

    from opentelemetry.sdk.trace import ReadableSpan

    from betty_otel._record import Record

    class SpanOutcome(Protocol):
        """What the mapping reads of a span's status (an SDK ``Status`` is one)."""

        @property
        def is_ok(self) -> bool: ...  # False for ERROR

        @property
        def description(self) -> str | None: ...


__all__ = [
    "ATTR_CALLER",
    "ATTR_ERROR",
    "ATTR_INPUTS",
    "ATTR_METADATA",
    "ATTR_SKILL",
    "ATTR_STATUS",
    "ENTRY_ATTRIBUTES",
    "ENTRY_KEYS",
    "ERROR_STATUSES",
    "NUMBER_TYPES",
    "STATUSES",
    "STATUS_SYNONYMS",
    "UNREADABLE",
    "canonical_status",
    "entry_error",
    "entry_signature",
    "entry_status",
    "execution_entry",
    "has_foreign_text",
    "is_finite_number",
    "is_number",
    "is_status",
    "number_text",
    "span_to_entry",
    "validate_duration",
    "validate_mapping",
    "validate_status",
    "validate_text",
    "value_text",
]

ENTRY_KEYS: Final = (
    *("timestamp", "skill", "status", "duration_ms", "caller", "inputs", "error_message"),
    *("metadata", "trace_id", "span_id", "parent_span_id"),
)
"""The keys of an entry, in the order betty_otel writes them."""

STATUSES: Final = ("success", "failure", "timeout", "error", "pending")
ERROR_STATUSES: Final = frozenset({"failure", "timeout", "error"})
"""Statuses that mark an execution as failed: the span status is ERROR."""

ATTR_SKILL: Final = "betty.skill"
ATTR_STATUS: Final = "betty.status"
ATTR_CALLER: Final = "betty.caller"
ATTR_INPUTS: Final = "betty.inputs"
ATTR_METADATA: Final = "betty.metadata"
ATTR_ERROR: Final = "betty.error_message"
ENTRY_ATTRIBUTES: Final = frozenset(
    (ATTR_SKILL, ATTR_CALLER, ATTR_STATUS, ATTR_INPUTS, ATTR_ERROR, ATTR_METADATA)
)
"""The span attributes an entry is made of: only betty_otel sets them."""
UNREADABLE: Final = "<unreadable>"
"""The key of the marker recorded for inputs or metadata that could not be read."""

_STATUS_SET: Final = frozenset(STATUSES)


def is_status(value: object) -> TypeGuard[str]:
    """One of the five STATUSES."""
    return isinstance(value, str) and value in _STATUS_SET


def validate_status(status: object) -> str:
    """Return status if it is one of STATUSES.

    Raises:
        ValueError: ``Invalid status: X. Must be one of: success, failure, ...``.
    """
    if is_status(status):
        return status
    msg = f"Invalid status: {status}. Must be one of: {', '.join(STATUSES)}"
    raise ValueError(msg)


def validate_text(name: str, value: object, *, strict: bool = False) -> str:
    """Return value if it is a non-empty string: the rule for a skill and a caller.

    strict is the original Betty skill's rule, kept by TelemetryCapture.capture and the
    CLI: a whitespace-only string is empty too, and a non-string is a TypeError.

    Raises:
        ValueError: ``<name> must be a non-empty string, got <value!r>``.
        TypeError: (strict) the same message, for a value that is not a string.
    """
    if isinstance(value, str) and (value.strip() if strict else value):
        return value
    msg = f"{name} must be a non-empty string, got {value!r}"
    raise (TypeError if strict and not isinstance(value, str) else ValueError)(msg)


def validate_duration(duration_ms: object, *, text: bool = False) -> float:
    """Return duration_ms as a float if it is a finite number >= 0.

    text: duration_ms is command-line text, read with float(); the messages then quote
    it as the CLI reports them (``Invalid duration_ms: '-1' must be a finite number >= 0``).

    Raises:
        TypeError: not a number (bool is not a number here); never with text.
        ValueError: negative, NaN or infinite; with text also not a number.
    """
    if text:
        try:
            value = float(str(duration_ms))
        except ValueError:
            msg = f"Invalid duration_ms: {duration_ms!r} is not a number"
            raise ValueError(msg) from None
    elif is_number(duration_ms):
        try:
            value = float(duration_ms)
        except OverflowError:  # an int beyond float's range, whose repr may be unmakeable
            msg = "duration_ms must be a finite number >= 0, got an int too large for a float"
            raise ValueError(msg) from None
    else:
        msg = f"duration_ms must be a number, got {type(duration_ms).__name__}"
        raise TypeError(msg)
    if not math.isfinite(value) or value < 0:
        msg = (
            f"Invalid duration_ms: {duration_ms!r} must be a finite number >= 0"
            if text
            else f"duration_ms must be a finite number >= 0, got {duration_ms!r}"
        )
        raise ValueError(msg)
    return value


def validate_mapping(name: str, value: object) -> dict[Any, Any]:
    """Check that inputs or metadata is a mapping (or None); return a dict copy of it.

    A user's Mapping may raise from len, iter or items: one that cannot be read
    becomes ``{"<unreadable>": "<unrepresentable T>"}``, so the entry says what
    happened and the user's exception never comes out of betty_otel.

    Raises:
        TypeError: ``<name> must be a dict or None, got <type>``.
    """
    if value is None:
        return {}
    mapping: Mapping[Any, Any] | None
    try:
        mapping = value if isinstance(value, Mapping) else None
    except Exception:  # noqa: BLE001 - a hostile __class__: it is not a mapping we can use
        mapping = None
    if mapping is None:
        msg = f"{name} must be a dict or None, got {_type_name(value)}"
        raise TypeError(msg)
    try:
        return dict(mapping)
    except Exception:  # noqa: BLE001 - the user's own mapping raised
        return {UNREADABLE: f"<unrepresentable {_type_name(value)}>"}


def _type_name(value: object) -> str:
    # Only when a value is rejected or unreadable: reading the log never loads _redact.
    from betty_otel._redact import type_name  # noqa: PLC0415

    return type_name(value)


NUMBER_TYPES: Final = (int, float)


def is_number(value: object) -> TypeGuard[int | float]:
    """An int or float that is not a bool: JSON's numbers as Python reads them."""
    return isinstance(value, NUMBER_TYPES) and not isinstance(value, bool)


def is_finite_number(value: object) -> TypeGuard[int | float]:
    """A number readers can compute with: finite as a double (not NaN, not Infinity, no
    integer beyond a double's range; ``json.load`` reads all three). Any other duration is
    shown as written and left out of the duration figures."""
    if isinstance(value, float):
        return math.isfinite(value)
    return is_number(value) and -_DOUBLE_MAX <= value <= _DOUBLE_MAX


_DOUBLE_MAX: Final = sys.float_info.max


def _json_attr(attributes: Mapping[str, Any], key: str) -> Any:
    """Decode a JSON-text attribute into an object; {} when absent or not an object."""
    text = attributes.get(key)
    if not isinstance(text, str):
        return {}
    try:
        value = loads(text)
    except JSONDecodeError:
        return {"_raw": text}
    return value if isinstance(value, dict) else {"_value": value}


def _outcome_status(outcome: SpanOutcome | None) -> str:
    """The status of a span that carries no betty.status: its span status says it."""
    return "success" if outcome is None or outcome.is_ok else "failure"


def _attribute_dict(span: ReadableSpan) -> dict[str, Any]:
    """The span's attributes as a plain dict: one C-level copy for an SDK span.

    ``get`` on the SDK's read-only view costs two Python calls a key; a span is
    read for about seven keys on every export.
    """
    attributes = span.attributes
    if attributes is None:
        return {}
    try:
        copied = attributes.copy()  # type: ignore[attr-defined] # dict, mappingproxy, SDK's
    except Exception:  # noqa: BLE001 - another Mapping: copy it item by item
        copied = None
    return copied if type(copied) is dict else dict(attributes)


def span_to_entry(
    span: ReadableSpan,
    *,
    record: Record | None = None,
    tz: tzinfo | None = None,
    all_spans: bool = False,
) -> dict[str, Any] | None:
    """Map a finished span to a Betty entry; None for a span that is not Betty's.

    The execution's content comes from betty_otel's record of it (given, or the one
    `record_of` finds while the span ends), its ids and times from the span: nothing
    code did to the span changes the entry. A span without a record (made by hand,
    or read back) is mapped from its attributes; one without ``betty.skill`` (other
    instrumentation in the process) maps to None unless all_spans (see
    `execution_entry`).
    """
    if record is None:
        # Spans only: the CLI's direct path (execution_entry) does not load _record.
        from betty_otel._record import record_of  # noqa: PLC0415

        record = record_of(span)
    outcome: SpanOutcome | None = None  # a record's betty.status says it all
    if record is None:
        record = _attribute_dict(span)
        if record.get(ATTR_SKILL) is None and not all_spans:
            return None
        outcome = span.status
    start = span.start_time or 0
    context = span.get_span_context()
    parent = span.parent
    return execution_entry(
        record,
        name=span.name,
        outcome=outcome,
        start=start,
        end=span.end_time or start,
        ids=(context.trace_id, context.span_id) if context else None,
        parent_span_id=None if parent is None else parent.span_id,
        tz=tz,
    )


def execution_entry(
    attributes: Mapping[str, Any],
    *,
    name: str,
    outcome: SpanOutcome | None,
    start: int,
    end: int,
    ids: tuple[int, int] | None,
    parent_span_id: int | None,
    tz: tzinfo | None = None,
) -> dict[str, Any]:
    """The entry of a finished execution, from what its span holds.

    attributes are the span's (``betty.*``), name and outcome its name and span status,
    start and end its times (ns), ids its (trace_id, span_id). A span without
    ``betty.skill`` (other instrumentation) has its name as the skill and its
    attributes (plain OTel scalars or sequences, already JSON-safe) as the metadata.
    """
    skill = attributes.get(ATTR_SKILL)
    if skill is None:
        skill = name
        status = _outcome_status(outcome)
        metadata: Any = {key: _plain(value) for key, value in attributes.items()}
    else:
        raw_status = attributes.get(ATTR_STATUS)
        status = raw_status if isinstance(raw_status, str) else _outcome_status(outcome)
        metadata = _json_attr(attributes, ATTR_METADATA) if ATTR_METADATA in attributes else {}
    error = attributes.get(ATTR_ERROR)
    if error is None and status in ERROR_STATUSES and outcome is not None and outcome.description:
        error = outcome.description
    return {
        "timestamp": format_timestamp(end, tz),
        "skill": str(skill),
        "status": status,
        "duration_ms": max(end - start, 0) / 1_000_000,
        "caller": str(attributes.get(ATTR_CALLER, "")),
        "inputs": _json_attr(attributes, ATTR_INPUTS),
        "error_message": None if error is None else str(error),
        "metadata": metadata,
        "trace_id": None if ids is None else f"{ids[0]:032x}",
        "span_id": None if ids is None else f"{ids[1]:016x}",
        "parent_span_id": None if parent_span_id is None else f"{parent_span_id:016x}",
    }


def _plain(value: object) -> Any:
    """OTel attribute values are scalars or tuples of scalars: make tuples lists."""
    return list(value) if isinstance(value, tuple) else value


def value_text(value: object) -> str:
    """An entry value as text: a string as it is, anything else as compact JSON, keys sorted.

    The one rule by which every reader (query, stats, the CLI, the report, export)
    shows and groups a value the schema does not expect: a skill ``{"b": 1, "a": 2}``
    is ``{"a":2,"b":1}`` everywhere, at any depth of nesting.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):  # as json.dump writes it
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    # Readers only: a capture writes without loading orjson, which _jsonout imports.
    from betty_otel._jsonout import json_bytes  # noqa: PLC0415

    return json_bytes(value, sort_keys=True).decode()


def number_text(value: float, digits: int = 1) -> str:
    """A number for people: thousands grouped, digits decimals. Past 10**15 (no duration
    in milliseconds is that long: a foreign value) in scientific notation, not 300 digits."""
    if abs(value) >= _LARGE:
        return f"{value:.{max(digits, 3)}e}"
    return f"{value:,.{digits}f}"


_LARGE: Final = 1e15


def has_foreign_text(entry: Mapping[str, Any]) -> bool:
    """True when the skill, status or caller is there but not text: readers show and
    group it as `value_text` (a note says so)."""
    return any(not isinstance(entry.get(key), (str, type(None))) for key in _TEXT_KEYS)


_TEXT_KEYS: Final = ("skill", "status", "caller")


def entry_signature(entry: Mapping[str, Any]) -> bytes:
    """The entry as compact JSON with sorted keys: equal entries, equal bytes."""
    from betty_otel._jsonout import json_bytes  # noqa: PLC0415 - readers only, as above

    return json_bytes(entry, sort_keys=True)


# Words other Betty tools write for the five statuses (compared case-insensitively, with
# "-" and spaces read as "_"). Readers give them Betty's meaning; writers never use them.
STATUS_SYNONYMS: Final[Mapping[str, str]] = {
    **dict.fromkeys(("success", "succeeded", "successful", "ok", "passed", "pass"), "success"),
    **dict.fromkeys(("completed", "complete", "done"), "success"),
    **dict.fromkeys(("failure", "failed", "fail", "failing"), "failure"),
    **dict.fromkeys(("error", "errored", "erred"), "error"),
    **dict.fromkeys(("timeout", "timed_out", "timedout", "time_out"), "timeout"),
    **dict.fromkeys(("pending", "running", "started", "in_progress", "queued"), "pending"),
}
"""Every word a real log holds for a status, mapped to the canonical status."""


@functools.lru_cache(maxsize=1024)
def canonical_status(word: str) -> str:
    """The canonical status a log's word means (``"Failed"`` -> ``"failure"``).

    An unknown word is returned as it is: it stays its own status, never success.
    """
    if word in _STATUS_SET:
        return word
    return STATUS_SYNONYMS.get(word.strip().lower().replace("-", "_").replace(" ", "_"), word)


def entry_status(entry: Mapping[str, Any]) -> object:
    """An entry's canonical status; a status that is not text is returned as it is."""
    status = entry.get("status")
    return canonical_status(status) if isinstance(status, str) else status


def entry_error(entry: Mapping[str, Any]) -> str | None:
    """An entry's error text: ``error_message``, else the old tools' ``error`` key."""
    for key in ("error_message", "error"):
        value = entry.get(key)
        if value is not None and value != "":
            return value_text(value)
    return None
