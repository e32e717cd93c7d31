"""Tests for betty_otel._sanitize: safe conversion to bounded, strict JSON."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from betty_otel._redact import REDACTED
from betty_otel._sanitize import Sanitizer, default_sanitizer, to_json_text
from hostile import HOSTILE, Unrepresentable

S = Sanitizer()
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def strict_json(value: Any) -> Any:
    """Round-trip through strict JSON (no NaN/Infinity), failing on anything else."""

    def reject(name: str) -> None:
        raise AssertionError(f"non-strict JSON constant {name}")

    text = to_json_text(value)
    text.encode("utf-8")  # no lone surrogates
    return json.loads(text, parse_constant=reject)


GH = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=120)
    | st.sampled_from([f"password={GH}", "Bearer abc123DEF456", JWT, "x" * 200]),
    lambda inner: st.lists(inner, max_size=8)
    | st.dictionaries(st.text(max_size=12) | st.sampled_from(["token", "pwd"]), inner, max_size=8)
    | st.tuples(inner, inner)
    | st.frozensets(st.integers(), max_size=5),
    max_leaves=60,
)  # fmt: skip


@FAST
@given(JSONISH)
def test_sanitize_is_idempotent_and_strict_json_under_tight_budgets(value: object) -> None:
    """Property: sanitize(sanitize(x)) == sanitize(x) even when items, depth and sizes are cut."""
    tight = Sanitizer(max_value_chars=64, max_total_chars=400, max_depth=3, max_items=4)
    for sanitizer in (S, tight):
        once = sanitizer.sanitize(value)
        assert sanitizer.sanitize(once) == once
        strict_json(once)
        assert GH not in to_json_text(once)


# -- conversion ----------------------------------------------------------------------------


@dataclasses.dataclass
class Point:
    x: int
    y: float
    api_key: str = "k-123"


class Model:
    """pydantic-like: has model_dump()."""

    def model_dump(self) -> dict[str, Any]:
        return {"name": "m", "password": "p"}


class BrokenModel:
    def model_dump(self) -> dict[str, Any]:
        raise RuntimeError("boom")

    def __repr__(self) -> str:
        return "BrokenModel()"


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __str__(self) -> str:
        return "bad-but-str"


class BadKey:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __hash__(self) -> int:
        return 1


CONVERSIONS: list[tuple[object, object]] = [
    (Point(1, 2.5), {"x": 1, "y": 2.5, "api_key": REDACTED}),
    (Model(), {"name": "m", "password": REDACTED}),
    (BrokenModel(), "BrokenModel()"),
    (Color.RED, "red"),
    (Level.HIGH, 3),
    (dt.datetime(2025, 1, 2, 3, 4, 5, 123456, dt.timezone.utc), "2025-01-02T03:04:05.123456+00:00"),
    (dt.date(2025, 1, 2), "2025-01-02"),
    (dt.time(3, 4, 5), "03:04:05"),
    (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
    (Decimal("1.10"), "1.10"),
    (Decimal("NaN"), "NaN"),
    (PurePosixPath("/tmp/x.txt"), "/tmp/x.txt"),
    (b"hello", "hello"),
    (b"\xff\xfe", "<bytes len=2>"),
    (bytearray(b"x" * 2000), "<bytearray len=2000>"),
    (memoryview(b"abc"), "abc"),
    ({3, 1, 2}, [1, 2, 3]),
    (frozenset({"b", "a"}), ["a", "b"]),
    ((1, "a"), [1, "a"]),
    (float("nan"), "NaN"),
    (float("inf"), "Infinity"),
    (float("-inf"), "-Infinity"),
    (2**64, str(2**64)),
    (-(2**63), -(2**63)),
    (2**63, str(2**63)),
    (10**5000, "<int with 16610 bits>"),
    ("a\ud800b", "a\ufffdb"),
    ("\ud83d\ude00", "\U0001f600"),
    ({1: "a", None: "b", False: "c", 2.5: "d"}, {"1": "a", "null": "b", "false": "c", "2.5": "d"}),
    ({1: "first", "1": "second"}, {"1": "first"}),
    ({BadKey(): 1}, {"<unrepresentable key BadKey>": 1}),
    (BadRepr(), "bad-but-str"),
    (Unrepresentable(), "<unrepresentable Unrepresentable>"),
    (range(3), [0, 1, 2]),
    ({"a": 1}.keys(), ["a"]),
    (Exception("password=x"), f"Exception('password={REDACTED}')"),
]  # fmt: skip


@pytest.mark.parametrize(("value", "expected"), CONVERSIONS, ids=lambda v: type(v).__name__)
def test_any_value_converts_to_strict_json(value: object, expected: object) -> None:
    """Dataclasses, model_dump, enums, dates, UUID, Decimal, paths, bytes, sets, NaN, big ints,
    surrogates, odd keys and hostile reprs all convert as documented, as strict JSON."""
    result = S.sanitize(value)
    assert result == expected
    assert strict_json(result) == expected


def test_set_with_unsortable_elements_becomes_a_list() -> None:
    """A set whose elements can't be compared still converts (in iteration order)."""
    result = S.sanitize({1, "a", None})
    assert isinstance(result, list)
    assert sorted(map(str, result)) == ["1", "None", "a"]


def test_generators_and_iterators_are_not_consumed() -> None:
    """An iterator argument is described by type, never read (the caller still needs it)."""
    gen = (i for i in range(3))
    it: Iterator[int] = iter([1, 2])
    assert S.sanitize({"g": gen, "i": it}) == {
        "g": "<generator not consumed>",
        "i": "<list_iterator not consumed>",
    }
    assert list(gen) == [0, 1, 2]
    assert list(it) == [1, 2]


def test_cycles_become_a_marker() -> None:
    """Self-referencing dicts, lists and dataclasses end in "<cycle>" instead of recursing."""
    d: dict[str, Any] = {"a": 1}
    d["self"] = d
    lst: list[Any] = [1]
    lst.append(lst)

    @dataclasses.dataclass
    class Node:
        child: Any = None

    node = Node()
    node.child = node
    assert S.sanitize(d) == {"a": 1, "self": "<cycle>"}
    assert S.sanitize(lst) == [1, "<cycle>"]
    assert S.sanitize(node) == {"child": "<cycle>"}
    shared = [1]
    assert S.sanitize([shared, shared]) == [[1], [1]]  # shared, not a cycle


def test_other_objects_use_their_truncated_repr() -> None:
    """An arbitrary object becomes its repr, cut to max_value_chars."""

    class Big:
        def __repr__(self) -> str:
            return "B" * 100_000

    result = Sanitizer(max_value_chars=100).sanitize(Big())
    assert isinstance(result, str)
    assert len(result) <= 100
    assert result.startswith("BBB")


# -- budgets -------------------------------------------------------------------------------


def test_huge_string_is_truncated_with_marker() -> None:
    """A 10 MB string comes back within max_value_chars, ending in a truncation marker."""
    result = S.sanitize("x" * 10_000_000)
    assert isinstance(result, str)
    assert len(result) <= 4096
    assert result.endswith("chars>")
    assert "...<truncated " in result
    assert len(to_json_text(result)) <= 4096 + 2


def test_huge_list_keeps_max_items_with_marker() -> None:
    """A million-item list keeps max_items entries, the last saying how many were dropped."""
    result = S.sanitize(list(range(1_000_000)))
    assert len(result) == 200
    assert result[:3] == [0, 1, 2]
    assert result[-1] == "<999801 more items>"
    big_dict = S.sanitize({f"k{i}": i for i in range(1000)})
    assert len(big_dict) == 200
    assert big_dict["<truncated>"] == "<801 more items>"


def test_total_json_size_stays_within_budget() -> None:
    """However large and wide the value, its JSON stays near max_total_chars."""
    block = "y" * 4000
    value = {f"k{i}": [[block] * 200 for _ in range(50)] for i in range(100)}
    result = S.sanitize(value)
    assert len(to_json_text(result)) <= 65536 + 4096 + 1024
    assert "<truncated: size budget exceeded>" in to_json_text(result)
    small = Sanitizer(max_total_chars=1000).sanitize(["z" * 300] * 50)
    assert len(to_json_text(small)) < 2000


def test_nesting_beyond_max_depth_becomes_marker() -> None:
    """Containers nested deeper than max_depth are replaced by a depth marker."""
    deep: Any = "leaf"
    for _ in range(50):
        deep = [deep]
    text = to_json_text(S.sanitize(deep))
    assert "<max depth exceeded>" in text
    assert text.count("[") == 21
    assert Sanitizer(max_depth=1).sanitize({"a": {"b": {"c": 1}}}) == {
        "a": {"b": "<max depth exceeded>"}
    }


def test_secrets_are_redacted_before_truncation() -> None:
    """A secret straddling the cut point leaks no prefix: redaction runs first."""
    secret = "S3CR3T" * 50
    text = "a" * 4050 + " password=" + secret
    result = S.sanitize(text)
    assert "S3CR" not in result
    assert len(result) <= 4096
    huge_token = "x " + "ghp_" + "Q" * 5_000_000
    assert "QQQQ" not in S.sanitize(huge_token)
    pem = "-----BEGIN PRIVATE KEY-----\n" + "M" * 100_000
    assert "MMMM" not in S.sanitize(pem)


@pytest.mark.parametrize("limit", [64, 100, 4096])
def test_truncated_strings_are_stable_under_a_second_pass(limit: int) -> None:
    """A cut never lands inside a marker so that a second pass would change it."""
    sanitizer = Sanitizer(max_value_chars=limit)
    for pad in range(40):
        text = "p" * (limit - 30 + pad) + " Authorization: Bearer abc123DEF456 token=" + "z" * 90
        once = sanitizer.sanitize(text)
        assert len(once) <= limit
        assert sanitizer.sanitize(once) == once
        assert "abc123" not in once
        assert "zzz" not in once


# -- never raise, shared instance, JSON text -----------------------------------------------


@pytest.mark.parametrize("make", HOSTILE.values(), ids=HOSTILE.keys())
def test_sanitize_never_raises_on_hostile_values(make: Callable[[], object]) -> None:
    """Hostile objects produce strict JSON (a marker or repr), never an exception."""
    value = make()  # built here: pytest itself would trip over Hostile while collecting
    strict_json(S.sanitize(value))


def test_default_sanitizer_is_one_shared_instance() -> None:
    """default_sanitizer() is cached: the hot path reuses one instance."""
    assert default_sanitizer() is default_sanitizer()
    assert default_sanitizer().sanitize({"token": "x"}) == {"token": REDACTED}


def test_to_json_text_is_compact_and_never_raises() -> None:
    """to_json_text returns compact str; unsanitized values are sanitized rather than raising."""
    assert to_json_text({"a": [1, "b"], "c": None}) == '{"a":[1,"b"],"c":null}'
    fallback = json.loads(to_json_text({"n": 2**70, "p": Path("/x"), "s": "\ud800"}))
    assert fallback == {"n": str(2**70), "p": "/x", "s": "\ufffd"}
    assert json.loads(to_json_text(Point(1, 2.0))) == {"x": 1, "y": 2.0, "api_key": REDACTED}
    assert isinstance(orjson.loads(to_json_text("x")), str)
    assert math.isfinite(orjson.loads(to_json_text(1.5)))
