"""The log's JSON text has two backends that must agree: orjson (once a process has loaded
it) and the standard library's json held to orjson's rules (a one-shot capture, which
must not pay for importing orjson). Lines either writes are read back to the same values,
by either, by the readers and by the store's tail check; text either reads gives the same
value or the same refusal."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from betty_otel._jsontext import JSONDecodeError, dumps, loads, plain_text
from betty_otel._sanitize import default_sanitizer
from betty_otel._store import TelemetryStore, encode_entry, parse_entry_line
from betty_otel._store.format import is_entry_line
from betty_otel._store.tail import insertion_point
from helpers import make_entry, read_backward, read_forward


@contextlib.contextmanager
def orjson_unloaded() -> Iterator[None]:
    """As in a process that never imported orjson (a one-shot capture): the json backend."""
    saved = sys.modules.pop("orjson")
    try:
        yield
    finally:
        sys.modules["orjson"] = saved


def exact(value: Any) -> bytes:
    """value as JSON text: equal bytes for equal values, -0.0 and 0.0 told apart, 1 and 1.0
    too (Python's == tells neither), NaN and Infinity told apart from null. The one
    difference of the backends is made equal: an integer beyond 64 bits that a double holds
    is a float to orjson (json keeps it exact)."""
    return json.dumps(_as_orjson_reads(value), sort_keys=True).encode("utf-8", "surrogatepass")


def _as_orjson_reads(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _as_orjson_reads(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_orjson_reads(item) for item in value]
    if type(value) is int and not -(2**63) <= value < 2**64 and abs(value) < 2**1024:
        return float(value)
    return value


# ---------------------------------------------------------------------------
# Writing: the same entry from either backend
# ---------------------------------------------------------------------------

FLOATS = (1e16, -0.0, 0.0, 5e-324, 1.7976931348623157e308, 1e-7, 0.1, 123456789012345680.0)
hostile_text = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["\x00\x1f\x7f", "\u2028\u2029", '"\\/', "\ud800lone", "\udcff", "é😀"]),
)
leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),  # beyond 64 bits: the sanitizer's text
    st.floats(),  # NaN and infinities: the sanitizer's markers
    st.sampled_from(FLOATS),
    hostile_text,
)
raw_value = st.recursive(
    leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_text, inner, max_size=3),
    max_leaves=10,
)


def entry_of(inputs: Any, metadata: Any, text: str) -> dict[str, Any]:
    """An entry as betty_otel writes it: inputs and metadata sanitized, texts as given
    (the CLI's skill and caller are checked, not sanitized; lone surrogates stay)."""
    sanitizer = default_sanitizer()
    return make_entry(
        1,
        skill=text,
        inputs=sanitizer.sanitize({"value": inputs}),
        metadata=sanitizer.sanitize({"value": metadata}),
        error_message=sanitizer.sanitize(text),
        duration_ms=1e16,
    )


def encoded(entry: dict[str, Any]) -> bytes | type[Exception]:
    """The entry line, or the type of what encoding raised."""
    try:
        return encode_entry(entry)
    except TypeError:
        return TypeError


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs=raw_value, metadata=raw_value, text=hostile_text)
@example(inputs=1e16, metadata=-0.0, text="x")
@example(inputs=2**64, metadata=-(2**63) - 1, text="\u2028")
@example(inputs=float("nan"), metadata="\ud800", text="\udcff")
def test_both_backends_write_entries_read_back_equal(inputs: Any, metadata: Any, text: str) -> None:
    """A sanitized entry: both backends write one line (or both refuse it, a lone surrogate
    in an unsanitized text), and either line reads back, by either backend, to the entry."""
    entry = entry_of(inputs, metadata, text)
    with orjson_unloaded():
        by_json = encoded(entry)
    by_orjson = encoded(entry)
    assert (by_json is TypeError) is (by_orjson is TypeError)
    if not isinstance(by_json, bytes) or not isinstance(by_orjson, bytes):
        return
    for line in (by_json, by_orjson):
        assert b"\n" not in line
        assert is_entry_line(line)
        assert exact(parse_entry_line(line)) == exact(entry)
        with orjson_unloaded():
            assert exact(parse_entry_line(line)) == exact(entry)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    inputs=raw_value, text=hostile_text.filter(lambda text: text.isascii() or text.isprintable())
)
def test_the_tail_check_and_the_readers_accept_either_line(
    tmp_path_factory: pytest.TempPathFactory, inputs: Any, text: str
) -> None:
    """A log whose last line either backend wrote: the tail check appends after it (with
    either backend), and both read directions give the same entries."""
    entry = entry_of(inputs, None, text)
    with orjson_unloaded():
        by_json = encode_entry(entry)
    logs = {}
    for name, line in (("json", by_json), ("orjson", encode_entry(entry))):
        path = tmp_path_factory.mktemp(name) / "telemetry.json"
        data = b"[\n" + encode_entry(make_entry(0)) + b",\n" + line + b"\n]\n"
        path.write_bytes(data)
        with path.open("rb") as file:
            assert insertion_point(file.fileno(), len(data)) == (len(data) - 3, b",\n")
            with orjson_unloaded():
                assert insertion_point(file.fileno(), len(data)) == (len(data) - 3, b",\n")
        logs[name] = [exact(found) for found in read_forward(path)]
        assert [exact(found) for found in reversed(read_backward(path))] == logs[name]
    assert logs["json"] == logs["orjson"] == [exact(make_entry(0)), exact(entry)]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=raw_value)
def test_plain_text_of_a_sanitized_value_reads_back_equal_from_either_backend(value: Any) -> None:
    """What redaction writes as text (`to_json_text`): both backends write a sanitized
    value as one JSON text that reads back to it."""
    sanitized = default_sanitizer().sanitize(value)
    with orjson_unloaded():
        by_json = plain_text(sanitized)
    by_orjson = plain_text(sanitized)
    for text in (by_json, by_orjson):
        assert exact(json.loads(text)) == exact(sanitized)


@dataclasses.dataclass
class _Point:
    secret: str


@pytest.mark.parametrize(
    "value",
    [
        _Point("hunter2"),
        dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
        {"a": [{1, 2}]},
    ],
    ids=["dataclass", "datetime", "nested-set"],
)
def test_plain_text_refuses_what_is_not_json_in_both_backends(value: object) -> None:
    """plain_text never converts an object on its own (a dataclass's fields could hold a
    secret the sanitizer would redact): both backends refuse it."""
    with orjson_unloaded(), pytest.raises((TypeError, ValueError)):
        plain_text(value)
    with pytest.raises((TypeError, ValueError)):
        plain_text(value)


def test_dumps_leaves_to_orjson_what_json_refuses() -> None:
    """NaN (orjson writes null), a type json does not know, a lone surrogate (orjson's
    error): with orjson not loaded, the outcome is orjson's all the same."""
    import datetime as dt

    value = {"nan": math.nan, "when": dt.datetime(2025, 1, 2, tzinfo=dt.timezone.utc)}
    with orjson_unloaded():
        assert dumps(value) == orjson.dumps(value)
        with pytest.raises(TypeError) as refused:
            dumps({"skill": "\udcff"})
    with pytest.raises(TypeError) as expected:
        orjson.dumps({"skill": "\udcff"})
    assert str(refused.value) == str(expected.value)


# ---------------------------------------------------------------------------
# Reading: the same value, or the same refusal
# ---------------------------------------------------------------------------

HOSTILE_TEXTS = [
    b"NaN",
    b"[Infinity]",
    b"-Infinity",
    b"1e400",
    b"[-1e400]",
    b"1e-400",
    b"18446744073709551615",
    b"18446744073709551616",
    b"-9223372036854775808",
    b"-9223372036854775809",
    b"1" * 30,
    b"1" * 5000,
    b"-0",
    b"-0.0",
    b"01",
    b"1.",
    b".5",
    b"[1,]",
    b'{"a":1,}',
    b'{"a":1,"a":2}',
    b'"\\ud800"',
    b'"\\udc00x"',
    b'"\\ud83d\\ude00"',
    b'"\\ud800\\u0041"',
    b'{"\\ud800": 1}',
    b'"\\\\ud800"',
    b'"\xed\xa0\x80"',
    b'"\xff"',
    b"\xef\xbb\xbf[]",
    b'"\x01"',
    b'"\x7f"',
    b" [1] \n",
    b"\x0c[1]",
    b"[1] x",
    b"",
    b"[" * 200 + b"]" * 200,  # (orjson writes no deeper than 254 levels)
]


def outcome(data: bytes | str) -> bytes | type[Exception]:
    """What loads gives: the value (exactly), or JSONDecodeError."""
    try:
        return exact(loads(data))
    except JSONDecodeError:
        return JSONDecodeError


@pytest.mark.parametrize("data", HOSTILE_TEXTS, ids=range(len(HOSTILE_TEXTS)))
def test_loads_reads_hostile_text_as_orjson_does(data: bytes) -> None:
    with orjson_unloaded():
        assert outcome(data) == outcome(data)  # the json backend is deterministic, too
        by_json = outcome(data)
    assert by_json == outcome(data)


json_text = st.one_of(
    st.builds(json.dumps, raw_value),  # NaN and lone surrogates included
    st.lists(
        st.sampled_from([t.decode("utf-8", "replace") for t in HOSTILE_TEXTS]), max_size=4
    ).map(lambda parts: "[" + ",".join(parts) + "]"),
    st.text(alphabet='[]{}",:0123456789.eE+-\\untrufalsNI \n\ud800', max_size=30),
)


@settings(max_examples=500, deadline=None)
@given(text=json_text, as_bytes=st.booleans())
def test_loads_under_json_reads_any_text_as_orjson_does(text: str, as_bytes: bool) -> None:
    """Same value (exactly), or both refuse, for text as bytes (the log) or str (attributes)."""
    data: bytes | str = text.encode("utf-8", "surrogatepass") if as_bytes else text
    with orjson_unloaded():
        by_json = outcome(data)
    assert by_json == outcome(data)


def test_a_mebibyte_of_text_is_parsed_by_orjson_even_when_not_loaded() -> None:
    """A whole single-line legacy log: orjson's import costs less than json's parse."""
    data = b"[" + b",".join(encode_entry(make_entry(n)) for n in range(4000)) + b"]"
    assert len(data) > 2**20
    with orjson_unloaded():
        assert exact(loads(data)) == exact(orjson.loads(data))
        assert "orjson" in sys.modules  # imported for it


def test_the_readers_see_the_same_log_whichever_backend_wrote_it(tmp_path: Path) -> None:
    """Writing a whole log with json, then with orjson: the same file bytes for plain
    entries (floats aside, spelled differently but equal, as above)."""
    entries = [make_entry(n) for n in range(20)]
    files = {}
    for name in ("json", "orjson"):
        path = tmp_path / f"{name}.json"
        store = TelemetryStore(path)
        with orjson_unloaded() if name == "json" else contextlib.nullcontext():
            store.append(entries)
        store.close()
        files[name] = path.read_bytes()
    assert files["json"] == files["orjson"]
