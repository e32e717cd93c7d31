"""Leaf values as JSON text: the size a string takes, keys, bytes, big ints, markers.

The small conversions the sanitizer applies at the leaves of a value, each cheap; kept
apart so the walk in ``_sanitize`` reads as a walk. Date/time values become ISO text,
UUIDs, Decimals and paths ``str``; bytes-like values up to 1024 bytes of valid UTF-8
are decoded, others become ``"<bytes len=N>"``; ints outside the signed 64-bit range
become strings; non-string dict keys become ``str`` (``null``/``true``/``false`` for
None/bools). The standard modules a conversion needs (dataclasses, uuid, decimal,
numbers, heapq) are not imported for it: a value of their types exists only once its
module is loaded, so a one-shot capture of plain values never loads them.
"""

from __future__ import annotations

import datetime as dt
import enum
import sys
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from itertools import islice
from json.encoder import encode_basestring
from typing import Any, Final

from betty_otel._redact import type_name

__all__ = [
    "MAX_TEXT",
    "SMALL_BYTES",
    "big_int_text",
    "bounded_text",
    "bytes_text",
    "dataclass_items",
    "json_size",
    "key_to_str",
    "number_value",
    "scalar_text",
    "set_items",
    "truncation_suffix",
]

_STR_TYPES: Final = (("uuid", "UUID"), ("decimal", "Decimal"), ("pathlib", "PurePath"))
"""Types shown as their ``str``, by module and name."""

SMALL_BYTES: Final = 1024
"""Bytes-like values up to this size are decoded when they are valid UTF-8."""


MAX_TEXT: Final = 65_536
"""The most characters of JSON one value gets (the sanitizer's ``max_total_chars`` by
default), and of one text a reader embeds or sends (`bounded_text`): a foreign entry's
megabyte of text never makes a request too large or a report too slow to open."""


def bounded_text(text: str) -> str:
    """text as a report embeds it or an export sends it: cut to MAX_TEXT characters with
    the truncation marker, a lone surrogate (``json.load`` reads ``"\\ud800"``) written as
    its escape, since no UTF-8 encoder takes one."""
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT] + truncation_suffix(len(text) - MAX_TEXT)
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text


def truncation_suffix(dropped: int) -> str:
    """The marker that ends a string cut to its budget."""
    return f"...<truncated {dropped} chars>"


def key_to_str(key: object) -> str:
    """Text for a non-string dict key, spelled as the json module would for scalars."""
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, str):
        return str.__str__(key)
    if isinstance(key, (bytes, bytearray)):  # b"password" must still name a secret
        return bytes(key).decode("utf-8", "replace")
    try:
        return str(key.value if isinstance(key, enum.Enum) else key)
    except Exception:  # noqa: BLE001 - a raising __str__, a 5000-digit int
        return f"<unrepresentable key {type_name(key)}>"


def json_size(text: str) -> int:
    """Bytes the string takes as JSON: the budget counts what reaches the disk.

    Control characters take 6 bytes (\\u0000) and non-ASCII up to 4 in UTF-8, so
    counting characters could let a line grow several times past the budget.
    """
    if text.isascii() and text.isprintable():
        return len(text) + 2 + text.count('"') + text.count("\\")
    try:  # json's escapes are orjson's (what writes the log): json is loaded already
        return len(encode_basestring(text).encode())
    except UnicodeEncodeError:  # lone surrogates: an upper bound is enough for a budget
        return len(text) * 6 + 2


def big_int_text(value: int) -> str:
    """An int outside JSON's safe range as text (its size, past Python's digit limit)."""
    try:
        return str(value)
    except ValueError:  # past sys.get_int_max_str_digits()
        return f"<int with {value.bit_length()} bits>"


def bytes_text(value: bytes | bytearray | memoryview) -> str:
    """Small valid UTF-8 is decoded (usually text read as bytes); anything else a size tag."""
    try:
        size = value.nbytes if isinstance(value, memoryview) else len(value)
        if size <= SMALL_BYTES:
            return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        pass
    except (ValueError, TypeError):  # a released memoryview
        return f"<{type_name(value)}>"
    return f"<{type_name(value)} len={size}>"


def field_value(obj: object, name: str) -> object:
    """A dataclass field's value, or a marker when reading it raises."""
    try:
        return getattr(obj, name)
    except Exception:  # noqa: BLE001 - e.g. an init=False field never set
        return "<unavailable>"


def scalar_text(value: object) -> str | None:
    """Text of a value JSON has no type for (dates, times, UUIDs, Decimals, paths, bytes);
    None for anything else, or when a hostile subclass raises."""
    try:
        if isinstance(value, (dt.date, dt.time)):
            return value.isoformat()
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes_text(value)
        loaded = tuple(getattr(sys.modules[m], n) for m, n in _STR_TYPES if m in sys.modules)
        return str(value) if isinstance(value, loaded) else None
    except Exception:  # noqa: BLE001 - the caller falls back to the value's repr
        return None


def dataclass_items(value: object) -> tuple[int, Iterator[tuple[str, object]]] | None:
    """The number of a dataclass instance's fields and its (name, value) pairs, else None."""
    if not hasattr(type(value), "__dataclass_fields__") or isinstance(value, type):
        return None
    import dataclasses  # noqa: PLC0415 - loaded already: it made the value's class

    fields = dataclasses.fields(value)  # type: ignore[arg-type]
    return len(fields), ((f.name, field_value(value, f.name)) for f in fields)


def number_value(value: object) -> int | float | None:
    """A registered ``numbers.Integral`` or ``Real`` (numpy scalars, Fraction) as int or float."""
    numbers = sys.modules.get("numbers")
    if numbers is None:  # no number type registers without it
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return None


def set_items(value: AbstractSet[Any], cap: int) -> list[Any]:
    """A set's first ``cap`` elements: sorted (the smallest), else in iteration order."""
    try:
        if cap >= len(value):
            return sorted(value)
        import heapq  # noqa: PLC0415 - only for sets past the item budget

        return heapq.nsmallest(cap, value)
    except Exception:  # noqa: BLE001 - mixed or hostile element types
        return list(islice(value, cap))
