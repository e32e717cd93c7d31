"""JSON text of the log: orjson once the process has loaded it, else json held to its rules.

orjson is the quickest encoder and parser, but importing it costs more than a whole
``betty-telemetry capture`` may (it imports dataclasses, inspect, uuid, platform ...).
So `dumps` and `loads` use orjson when anything in the process has imported it (the
sanitizer, the readers, query, the decorator's path all do) and the standard library's
json otherwise, under orjson's rules, so that either gives the same values:

- `dumps`: compact UTF-8, no NaN or infinity. What json refuses (NaN, a lone surrogate,
  a type it does not know) goes to orjson, so the bytes or the error are orjson's. A
  float may be spelled otherwise (``1e+16`` for ``1e16``): the same number when read.
  json also writes an int beyond 64 bits or a non-string key, which orjson refuses;
  an entry holds neither (its inputs and metadata were read back by `loads`).
- `loads`: strict JSON as orjson reads it: UTF-8 without a BOM; no NaN, Infinity or
  number that overflows to infinity; no lone surrogate escape; an integer beyond 64 bits
  read as a float. Every failure is a `JSONDecodeError` (json's, of which orjson's is a
  subclass). Only nesting over about 1,000 levels is refused sooner than orjson (1,024).
  Text over a mebibyte (a whole single-line legacy log) is parsed by orjson, loaded or
  not: its import costs less than json's parse of that much.
"""

from __future__ import annotations

import importlib
import json
import math
import sys
from json import JSONDecodeError
from typing import Any, Final

__all__ = ["JSONDecodeError", "dumps", "loads"]

_ORJSON: Final = "orjson"
_INT64_MIN: Final = -(2**63)
_UINT64_END: Final = 2**64
_ALWAYS_64_BITS: Final = 18
"""Digits that always fit in 64 bits."""
_LONGEST_64_BITS: Final = 20
"""Characters of the longest 64-bit integers (-9223372036854775808, 18446744073709551615)."""
_STDLIB_MAX: Final = 1 << 20
"""The most text `loads` parses with json when orjson is not loaded (bytes or chars)."""


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        msg = f"number is infinity when parsed as double: {text[:40]}"
        raise ValueError(msg)
    return value


def _int_or_float(text: str) -> int | float:
    """An integer as orjson reads it: beyond 64 bits (signed or not) it is a float."""
    if len(text) <= _ALWAYS_64_BITS:
        return int(text)
    if len(text) <= _LONGEST_64_BITS:
        value = int(text)
        if _INT64_MIN <= value < _UINT64_END:
            return value
    return _finite_float(text)


def _no_constant(name: str) -> Any:
    msg = f"{name} is not JSON"
    raise ValueError(msg)


_DECODER: Final = json.JSONDecoder(
    parse_float=_finite_float, parse_int=_int_or_float, parse_constant=_no_constant
)
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def dumps(value: Any) -> bytes:
    """value as compact JSON (UTF-8 bytes).

    Raises:
        TypeError: orjson's JSONEncodeError: a value JSON cannot hold.
    """
    fast = sys.modules.get(_ORJSON)
    if fast is None:
        try:
            return _ENCODER.encode(value).encode()
        except (ValueError, TypeError):
            pass  # NaN, a lone surrogate, a type json does not know: orjson's answer
        fast = importlib.import_module(_ORJSON)  # for a value only orjson writes
    data: bytes = fast.dumps(value)
    return data


def loads(data: bytes | str) -> Any:
    """The value of one JSON text (bytes are UTF-8).

    Raises:
        JSONDecodeError: data is not one strict JSON value.
    """
    fast = sys.modules.get(_ORJSON)
    if fast is not None:
        return fast.loads(data)
    if len(data) > _STDLIB_MAX:
        import orjson  # noqa: PLC0415 - quicker than json's parse of that much, import and all

        return orjson.loads(data)
    try:
        text = data.decode() if isinstance(data, bytes) else data
        if not isinstance(data, bytes):
            text.encode()  # a lone surrogate in the text itself
        value = _DECODER.decode(text)
        if "\\u" in text:  # an escape may have left a lone surrogate in a string
            _ENCODER.encode(value).encode()
    except JSONDecodeError:
        raise
    except (ValueError, RecursionError) as exc:  # UnicodeError, a hook's refusal, nesting
        raise JSONDecodeError(str(exc) or type(exc).__name__, "", 0) from None
    return value
