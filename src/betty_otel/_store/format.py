"""The file's canonical line format, and the bytes that structure it.

Layout (canonical): ``[``, one compact entry per line separated by ``,\\n``, then
``\\n]\\n``. Any other valid JSON array layout (the old tools' ``indent=2``, CRLF,
a BOM, no final newline) is read and appended to as it is.
"""

from __future__ import annotations

from collections.abc import Mapping

from betty_otel._jsontext import dumps, loads

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: a capture does not import typing
if TYPE_CHECKING:
    from typing import Any, Final

__all__ = [
    "AFTER_END",
    "BOM",
    "CLOSE",
    "SEP",
    "VALUE_END",
    "WHITESPACE",
    "encode_entry",
    "entry_line_end",
    "is_entry_line",
    "parse_entry_line",
]

BOM: Final = b"\xef\xbb\xbf"
WHITESPACE: Final = b" \t\r\n"
CLOSE: Final = b"\n]\n"
"""The canonical end of the array, after the last entry line."""
SEP: Final = b",\n"
"""The canonical separator between two entry lines."""
VALUE_END: Final = frozenset(b'}]"0123456789el')
"""Characters that can end a JSON value: where the next element's separator goes."""
AFTER_END: Final = frozenset(b"]}")
"""Before an entry line, these mean the array already ended there (lines added after it)."""


def encode_entry(entry: Mapping[str, Any]) -> bytes:
    """One entry as a compact JSON line (no newline inside, by JSON's rules).

    orjson writes it once the process has loaded it; a one-shot capture writes it with
    json, to the same values (`betty_otel._jsontext`).
    """
    return dumps(entry)


def is_entry_line(line: bytes) -> bool:
    """True for a canonical entry line: ``{...}`` or ``{...},`` starting at column 0."""
    return line[:1] == b"{" and (line[-1:] == b"}" or line[-2:] == b"},")


def parse_entry_line(line: bytes) -> Any:
    """The value of an entry line, without its separator comma.

    Raises:
        JSONDecodeError: (json's; orjson's is a subclass) the line is not one whole
            strict JSON value.
    """
    return loads(line[:-1] if line[-1:] == b"," else line)


def entry_line_end(offset: int, line: bytes) -> int:
    """Offset just after the closing brace of a canonical entry line that starts at offset."""
    body = line.rstrip(b"\r")
    return offset + len(body) - (1 if body[-1:] == b"," else 0)
