"""Positioned reads of the file's bytes: lines forward and backward, first and last bytes.

Everything reads through one descriptor with ``os.pread``, a block at a time, so
memory stays bounded by a block plus one line whatever the file's size.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

from betty_otel._store.format import BOM, WHITESPACE

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: a capture does not import typing
if TYPE_CHECKING:
    from typing import Final, Literal

__all__ = [
    "blocks_forward",
    "data_end",
    "head_bracket",
    "head_kind",
    "last_non_ws",
    "line_ending_at",
    "lines_backward",
    "lines_forward",
]

_BLOCK: Final = 1 << 16
"""Bytes read at a time."""
_LONG_BLOCK: Final = 1 << 22
"""Most bytes read at a time: blocks double up to this while a long line is read, so one
line of n bytes costs O(n) whatever its length (a carried line is joined once)."""
_LINE_PEEK: Final = 512
"""Bytes `line_ending_at` reads first: a line that ends within them needs no more."""
_ZEROS: Final = bytes(_BLOCK)
"""A block of NUL bytes to compare against."""


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
    """The bytes from the start of the line holding offset end - 1 up to end: the first
    line `lines_backward` yields (b'' when end is 0).

    A short line is found in one small read: an append to a log in the indent=2 layout
    asks for its last line, and splitting a whole block into lines costs more than the
    rest of the append.
    """
    start = max(0, end - _LINE_PEEK)
    chunk = os.pread(fd, end - start, start)
    newline = chunk.rfind(b"\n")
    if newline >= 0 or start == 0:
        return chunk[newline + 1 :]
    for _, line in lines_backward(fd, end):
        return line
    return b""


def data_end(fd: int, size: int) -> int:
    """Offset just after the last byte before size that is not NUL (0 if there is none).

    A crash can leave the file longer than its data (the size was extended, the data
    never written): a NUL-filled tail, usually a hole. Holes are skipped without reading
    them (``SEEK_DATA``/``SEEK_HOLE``); written zeros are read a large block at a time.
    """
    end = size
    while end > 0:
        end = _last_data_end(fd, end)
        start = max(0, end - _LONG_BLOCK)
        kept = _without_nul_tail(os.pread(fd, end - start, start))
        if kept:
            return start + kept
        end = start
    return 0


def _without_nul_tail(chunk: bytes) -> int:
    """Length of chunk without its trailing NUL bytes.

    Whole blocks of zeros are compared (memcmp speed) rather than stripped byte by byte,
    which is an order of magnitude slower on megabytes of zeros.
    """
    end = len(chunk)
    while end > 0:
        start = max(0, end - _BLOCK)
        if chunk[start:end] != _ZEROS[: end - start]:
            return start + len(chunk[start:end].rstrip(b"\0"))
        end = start
    return 0


def _last_data_end(fd: int, end: int) -> int:
    """End of the file's last data region before end: holes after it read as NUL bytes.

    Looks back from end in growing steps for data (``SEEK_DATA``), then forward from there
    to the last hole before end. Without hole support, end itself.
    """
    step = _BLOCK
    probe = end
    while probe > 0:
        probe = max(0, probe - step)
        step *= 2
        try:
            data = os.lseek(fd, probe, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no data from probe on
                continue
            return end  # no hole support here
        if data >= end:
            continue
        while True:
            hole = os.lseek(fd, data, os.SEEK_HOLE)
            if hole >= end:
                return end
            try:
                data = os.lseek(fd, hole, os.SEEK_DATA)
            except OSError:
                return hole
            if data >= end:
                return hole
    return 0


def blocks_forward(fd: int, start: int, end: int, block: int = _BLOCK) -> Iterator[bytes]:
    """Yield the bytes from start to end in order, at most block bytes at a time; they
    stop early where the file does (it was cut while read)."""
    offset = start
    while offset < end:
        data = os.pread(fd, min(block, end - offset), offset)
        if not data:
            return
        offset += len(data)
        yield data


def lines_forward(fd: int, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    """Yield (offset, raw line without its newline) from start to end."""
    rest = b""
    rest_offset = start
    for chunk in blocks_forward(fd, start, end):
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
    """Yield (offset, raw line without its newline) from end back to the start.

    Linear in the bytes read, however long a line is: the pieces of a line that spans
    blocks are kept and joined once, and blocks grow while no newline is found.
    """
    pos = end
    carry: list[bytes] = []  # pieces of the line that ends at the block read last, last first
    block = _BLOCK
    while pos > 0:
        start = max(0, pos - block)
        data = os.pread(fd, pos - start, start)
        pos = start
        lines = data.split(b"\n")
        if len(lines) == 1 and pos > 0:
            carry.append(data)
            block = min(block * 2, _LONG_BLOCK)
            continue
        block = _BLOCK
        if carry:
            carry.append(lines[-1])
            lines[-1] = b"".join(reversed(carry))
            carry = []
        offset = 0
        if pos > 0:
            # The first piece may begin in the block before this one.
            carry.append(lines[0])
            lines = lines[1:]
            offset = pos + len(carry[0]) + 1
        offsets = []
        for line in lines:
            offsets.append(offset)
            offset += len(line) + 1
        for index in range(len(lines) - 1, -1, -1):
            yield offsets[index], lines[index]
