"""The tail our last append left, and the one read that checks the file still ends with it.

After an append the writer remembers where the file ended and the bytes that ended it:
the separator before the last entry line, that line, and the closing bracket. While the
file still ends exactly there with exactly those bytes, the next append goes where
``tail.insertion_point`` would put it, without its reads and its parse. The memory is a
hint checked against the file under the lock on every use, never trusted on its own.

Why one comparison is enough. insertion_point decides from the end of the file alone:
for a file ending in ``S + L + CLOSE``, where S is ``,\\n`` or ``[\\n`` and L is one line
holding one JSON object, it answers ``(size - len(CLOSE), SEP)`` whatever comes before S.
Its fast path sees a whole entry line that parses, after a ``,`` or ``[`` (not ``]`` or
``}``, which would mean lines added after a closed array); for an L too long for that
path's one read, its careful path finds the same line before the same bracket. So a
writer that touched the end of the file since our append (another process or store
appending, an old Betty writer rewriting the whole file, a truncation, a torn append,
a rotation that put a new file at the path and so a new descriptor) either changed
its size or those bytes, and the check fails and the careful path runs; or it left
exactly such a tail, where the careful path gives this same answer.
"""

from __future__ import annotations

import os

from betty_otel._jsontext import JSONDecodeError, loads
from betty_otel._store.format import CLOSE, SEP, is_entry_line

__all__ = ["OpenLog", "still_ends_with", "tail_to_remember"]


class OpenLog:
    """The descriptor a store appends through, valid in the process that opened it, and
    what its last append left (a plain record: a one-shot capture does not import
    dataclasses)."""

    __slots__ = ("checked_head", "end", "fd", "ino", "pid", "tail")

    def __init__(self, fd: int, pid: int, ino: tuple[int, int]) -> None:
        self.fd = fd
        self.pid = pid
        self.ino = ino
        self.checked_head = False
        self.end = 0
        """Where our last append through this descriptor left the end of the file."""
        self.tail = b""
        """The bytes that ended it (see above), or b'' when there is nothing to reuse."""


_OPENINGS = (SEP, b"[\n")
"""What may stand before the remembered line: a separator, or the array's opening."""


def tail_to_remember(payload: bytes, last: bytes) -> bytes:
    """The end of a payload just written, ending in entry line last: opening, last, CLOSE.

    Returns b'' when that tail would prove nothing: the first entry of an array whose
    ``[`` is not just before it (the payload then does not hold the byte that decides),
    or a line that is not one JSON object on one line (append_encoded takes any bytes).
    The next append then takes the careful path, as it would without any memory.
    """
    tail = payload[-(len(last) + len(CLOSE) + 2) :]
    if tail[:2] not in _OPENINGS or not is_entry_line(last) or b"\n" in last:
        return b""
    try:
        loads(last)
    except JSONDecodeError:
        return b""
    return tail


def still_ends_with(fd: int, end: int, tail: bytes) -> bool:
    """True when the file is exactly end bytes long and its last bytes are tail.

    One read of one byte more than tail: a longer file shows that byte, a shorter one
    comes up short, so the size needs no fstat of its own.
    """
    return os.pread(fd, len(tail) + 1, end - len(tail)) == tail
