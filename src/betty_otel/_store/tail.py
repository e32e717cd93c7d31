"""Where the array ends: the insertion point of an append, or none for a torn tail.

Pure reads on the locked descriptor; the writer decides what to do with the answer.
"""

from __future__ import annotations

import os

import orjson

from betty_otel._store.format import (
    AFTER_END,
    CLOSE,
    SEP,
    VALUE_END,
    WHITESPACE,
    is_entry_line,
    parse_entry_line,
)
from betty_otel._store.lines import head_bracket, last_non_ws, line_ending_at
from betty_otel._store.parser import last_complete_element

__all__ = ["insertion_point"]


def insertion_point(fd: int, size: int) -> tuple[int, bytes]:
    """Where new entries go and what precedes them; (-1, b'') for a torn tail."""
    if size == 0:
        return 0, b"[\n"
    # Fast path, one read: our own canonical tail, a whole entry line and then "\n]\n".
    start = max(0, size - 4096)
    tail = os.pread(fd, size - start, start)
    if tail.endswith(b"}" + CLOSE):
        newline = tail.rfind(b"\n", 0, len(tail) - len(CLOSE))
        line = tail[newline + 1 : len(tail) - len(CLOSE)]
        if newline >= 0 and is_entry_line(line):
            earlier = tail[:newline].rstrip(WHITESPACE)
            prev = earlier[-1] if earlier else last_non_ws(fd, start)[1]
            try:
                parse_entry_line(line)
            except orjson.JSONDecodeError:
                pass  # a damaged last entry: the careful path below decides
            else:
                if prev not in AFTER_END:
                    return size - len(CLOSE), SEP
    last, char = last_non_ws(fd, size)
    if last < 0:  # only whitespace (or a BOM): an empty log
        return 0, b"[\n"
    if char != ord("]"):
        return -1, b""
    before, prev = last_non_ws(fd, last)
    if prev == ord("["):
        # Empty only if it is the opening bracket; "[\n{"a": []" is a torn tail.
        return (before + 1, b"\n") if before == head_bracket(fd) else (-1, b"")
    if prev in VALUE_END and _closes_array(fd, before, last):
        return before + 1, SEP
    return -1, b""


def _closes_array(fd: int, before: int, last: int) -> bool:
    """True when the ``]`` at last closes the top-level array, not a nested one in a torn tail.

    A torn tail can end in ``]`` (``{"args": [1, 2]``, or a string ``"x]``). Cheap cases
    first: a bracket at the start of its line after a whole canonical entry line (our own
    tail), or after an indented line (json.dump(indent=N) puts only the top-level bracket at
    column 0). Otherwise (compact layouts, torn tails) the last complete element must end
    right before the bracket.
    """
    if last > 0 and os.pread(fd, 1, last - 1) == b"\n":
        line = line_ending_at(fd, before + 1)
        if line[:1] in (b" ", b"\t"):
            return True
        if is_entry_line(line) and last_non_ws(fd, before + 1 - len(line))[1] not in AFTER_END:
            try:
                parse_entry_line(line)
            except orjson.JSONDecodeError:
                pass
            else:
                return True
    return last_complete_element(fd, last + 1) == before + 1
