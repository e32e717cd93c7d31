"""The entry schema both ways: entry -> span -> entry gives the entry back."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from betty_otel._entry import STATUSES, span_to_entry
from betty_otel._replay import entry_to_span
from betty_otel._sanitize import default_sanitizer
from helpers import ENTRY_KEYS

RESOURCE = Resource.create({"service.name": "test"})
SCOPE = InstrumentationScope("betty_otel", "0")

_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=12,
)
_objects = st.dictionaries(_text, _json, max_size=5)


def _hex(digits: int) -> st.SearchStrategy[str]:
    return st.integers(1, 16**digits - 1).map(lambda number: f"{number:0{digits}x}")


@st.composite
def own_entries(draw: st.DrawFn) -> dict[str, Any]:
    """Entries as betty_otel writes them: UTC microsecond timestamps, durations in whole
    nanoseconds, sanitized inputs, metadata and error text, keys in the schema's order."""
    moment = draw(
        st.datetimes(datetime(1971, 1, 1), datetime(9000, 1, 1), timezones=st.just(timezone.utc))
    )
    sanitizer = default_sanitizer()
    error = draw(st.none() | _text.map(sanitizer.sanitize))
    return {
        "timestamp": moment.isoformat(timespec="microseconds"),
        "skill": draw(_text.filter(str.strip)),
        "status": draw(st.sampled_from(STATUSES)),
        "duration_ms": draw(st.integers(0, 10**15)) / 1_000_000,
        "caller": draw(_text.filter(str.strip)),
        "inputs": sanitizer.sanitize(draw(_objects)),
        "error_message": error,
        "metadata": sanitizer.sanitize(draw(_objects)),
        "trace_id": draw(_hex(32)),
        "span_id": draw(_hex(16)),
        "parent_span_id": draw(st.none() | _hex(16)),
    }


@settings(max_examples=200, deadline=None)
@given(entry=own_entries())
def test_entry_to_span_is_the_inverse_of_span_to_entry(entry: dict[str, Any]) -> None:
    assert list(entry) == list(ENTRY_KEYS)
    span = entry_to_span(entry, RESOURCE, SCOPE)
    assert span is not None
    assert span_to_entry(span) == entry


def test_an_entry_without_a_readable_time_has_no_span() -> None:
    for timestamp in (None, "yesterday", 12):
        entry = {"timestamp": timestamp, "skill": "a", "status": "success"}
        assert entry_to_span(entry, RESOURCE, SCOPE) is None


def test_entries_without_ids_get_stable_ids_of_their_own() -> None:
    entry = {"timestamp": "2025-10-24T14:30:45.123456+00:00", "skill": "a", "status": "failed"}
    first, again = (entry_to_span(entry, RESOURCE, SCOPE) for _ in range(2))
    other = entry_to_span({**entry, "skill": "b"}, RESOURCE, SCOPE)
    assert first is not None
    assert again is not None
    assert other is not None
    assert first.context == again.context
    assert first.context.trace_id != other.context.trace_id
    assert first.parent is None
