"""Where the array ends: the insertion point of an append, or none for a torn tail;
and whether bytes after the last complete entry are a torn append (which may be cut).

Pure reads on the locked descriptor; the writer decides what to do with the answer.
"""

from __future__ import annotations

import os
import re

from betty_otel._jsontext import JSONDecodeError, loads
from betty_otel._store.format import (
    AFTER_END,
    BOM,
    CLOSE,
    SEP,
    VALUE_END,
    WHITESPACE,
    is_entry_line,
    parse_entry_line,
)
from betty_otel._store.lines import head_bracket, last_non_ws, line_ending_at

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: a capture does not import typing
if TYPE_CHECKING:
    from typing import Final

__all__ = ["insertion_point", "is_torn_append"]

# Bytes JSON text never holds raw (control characters other than whitespace). Compiled
# (by re, cached) when a tail is checked for repair, not when an append starts.
_NOT_JSON_TEXT: Final = rb"[\x00-\x08\x0b\x0c\x0e-\x1f]"


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
            except JSONDecodeError:
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
    if _closes_damage(fd, last):  # a torn "..},\n]" is told apart there
        return before + 1, SEP
    return -1, b""


def _closes_array(fd: int, before: int, last: int) -> bool:
    """True when the ``]`` at last closes the top-level array, not a nested one in a torn tail.

    A torn tail can end in ``]`` (``{"args": [1, 2]``, or a string ``"x]``). Cheap cases
    first: a bracket at the start of its line after a whole canonical entry line (our own
    tail), or after an indented line (json.dump(indent=N) puts only the top-level bracket at
    column 0). Otherwise (compact layouts, torn tails) the last complete element must end
    right before the bracket: valid JSON text is proven by one parse, other text by the
    tolerant parser.
    """
    if last > 0 and os.pread(fd, 1, last - 1) == b"\n":
        line = line_ending_at(fd, before + 1)
        if line[:1] in (b" ", b"\t"):
            return True
        if is_entry_line(line) and last_non_ws(fd, before + 1 - len(line))[1] not in AFTER_END:
            try:
                parse_entry_line(line)
            except JSONDecodeError:
                pass
            else:
                return True
    try:  # valid JSON text (a single-line legacy log): one parse at C speed proves it
        return isinstance(loads(os.pread(fd, last + 1, 0).removeprefix(BOM)), list)
    except JSONDecodeError:
        # The tolerant parser, only for such rare tails: an append does not import it.
        from betty_otel._store.parser import last_complete_element  # noqa: PLC0415

        return last_complete_element(fd, last + 1) == before + 1


def _closes_damage(fd: int, last: int) -> bool:
    """True when the ``]`` at last, alone on its line at column 0, closes an array of
    entries whose last element is damaged (a flipped bit, an edit, a power loss that kept
    the bracket but not all before it).

    That is no torn append of ours (our bracket is written last, after a whole entry
    line), nor an old writer's dump still landing (its bracket lands last): new entries
    go after the damage, which readers skip and report as damage anywhere in the array;
    the file is neither cut nor moved aside. json.dump(indent=N) indents nested brackets.
    """
    if line_ending_at(fd, last + 1) != b"]":
        return False
    from betty_otel._store.parser import array_close, array_prefix  # noqa: PLC0415

    end, entries = array_prefix(fd, last + 1)
    if not entries or end <= head_bracket(fd) + 1:
        return False
    rest = os.pread(fd, last + 1 - end, end)
    # The readers must close the array at this very bracket (not at an earlier one, which
    # new entries would follow), after damage that no torn append of ours leaves.
    return array_close(rest) == len(rest) and not is_torn_append(rest)


def is_torn_append(data: bytes) -> bool:
    """True when data, the bytes after the last complete entry, can be a torn append.

    That is: nothing but whitespace; the array's closing bracket (and anything after
    it: bytes added to a complete file); a separator, then nothing or a bracket; or
    (after a separator or not) the start of an entry cut short: ``{``, then a key,
    valid UTF-8 JSON text (a last character cut in half allowed) in which the
    object never closes. NUL bytes at the end (a crash that extended the file but
    not its data) are allowed too. Anything else (``[1, 2``, ``[ini]``, binary after ``[``)
    is not a torn append of ours: such a file is moved aside whole, never cut.
    """
    rest = data.lstrip(WHITESPACE)
    if rest[:1] == b",":
        rest = rest[1:].lstrip(WHITESPACE)
    if rest[:1] == b"]":
        return True
    rest = rest.rstrip(b"\0")
    if not rest:
        return True
    if rest[:1] != b"{" or rest[1:].lstrip(WHITESPACE)[:1] not in (b"", b'"'):
        return False
    if re.search(_NOT_JSON_TEXT, rest) or not _never_closes(rest):
        return False
    try:
        rest.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.reason == "unexpected end of data"
    return True


def _never_closes(text: bytes) -> bool:
    """True when the object that text starts never closes (and no string spans a line)."""
    from betty_otel._store.parser import TOKENS  # noqa: PLC0415 - repair only

    depth = 0
    lines = text.split(b"\n")
    for number, line in enumerate(lines):
        position = 0
        for match in TOKENS.finditer(line):
            if b'"' in line[position : match.start()]:
                break  # a string that does not end on its line: cut short
            position = match.end()
            token = match.group()
            if token in (b"{", b"["):
                depth += 1
            elif token in (b"}", b"]"):
                depth -= 1
                if depth == 0:
                    return False
        else:
            if b'"' not in line[position:]:
                continue
        # Only the very last string of the text may be cut short.
        return number == len(lines) - 1
    return True
