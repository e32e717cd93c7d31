"""JSON text of any value read from the log: what readers print, group by and compare.

The log's parser accepts what orjson reads: nesting up to 1,024 levels, integers up to
64 bits unsigned. orjson writes less (at most 254 levels), so a value it refuses is
written here by a loop instead, never by recursion, with the same text orjson would
give were it able to: readers print, group and compare every value the log can hold.
Values that are not JSON (only a program's own, never the log's) are written as
their ``str``; a float that is not finite as ``null``, as orjson writes it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

import orjson

__all__ = ["json_bytes"]

_OPTIONS: Final = orjson.OPT_NON_STR_KEYS


def json_bytes(value: Any, *, indent: bool = False, sort_keys: bool = False) -> bytes:
    """value as JSON (compact, or indented by two spaces), object keys sorted if asked."""
    option = _OPTIONS | (orjson.OPT_INDENT_2 if indent else 0)
    option |= orjson.OPT_SORT_KEYS if sort_keys else 0
    try:
        return orjson.dumps(value, option=option, default=str)
    except orjson.JSONEncodeError:  # nested too deep for orjson, or not JSON at all
        return _by_loop(value, indent=indent, sort_keys=sort_keys).encode()


def _leaf(value: object) -> str:
    """A value that is neither an object nor an array, as JSON text (orjson's where it can)."""
    try:
        return orjson.dumps(value, default=str).decode()
    except orjson.JSONEncodeError:  # an int beyond 64 bits, a lone surrogate
        if isinstance(value, int):
            # Only a program's own int: the log's are 64-bit. _leaves loads the redactor.
            from betty_otel._leaves import big_int_text  # noqa: PLC0415

            digits = big_int_text(value)
            return digits if digits.lstrip("-").isdigit() else json.dumps(digits)
        return json.dumps(value if isinstance(value, str) else str(value))


def _by_loop(value: Any, *, indent: bool, sort_keys: bool) -> str:
    """JSON text of value built with a stack of pending pieces: any depth, no recursion."""
    parts: list[str] = []
    # Each pending item is (value, depth), or (text, -1) for text to write as it is.
    pending: list[tuple[Any, int]] = [(value, 0)]
    colon = ": " if indent else ":"
    pairs: list[tuple[str | None, Any]]
    while pending:
        item, depth = pending.pop()
        if depth < 0:
            parts.append(item)
            continue
        if isinstance(item, Mapping):
            pairs = [(str(key), child) for key, child in item.items()]
            if sort_keys:
                pairs.sort(key=lambda pair: pair[0] or "")
            opener, closer = "{", "}"
        elif isinstance(item, (list, tuple)):
            pairs = [(None, child) for child in item]
            opener, closer = "[", "]"
        else:
            parts.append(_leaf(item))
            continue
        if not pairs:
            parts.append(opener + closer)
            continue
        parts.append(opener)
        inner = "\n" + "  " * (depth + 1) if indent else ""
        pending.append(("\n" + "  " * depth + closer if indent else closer, -1))
        for index in range(len(pairs) - 1, -1, -1):
            key, child = pairs[index]
            pending.append((child, depth + 1))
            head = ("," if index else "") + inner
            pending.append((head if key is None else head + _leaf(key) + colon, -1))
    return "".join(parts)
