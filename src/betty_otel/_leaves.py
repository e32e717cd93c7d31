"""Leaf values as JSON text: the size a string takes, keys, bytes, big ints, markers.

The small conversions the sanitizer applies at the leaves of a value, each total
(never raises) and cheap; kept apart so the walk in ``_sanitize`` reads as a walk.
"""

from __future__ import annotations

import enum
from typing import Final

import orjson

from betty_otel._redact import type_name

__all__ = [
    "SMALL_BYTES",
    "big_int_text",
    "bytes_text",
    "field_value",
    "json_size",
    "key_to_str",
    "truncation_suffix",
]

SMALL_BYTES: Final = 1024
"""Bytes-like values up to this size are decoded when they are valid UTF-8."""


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
    try:
        return len(orjson.dumps(text, option=orjson.OPT_PASSTHROUGH_SUBCLASS))
    except TypeError:  # lone surrogates: an upper bound is enough for a budget
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
