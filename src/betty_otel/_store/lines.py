"""Positioned reads of the file's bytes: lines forward and backward, first and last bytes.

Everything reads through one descriptor with ``os.pread``, a block at a time, so
memory stays bounded by a block plus one line whatever the file's size.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Final, Literal

from betty_otel._store.format import BOM, WHITESPACE

__all__ = [
    "head_bracket",
    "head_kind",
    "last_non_ws",
    "line_ending_at",
    "lines_backward",
    "lines_forward",
]

_BLOCK: Final = 1 << 16
"""Bytes read at a time."""


def _first_byte(fd: int) -> tuple[int, int]:
    """Offset and value of the file's first byte after a BOM and whitespace; (-1, -1) if none."""
    offset = 0
    while True:
        chunk = os.pread(fd, 512, offset)
        if not chunk:
            return -1, -1
        if offset == 0 and chunk.startswith(BOM):
            chunk = chunk[len(BOM) :]
            offset += len(BOM)
        stripped = chunk.lstrip(WHITESPACE)
        if stripped:
            return offset + len(chunk) - len(stripped), stripped[0]
        offset += len(chunk)


def head_kind(fd: int) -> Literal["empty", "array", "foreign"]:
    """Classify the file's start: 'empty' (only whitespace), 'array', or 'foreign'."""
    offset, byte = _first_byte(fd)
    if offset < 0:
        return "empty"
    return "array" if byte == ord("[") else "foreign"


def head_bracket(fd: int) -> int:
    """Offset of the array's opening bracket (first byte after a BOM and whitespace), or -1."""
    offset, byte = _first_byte(fd)
    return offset if byte == ord("[") else -1


def last_non_ws(fd: int, end: int) -> tuple[int, int]:
    """Return (offset, byte) of the last non-whitespace byte before end, or (-1, -1)."""
    while end > 0:
        start = max(0, end - 4096)
        chunk = os.pread(fd, end - start, start)
        stripped = chunk.rstrip(WHITESPACE)
        if stripped:
            index = start + len(stripped) - 1
            if index < len(BOM) and start == 0 and chunk.startswith(BOM):
                return -1, -1
            return index, stripped[-1]
        end = start
    return -1, -1


def line_ending_at(fd: int, end: int) -> bytes:
    """The bytes from the start of the line holding offset end - 1 up to end."""
    parts: list[bytes] = []
    pos = end
    while pos > 0:
        start = max(0, pos - 4096)
        chunk = os.pread(fd, pos - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            parts.append(chunk[newline + 1 :])
            break
        parts.append(chunk)
        pos = start
    return b"".join(reversed(parts))


def lines_forward(fd: int, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    """Yield (offset, raw line without its newline) from start to end."""
    offset = start
    rest = b""
    rest_offset = start
    while offset < end:
        chunk = os.pread(fd, min(_BLOCK, end - offset), offset)
        if not chunk:
            break
        offset += len(chunk)
        data = rest + chunk if rest else chunk
        pos = 0
        while True:
            newline = data.find(b"\n", pos)
            if newline < 0:
                break
            yield rest_offset + pos, data[pos:newline]
            pos = newline + 1
        rest_offset += pos
        rest = data[pos:]
    if rest:
        yield rest_offset, rest


def lines_backward(fd: int, end: int) -> Iterator[tuple[int, bytes]]:
    """Yield (offset, raw line without its newline) from end back to the start."""
    pos = end
    carry = b""
    while pos > 0:
        start = max(0, pos - _BLOCK)
        data = os.pread(fd, pos - start, start) + carry
        pos = start
        lines = data.split(b"\n")
        if pos > 0:
            # The first piece may begin in the block before this one.
            carry = lines[0]
            lines = lines[1:]
            offset = pos + len(carry) + 1
        else:
            carry = b""
            offset = 0
        offsets = []
        for line in lines:
            offsets.append(offset)
            offset += len(line) + 1
        for index in range(len(lines) - 1, -1, -1):
            yield offsets[index], lines[index]
