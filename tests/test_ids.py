"""Span ids and $TRACEPARENT (`betty_otel._ids`), one reading for every path.

- New ids are random and never zero, as the SDK's RandomIdGenerator makes them; a
  child of a remote parent keeps its trace id.
- ``traceparent`` is read as OpenTelemetry's W3C propagator reads it: the span path
  (`betty_otel.propagation.environment_context`) and the capture's direct path
  (`environment_traceparent`) accept the same headers and name the same parent.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from betty_otel._ids import (
    ENV_TRACEPARENT,
    Traceparent,
    environment_traceparent,
    new_ids,
    parse_traceparent,
)
from betty_otel.propagation import environment_context

TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"


def test_new_ids_are_a_128_bit_trace_id_and_a_64_bit_span_id_never_zero() -> None:
    for _ in range(200):
        trace_id, span_id = new_ids()
        assert 0 < trace_id < 1 << 128
        assert 0 < span_id < 1 << 64


def test_new_ids_keep_a_given_trace_id_and_draw_a_new_span_id_each_time() -> None:
    spans = {new_ids(7)[1] for _ in range(50)}
    assert {new_ids(7)[0] for _ in range(5)} == {7}
    assert len(spans) == 50  # 64 random bits: a repeat here is a broken generator


@pytest.mark.faults
def test_ids_are_never_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    """As RandomIdGenerator: a zero draw (injected) is drawn again; a given trace id is kept."""
    draws = iter([0, 0, 5, 0, 7, 0, 9])
    monkeypatch.setattr(os, "urandom", lambda size: next(draws).to_bytes(size, "big"))
    assert new_ids() == (5, 7)
    assert new_ids(3) == (3, 9)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"00-{TRACE}-{SPAN}-01", Traceparent(int(TRACE, 16), int(SPAN, 16), 1)),
        (f"00-{TRACE}-{SPAN}-00", Traceparent(int(TRACE, 16), int(SPAN, 16), 0)),
        (f" \t00-{TRACE}-{SPAN}-01 \t", Traceparent(int(TRACE, 16), int(SPAN, 16), 1)),
        (f"00-{TRACE}-{SPAN}-01\n", Traceparent(int(TRACE, 16), int(SPAN, 16), 1)),
        (f"01-{TRACE}-{SPAN}-03-later-fields", Traceparent(int(TRACE, 16), int(SPAN, 16), 3)),
        (f"fe-{TRACE}-{SPAN}-ff", Traceparent(int(TRACE, 16), int(SPAN, 16), 255)),
    ],
    ids=[
        "sampled",
        "not sampled",
        "blanks around",
        "one final newline",
        "later version, extra fields",
        "flags ff",
    ],
)
def test_a_valid_traceparent_names_its_parent_and_flags(header: str, expected: Traceparent) -> None:
    assert parse_traceparent(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero span id
        f"ff-{TRACE}-{SPAN}-01",  # version ff is invalid
        f"00-{TRACE}-{SPAN}-01-extra",  # version 00 takes no more fields
        f"00-{TRACE.upper()}-{SPAN}-01",  # upper-case hex
        f"00-{TRACE[:-1]}-{SPAN}-01",  # 31 digits
        f"00-{TRACE}0-{SPAN}-01",  # 33 digits
        f"00-{TRACE}-{SPAN[:-1]}-01",  # 15 digits
        f"00-{TRACE}-{SPAN}-1",  # one-digit flags
        f"0-{TRACE}-{SPAN}-01",  # one-digit version
        f"00-{TRACE}-{SPAN}-01x",  # junk after the flags
        f"00_{TRACE}_{SPAN}_01",
        f"01-{TRACE}-{SPAN}-01-{'x' * 500}",  # over 512 characters
        "not a traceparent",
    ],
)
def test_an_invalid_traceparent_names_no_parent(header: str | None) -> None:
    assert parse_traceparent(header) is None
    assert environment_traceparent({} if header is None else {ENV_TRACEPARENT: header}) is None
    assert environment_context({} if header is None else {ENV_TRACEPARENT: header}) is None


def test_a_traceparent_of_exactly_512_characters_is_read() -> None:
    header = f"01-{TRACE}-{SPAN}-01-"
    header += "x" * (512 - len(header))
    assert parse_traceparent(header) == Traceparent(int(TRACE, 16), int(SPAN, 16), 1)


def test_the_environment_traceparent_is_read_from_os_environ_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRACEPARENT", f"00-{TRACE}-{SPAN}-01")
    assert environment_traceparent() == (int(TRACE, 16), int(SPAN, 16), 1)
    monkeypatch.delenv("TRACEPARENT")
    assert environment_traceparent() is None


traceparents = st.one_of(
    st.text(max_size=80),
    st.builds(
        "{}{}-{}-{}-{}{}{}".format,
        st.sampled_from(["", " ", "\t"]),
        st.sampled_from(["00", "01", "ff", "fe", "0", "AB", "0g"]),
        st.sampled_from(["0" * 32, "A" * 32, "ab" * 15])
        | st.text("0123456789abcdef", min_size=32, max_size=32),
        st.sampled_from(["0" * 16, "ab" * 7])
        | st.text("0123456789abcdef", min_size=16, max_size=16),
        st.sampled_from(["01", "00", "ff", "1"]),
        st.sampled_from(["", "-", "-x", "-what-ever", " ", " \t", "\n", "x"]),
        st.sampled_from(["", "\n", "x" * 500]),
    ),
)


def tracestate_of_length(length: int) -> str:
    """A well-formed tracestate of length characters: up to 32 members of up to 256-character
    values, as W3C allows."""
    members = [f"k{index:02d}=" for index in range(32)]
    room = length - sum(map(len, members)) - (len(members) - 1)
    values = [min(256, max(room - 256 * index, 0)) for index in range(32)]
    return ",".join(member + "v" * size for member, size in zip(members, values, strict=True))


tracestates = st.sampled_from(
    ["", "a=b", "a=b, c=d", "!!bad!!", *map(tracestate_of_length, (8191, 8192, 8193))]
)


@settings(max_examples=400, deadline=None)
@given(traceparent=traceparents, tracestate=tracestates)
def test_traceparent_is_read_as_the_w3c_propagator_reads_it(
    traceparent: str, tracestate: str
) -> None:
    """Both paths name the parent (ids, flags, trace state) OpenTelemetry's propagator
    extracts from the same headers, and no parent where it extracts none."""
    expected = trace.get_current_span(
        TraceContextTextMapPropagator().extract(
            {"traceparent": traceparent, "tracestate": tracestate}
        )
    ).get_span_context()
    environ = {"TRACEPARENT": traceparent, "TRACESTATE": tracestate}
    context = environment_context(environ)
    parent = environment_traceparent(environ)
    if not expected.is_valid:
        assert context is None
        assert parent is None
        return
    assert context is not None
    assert trace.get_current_span(context).get_span_context() == expected
    assert parent == (expected.trace_id, expected.span_id, expected.trace_flags)


@pytest.mark.parametrize(
    ("tracestate", "members"),
    [
        ("", 0),
        ("vendor=opaque", 1),
        ("=,=,;;\x01", 0),
        (tracestate_of_length(8191), 32),
        (tracestate_of_length(8192), 32),
        (tracestate_of_length(8193), 0),
    ],
    ids=["empty", "one member", "malformed", "8191 chars", "8192 chars", "8193 chars"],
)
def test_tracestate_is_kept_emptied_or_dropped_as_the_w3c_propagator_does(
    tracestate: str, members: int
) -> None:
    """Well-formed and at most 8192 characters: kept; malformed: empty; longer: dropped."""
    headers = {"traceparent": f"00-{TRACE}-{SPAN}-01", "tracestate": tracestate}
    expected = trace.get_current_span(TraceContextTextMapPropagator().extract(headers))
    context = environment_context({key.upper(): value for key, value in headers.items()})
    assert context is not None
    state = trace.get_current_span(context).get_span_context().trace_state
    assert state == expected.get_span_context().trace_state
    assert len(state) == members
