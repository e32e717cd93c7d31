"""JSON text of the log: orjson once the process has loaded it, else json held to its rules.

orjson is the quickest encoder and parser, but importing it costs more than a whole
``betty-telemetry capture`` may (it imports dataclasses, inspect, uuid, platform ...).
So `dumps` and `loads` use orjson when anything in the process has imported it (the
sanitizer, the readers, query, the decorator's path all do) and the standard library's
json otherwise:

- `dumps`: compact UTF-8, no NaN or infinity. What json refuses (NaN, a lone surrogate,
  a type it does not know) goes to orjson, so the bytes or the error are orjson's. A
  float may be spelled otherwise (``1e+16`` for ``1e16``): the same number when read.
  json also writes an int beyond 64 bits or a non-string key, which orjson refuses;
  an entry the sanitizer made holds neither.
- `loads`: what ``json.load`` reads (the log's contract), at orjson's speed: orjson parses
  (UTF-8 without a BOM); only where it refuses, the standard library's json parses again,
  which also reads NaN, Infinity, a number that overflows to infinity, an integer beyond
  64 bits (exact; orjson reads one that fits a double as a float) and a lone surrogate
  escape. Every failure is a `JSONDecodeError` (json's); nesting deeper than Python's
  recursion limit (about 1,000 levels) is one, as for ``json.load``. Text over a mebibyte
  (a whole single-line legacy log) is parsed by orjson, loaded or not: its import costs
  less than json's parse of that much.
"""

from __future__ import annotations

import json
import sys
from json import JSONDecodeError

from betty_otel._lazy import import_module

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: a capture does not import typing
if TYPE_CHECKING:
    from typing import Any, Final

__all__ = ["JSONDecodeError", "dumps", "loads", "plain_text"]

_ORJSON: Final = "orjson"
_STDLIB_MAX: Final = 1 << 20
"""The most text `loads` parses with json when orjson is not loaded (bytes or chars)."""
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
        fast = import_module(_ORJSON)  # for a value only orjson writes
    data: bytes = fast.dumps(value)
    return data


def plain_text(value: Any) -> str:
    """value, made of JSON's own types only, as compact JSON text.

    orjson writes it once loaded (told to refuse, not convert, dataclasses, datetimes and
    subclasses), else json (a float may be spelled otherwise: the same number).

    Raises:
        TypeError, ValueError: another type, a lone surrogate, a cycle; json also NaN and
            infinity (orjson writes null), orjson also an int beyond 64 bits.
    """
    fast = sys.modules.get(_ORJSON)
    if fast is None:
        return _ENCODER.encode(value)
    options = (
        fast.OPT_PASSTHROUGH_DATACLASS
        | fast.OPT_PASSTHROUGH_DATETIME
        | fast.OPT_PASSTHROUGH_SUBCLASS
    )
    text: str = fast.dumps(value, option=options).decode()
    return text


def loads(data: bytes | str) -> Any:
    """The value of one JSON text (bytes are UTF-8), as ``json.load`` reads it.

    Raises:
        JSONDecodeError: data is not one JSON value ``json.load`` reads.
    """
    fast = sys.modules.get(_ORJSON)
    if fast is None and len(data) > _STDLIB_MAX:
        fast = import_module(_ORJSON)  # quicker than json's parse of that much
    if fast is not None:
        try:
            return fast.loads(data)
        except fast.JSONDecodeError:
            pass  # NaN, Infinity, a huge number, a lone surrogate: json reads them
    return _json_load(data)


def _json_load(data: bytes | str) -> Any:
    """data as ``json.load`` reads it (a file opened as UTF-8); every refusal a JSONDecodeError."""
    try:
        return json.loads(data.decode() if isinstance(data, bytes) else data)
    except JSONDecodeError:
        raise
    except (ValueError, RecursionError) as exc:  # UnicodeError, nesting deeper than the stack
        raise JSONDecodeError(str(exc) or type(exc).__name__, "", 0) from None
