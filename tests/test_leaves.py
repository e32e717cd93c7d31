"""The leaf conversions of the sanitizer (`betty_otel._leaves`), each by its own rule.

test_sanitize pins what a whole value becomes; here each conversion's edges: the byte
size a budget counts, where bytes stop being decoded, how keys, big ints, sets,
dataclasses and registered numbers are spelled, and the truncation marker and MAX_TEXT
bound that every reader's text keeps to.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import numbers
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from pathlib import PurePosixPath, PureWindowsPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from betty_otel._leaves import (
    MAX_TEXT,
    SMALL_BYTES,
    big_int_text,
    bounded_text,
    bytes_text,
    dataclass_items,
    json_size,
    key_to_str,
    number_value,
    scalar_text,
    set_items,
    truncation_suffix,
)


def test_the_documented_limits() -> None:
    """64 KiB of JSON text per value and per text a reader embeds; bytes decoded up to 1 KiB."""
    assert MAX_TEXT == 65_536
    assert SMALL_BYTES == 1024


# --------------------------------------------------------------------------- json_size


@given(st.text(st.characters(exclude_categories=["Cs"])))
def test_json_size_is_the_bytes_the_string_takes_as_json_on_disk(text: str) -> None:
    assert json_size(text) == len(json.dumps(text, ensure_ascii=False).encode("utf-8"))


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("", 2),
        ("abc", 5),
        ('say "hi"', 12),  # each quote escaped
        ("a\\b", 6),  # the backslash escaped
        ("\x00", 8),  # \u0000
        ("\n", 4),  # \n
        ("é", 4),  # two UTF-8 bytes
        ("😀", 6),  # four UTF-8 bytes
    ],
)
def test_json_size_counts_escapes_and_utf8_bytes_not_characters(text: str, size: int) -> None:
    assert json_size(text) == size


@given(st.text(max_size=20).map(lambda t: t + "\ud800"))
def test_json_size_of_a_lone_surrogate_is_an_upper_bound(text: str) -> None:
    """No UTF-8 encoder takes one; the budget never counts less than the text written with
    the surrogate as its escape (six bytes, more than its replacement character's three)."""
    on_disk = json.dumps(text, ensure_ascii=False).encode("utf-8", "backslashreplace")
    assert json_size(text) >= len(on_disk)


# --------------------------------------------------------------------------- bytes


def test_small_valid_utf8_is_decoded_up_to_small_bytes() -> None:
    assert bytes_text("é".encode() * (SMALL_BYTES // 2)) == "é" * (SMALL_BYTES // 2)
    assert bytes_text(b"x" * SMALL_BYTES) == "x" * SMALL_BYTES
    assert bytes_text(bytearray(b"abc")) == "abc"
    assert bytes_text(memoryview(b"abc")) == "abc"


def test_bytes_past_small_bytes_are_a_size_tag_even_when_valid_utf8() -> None:
    assert bytes_text(b"x" * (SMALL_BYTES + 1)) == f"<bytes len={SMALL_BYTES + 1}>"
    assert bytes_text(bytearray(SMALL_BYTES + 1)) == f"<bytearray len={SMALL_BYTES + 1}>"


def test_invalid_utf8_is_a_size_tag_whatever_its_size() -> None:
    assert bytes_text(b"\xff") == "<bytes len=1>"
    assert bytes_text(b"ok\xc3") == "<bytes len=3>"  # a cut multi-byte character


def test_a_memoryview_is_sized_in_bytes_not_items() -> None:
    view = memoryview(b"\x00" * 4096).cast("I")  # 1024 items of 4 bytes
    assert bytes_text(view) == "<memoryview len=4096>"


def test_a_released_memoryview_is_named_without_a_size() -> None:
    view = memoryview(b"abc")
    view.release()
    assert bytes_text(view) == "<memoryview>"


# --------------------------------------------------------------------------- big ints


def test_a_big_int_is_its_decimal_text() -> None:
    assert big_int_text(2**64) == "18446744073709551616"
    assert big_int_text(-(2**63) - 1) == "-9223372036854775809"


@pytest.fixture
def digit_limit() -> Iterator[int]:
    """Python's int-to-text digit limit, set to its smallest value for the test."""
    original = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)
    yield 640
    sys.set_int_max_str_digits(original)


def test_an_int_past_pythons_digit_limit_is_described_by_its_bits(digit_limit: int) -> None:
    huge = 10**digit_limit  # one digit too many
    assert big_int_text(huge) == f"<int with {huge.bit_length()} bits>"
    assert big_int_text(-huge) == f"<int with {huge.bit_length()} bits>"
    assert big_int_text(huge - 1) == "9" * digit_limit  # exactly the limit: still text


# --------------------------------------------------------------------------- keys


class Kind(enum.Enum):
    A = "alpha"


class IntKind(enum.IntEnum):
    ONE = 1


class Raises:
    def __str__(self) -> str:
        raise RuntimeError("no")


class MyStr(str):
    def __str__(self) -> str:
        return "not the text"


@pytest.mark.parametrize(
    ("key", "text"),
    [
        (None, "null"),
        (True, "true"),
        (False, "false"),
        (1, "1"),
        (2.5, "2.5"),
        (b"password", "password"),  # still names a secret
        (bytearray(b"api_key"), "api_key"),
        (b"\xffkey", "\ufffdkey"),
        (Kind.A, "alpha"),  # an enum key is its value
        (IntKind.ONE, "1"),
        (MyStr("token"), "token"),  # a str subclass is its text, not its __str__
        ((1, 2), "(1, 2)"),
        (Raises(), "<unrepresentable key Raises>"),
    ],
)
def test_a_key_becomes_the_text_json_would_give_a_scalar(key: object, text: str) -> None:
    result = key_to_str(key)
    assert result == text
    assert type(result) is str


def test_an_int_key_past_the_digit_limit_is_unrepresentable(digit_limit: int) -> None:
    assert key_to_str(10**digit_limit) == "<unrepresentable key int>"
    assert key_to_str(10**digit_limit - 1) == "9" * digit_limit


# --------------------------------------------------------------------------- text bounds


def test_the_truncation_marker_says_how_many_characters_were_dropped() -> None:
    assert truncation_suffix(7) == "...<truncated 7 chars>"


def test_text_up_to_max_text_is_kept_whole() -> None:
    text = "x" * MAX_TEXT
    assert bounded_text(text) == text


def test_longer_text_is_cut_to_max_text_and_marked() -> None:
    text = "a" * MAX_TEXT + "b" * 5
    assert bounded_text(text) == "a" * MAX_TEXT + truncation_suffix(5)


def test_a_lone_surrogate_is_written_as_its_escape_so_the_text_encodes() -> None:
    result = bounded_text("a\ud800b")
    assert result == "a\\ud800b"
    assert result.encode() == b"a\\ud800b"


# --------------------------------------------------------------------------- scalars


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2))),
         "2025-01-02T03:04:05+02:00"),
        (dt.date(2025, 1, 2), "2025-01-02"),
        (dt.time(3, 4), "03:04:00"),
        (uuid.UUID(int=255), "00000000-0000-0000-0000-0000000000ff"),
        (Decimal("-0.00"), "-0.00"),
        (PureWindowsPath("C:/x/y"), "C:\\x\\y"),
        (PurePosixPath("a/b"), "a/b"),
        (b"abc", "abc"),
    ],
)  # fmt: skip
def test_values_json_has_no_type_for_become_their_text(value: object, text: str) -> None:
    assert scalar_text(value) == text


@pytest.mark.parametrize("value", [1, 1.5, "s", None, [1], {"a": 1}, object(), dt.timedelta(1)])
def test_other_values_have_no_scalar_text(value: object) -> None:
    assert scalar_text(value) is None


def test_a_date_whose_isoformat_raises_has_no_scalar_text() -> None:
    class Hostile(dt.date):
        def isoformat(self) -> str:
            raise RuntimeError("no")

    assert scalar_text(Hostile(2025, 1, 1)) is None


# --------------------------------------------------------------------------- containers


@dataclasses.dataclass
class Point:
    x: int
    y: str = "b"
    late: int = dataclasses.field(init=False)


def test_a_dataclass_instance_gives_its_field_count_and_pairs() -> None:
    items = dataclass_items(Point(1))
    assert items is not None
    count, pairs = items
    assert count == 3
    assert list(pairs) == [("x", 1), ("y", "b"), ("late", "<unavailable>")]  # never set


@pytest.mark.parametrize("value", [Point, {"x": 1}, (1, 2), "text", None])
def test_a_dataclass_class_or_any_non_dataclass_gives_none(value: object) -> None:
    assert dataclass_items(value) is None


def test_registered_numbers_become_int_or_float() -> None:
    assert number_value(Fraction(1, 4)) == 0.25
    assert type(number_value(Fraction(1, 4))) is float
    assert number_value(Fraction(6, 3)) == 2.0  # a Rational is Real, not Integral

    class Count:
        def __int__(self) -> int:
            return 3

        def __index__(self) -> int:
            return 3

    numbers.Integral.register(Count)
    assert number_value(Count()) == 3
    assert type(number_value(Count())) is int


@pytest.mark.parametrize("value", ["1", b"1", None, Decimal("1.5"), [1]])
def test_anything_not_a_registered_number_gives_none(value: object) -> None:
    """Decimal is a Number but neither Integral nor Real: it stays text (scalar_text)."""
    assert number_value(value) is None


def test_a_set_within_its_cap_is_sorted_whole() -> None:
    assert set_items({3, 1, 2}, 3) == [1, 2, 3]
    assert set_items(frozenset("cab"), 10) == ["a", "b", "c"]


def test_a_set_past_its_cap_keeps_its_smallest_elements_in_order() -> None:
    assert set_items(set(range(100, 0, -1)), 3) == [1, 2, 3]
    assert set_items({1, 2}, 0) == []


def test_a_set_of_unorderable_elements_keeps_cap_of_them_in_iteration_order() -> None:
    value = {1, "a", None, 2.5}
    assert set_items(value, 10) == list(value)
    assert set_items(value, 2) == list(value)[:2]
