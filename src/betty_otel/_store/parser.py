"""The tolerant parser: a JSON array in any layout, read line by line, damage skipped.

Canonical lines parse directly; other layouts go through a small tokenizer that
tracks nesting (JSON strings cannot span lines, so string state is per line). A
damaged region resynchronises at the next line, so one bad byte costs one entry.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Final

from betty_otel._jsontext import JSONDecodeError, loads
from betty_otel._store.format import (
    AFTER_END,
    BOM,
    WHITESPACE,
    entry_line_end,
    is_entry_line,
    parse_entry_line,
)
from betty_otel._store.lines import last_non_ws, lines_backward, lines_forward
from betty_otel._store.tail import is_torn_append

__all__ = [
    "TOKENS",
    "Damage",
    "ForwardParser",
    "array_close",
    "array_prefix",
    "ended",
    "last_complete_element",
    "parse_line_alone",
]

TOKENS: Final = re.compile(rb'"(?:[^"\\\n]|\\.)*"|[\[\]{},]')
"""Structural tokens of one line (strings whole; a lone ``"`` starts an unterminated one).
JSON strings never contain a raw newline."""


class Damage:
    """A region of the file that is not a complete entry: a record, compared by value.

    A plain class, not a dataclass: appends import this module, and a one-shot capture
    must not pay for importing dataclasses.
    """

    __slots__ = ("length", "offset", "reason")

    def __init__(self, offset: int, length: int, reason: str) -> None:
        self.offset = offset
        self.length = length
        self.reason = reason

    def _fields(self) -> tuple[int, int, str]:
        return self.offset, self.length, self.reason

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Damage):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return f"Damage(offset={self.offset!r}, length={self.length!r}, reason={self.reason!r})"


class ForwardParser:
    """Tolerant forward parser of a JSON array, fed one raw line at a time.

    `feed` yields each element a line completes. Damage is only reported once a
    later element parses (`take_damage`); what is still pending at the end is the
    torn tail (`finish`). With in_array, the opening bracket is taken as read
    (for parsing one line by itself).
    """

    def __init__(self, *, in_array: bool = False, after_objects: bool = False) -> None:
        self._depth = 1 if in_array else 0
        self._started = in_array
        self._closed = False
        self._parts: list[bytes] = []
        self._part_offset = -1
        self._damage: list[Damage] = []
        self._pending: list[Damage] = []
        self._after_comma = False  # a separator was read and no element after it yet
        # The line that opens a top-level element in an indented layout ("  {" for the
        # old tools' indent=2): learnt from the first element, it is where damage that
        # unbalanced the nesting resynchronises.
        self._element_start: bytes | None = None
        self._objects = after_objects  # an object was read whole: the array holds entries
        self.closed_at = -1
        """The offset just after the array's closing bracket, once read (-1: not yet)."""

    @property
    def between_elements(self) -> bool:
        """True inside the array, between two elements: a whole entry line may come next."""
        return self._started and not self._closed and self._depth == 1 and not self._parts

    @property
    def at_seam(self) -> bool:
        """True between elements with nothing pending and no indented layout learnt.

        Then a parser made ``in_array`` that is fed the same whole entry line next
        continues exactly as this one: a file can be read in parts split there.
        """
        return self.between_elements and not self._pending and self._element_start is None

    def skip_entry_line(self, *, comma: bool) -> None:
        """Move on as if a whole entry line (ending in a comma, or not) had been fed.

        For a caller that read canonical lines itself; only valid `between_elements`.
        """
        self._accept()
        self._objects = True
        self._after_comma = comma

    def take_damage(self) -> list[Damage]:
        """The damage found since the last call (regions followed by a complete element)."""
        found, self._damage = self._damage, []
        return found

    def feed(self, offset: int, raw: bytes) -> Iterator[tuple[int, Any]]:
        """Feed one line; yield (end offset, value) for each element it completes."""
        line = raw
        if not self._started:
            opened = self._open_array(offset, line)
            if opened is None:
                return
            offset, line = opened
        body = line.rstrip(b"\r")
        if is_entry_line(body):
            try:
                value = parse_entry_line(body)
            except JSONDecodeError:
                pass  # damage, or several elements on one line ("[{..},{..},"): tokenize it
            else:
                # A whole entry line after damage that left the nesting wrong (an
                # unbalanced brace, a stray bracket): resynchronise, as the newest-first
                # reader does, instead of losing every later entry.
                yield from self._restart()
                self._accept()
                self._objects = True
                self._after_comma = body[-1:] == b","
                yield entry_line_end(offset, line), value
                return
        if body == self._element_start:
            # A damaged element left the nesting wrong; a new top-level element starts here.
            yield from self._restart()
        if self._closed:
            if line.strip(WHITESPACE):
                self._pending.append(Damage(offset, len(line), "data after the closing bracket"))
            return
        self._learn_element_start(body)
        yield from self._tokenize(offset, line)
        if self._parts and body.rstrip(b" \t") == b"]":
            self._close_swallowed()

    def flush(self) -> Iterator[tuple[int, Any]]:
        """End of input: an element whose closing brace is in the file is complete, even
        before its separator or the bracket arrived (an old writer killed right after it)."""
        self._close_swallowed()
        if self._parts and self._depth == 1 and not self._closed:
            yield from self._finish(nuls=True)  # a crash may have extended the file with NULs

    def finish(self) -> list[Damage]:
        """End of input: return the torn tail (an open element, or damage still pending)."""
        self._close_swallowed()
        torn: list[Damage] = []
        if self._parts:
            torn.append(Damage(self._part_offset, len(b"".join(self._parts)), "torn tail"))
        elif self._started and not self._closed:
            torn.append(Damage(-1, 0, "missing closing bracket"))
        torn.extend(self._pending)
        self._pending = []
        return torn

    def _close_swallowed(self) -> None:
        """An open element whose last line is a lone ``]`` swallowed the array's closing
        bracket (its own braces did not balance): the array is closed after it, so it is
        damage, not a torn tail, as the newest-first reader, which meets that bracket first,
        reports it. A lone ``]`` at column 0 is the array's: json.dump(indent=N) indents
        nested ones, and a valid element still open is a torn append's prefix."""
        if not self._parts or self._closed or not self._objects:
            return
        text = b"".join(self._parts).rstrip(WHITESPACE + b"\0")  # NULs: a crash's extension
        # A torn append can end so too (``{"a": [1,`` then a nested bracket): the writer
        # cuts it, so readers skip it as a torn tail.
        if not text.endswith(b"\n]") or is_torn_append(text):
            return
        self._pending.append(Damage(self._part_offset, len(text) - 1, "element is not valid JSON"))
        self._accept()
        self.closed_at = self._part_offset + len(text)
        self._parts = []
        self._part_offset = -1
        self._depth = 0
        self._closed = True

    def _open_array(self, offset: int, line: bytes) -> tuple[int, bytes] | None:
        """Before the array: skip a BOM, whitespace and ``[``; the rest of the line, if any."""
        if offset == 0 and line.startswith(BOM):
            line = line[len(BOM) :]
            offset += len(BOM)
        stripped = line.lstrip(WHITESPACE)
        if not stripped:
            return None
        self._started = True
        if stripped[:1] != b"[":
            self._closed = True
            self._pending.append(Damage(offset, len(line), "not a JSON array"))
            return None
        self._depth = 1
        skip = len(line) - len(stripped) + 1
        return offset + skip, line[skip:]

    def _learn_element_start(self, body: bytes) -> None:
        """Remember an indented layout's element-opening line ("  {"), from the first one."""
        if (
            self._element_start is None
            and self._depth == 1
            and not self._parts
            and body[-1:] == b"{"
            and body[:-1].strip(b" \t") == b""
            and body[:-1]
        ):
            self._element_start = body

    def _restart(self) -> Iterator[tuple[int, Any]]:
        """A top-level element starts here: an open one is finished (a whole element that
        only lacks its comma reads, as the newest-first reader reads it) or damage, and
        nesting is reset."""
        if not (self._parts or self._depth != 1 or self._closed):
            return
        if self._parts and self._depth == 1 and not self._closed:
            yield from self._finish()
        elif self._parts:
            length = len(b"".join(self._parts))
            self._pending.append(Damage(self._part_offset, length, "element is not valid JSON"))
        self._parts = []
        self._part_offset = -1
        self._depth = 1
        self._closed = False

    def _accept(self) -> None:
        """A complete element parsed: earlier pending problems are damage, not a torn tail."""
        if self._pending:
            self._damage.extend(self._pending)
            self._pending = []

    def _add_part(self, offset: int, part: bytes) -> None:
        if self._part_offset < 0:
            stripped = part.lstrip(WHITESPACE)
            if not stripped:
                return
            offset += len(part) - len(stripped)
            part = stripped
            self._part_offset = offset
        self._parts.append(part)
        self._after_comma = False

    def _finish(self, *, nuls: bool = False) -> Iterator[tuple[int, Any]]:
        """The element read so far (nuls: at the end of input, NULs after it dropped)."""
        element = b"".join(self._parts)
        start = self._part_offset
        self._parts = []
        self._part_offset = -1
        text = element.rstrip(WHITESPACE + b"\0" if nuls else WHITESPACE)
        if not text:
            return
        try:
            value = loads(text)
        except JSONDecodeError:
            self._pending.append(Damage(start, len(element), "element is not valid JSON"))
            return
        self._accept()
        self._objects = self._objects or isinstance(value, dict)
        yield start + len(text), value

    def _resync(self, offset: int, length: int, reason: str) -> None:
        self._pending.append(Damage(offset, length, reason))
        self._parts = []
        self._part_offset = -1
        self._depth = 1

    def _tokenize(self, offset: int, line: bytes) -> Iterator[tuple[int, Any]]:
        start = 0
        for match in TOKENS.finditer(line):
            token = match.group()
            if len(token) > 1 or token == b'"':
                if token == b'"':
                    self._resync(offset, len(line), "unterminated string")
                    return
                continue
            index = match.start()
            if token in b"{[":
                self._depth += 1
            elif token in b"}]":
                if token == b"}" and self._depth == 1:  # a brace no object opened: skipped
                    self._add_part(offset + start, line[start:index])
                    self._pending.append(Damage(offset + index, 1, "unbalanced brace"))
                    start = index + 1
                    continue
                self._depth -= 1
                if self._depth == 0:
                    self._add_part(offset + start, line[start:index])
                    yield from self._close_array(offset, line, index)
                    return
            elif self._depth == 1:  # the comma between two elements
                self._add_part(offset + start, line[start:index])
                yield from self._finish()
                self._after_comma = True
                start = index + 1
        self._add_part(offset + start, line[start:] + b"\n")

    def _close_array(self, offset: int, line: bytes, index: int) -> Iterator[tuple[int, Any]]:
        """The array's closing bracket at line[index]: finish the last element, end the array.

        Damage before the bracket is damage, not a torn tail: no append is still landing
        in an array that is closed after it (the newest-first reader says so too). A comma
        glued to the bracket stays a torn tail: a writer that died one byte into its
        append leaves ``..},]``.
        """
        comma = self._after_comma and not self._parts  # "..},]": json.load rejects it
        yield from self._finish()
        if self._objects and index == 0:
            self._accept()  # a bracket at column 0 after entries: as the writer judges
        if comma:
            self._pending.append(Damage(offset + index, 1, "comma before the bracket"))
        self._closed = True
        self.closed_at = offset + index + 1
        rest = line[index + 1 :]
        if rest.strip(WHITESPACE):
            self._pending.append(
                Damage(offset + index + 1, len(rest), "data after the closing bracket")
            )


def array_close(data: bytes) -> int:
    """Where the array closes in data, the bytes after a whole entry inside it: the offset
    in data just after the bracket that closes it as the readers read it, or -1."""
    parser = ForwardParser(in_array=True, after_objects=True)
    position = 0
    for line in data.split(b"\n"):
        for _ in parser.feed(position, line):
            pass  # only where it closes matters
        if parser.closed_at >= 0:
            return parser.closed_at
        position += len(line) + 1
    parser.finish()
    return parser.closed_at


def parse_line_alone(offset: int, raw: bytes) -> tuple[list[tuple[int, Any]], list[Damage]]:
    """Parse one line of elements by itself: ((end, value) of whole elements, damaged regions).

    For a line starting with ``{`` that is not one whole entry: damage, lines merged by a
    lost newline, or an entry glued to a torn write (``{..},]`` when a writer died one
    byte into its append). The forward reader keeps the whole elements such a line holds.
    """
    parser = ForwardParser(in_array=True)
    found = [*parser.feed(offset, raw), *parser.flush()]
    torn = [ended(item) for item in parser.finish() if item.offset >= 0]
    return found, [*parser.take_damage(), *torn]


def ended(item: Damage) -> Damage:
    """A torn tail known to be followed (by entries, or the end of its line when a line
    is parsed alone) is an element that is not valid JSON, as the forward reader names
    it once a later element or the bracket comes."""
    if item.reason != "torn tail":
        return item
    return Damage(item.offset, item.length, "element is not valid JSON")


def last_complete_element(fd: int, size: int) -> int:
    """Offset just after the last complete element, or just after ``[`` when there is none."""
    return array_prefix(fd, size, check=False)[0]


def array_prefix(fd: int, size: int, *, check: bool = True) -> tuple[int, bool]:
    """(end, entries): what a repair may keep of the first size bytes of the file.

    end is the offset just after the last complete element, or just after ``[`` when
    there is none. entries is True when the elements up to there are JSON objects:
    all of them for a file parsed forward; the last and the first when a canonical
    tail is found by reading backwards (every line between is then an entry line).
    Without check, the first element is not read (entries is then about the last).

    Canonical files are scanned backwards line by line and stop at the first whole
    entry line; other layouts are parsed forward (rare: only a torn legacy file). An entry
    line right after ``]`` or a separator-less ``}`` lies after the array's end (lines added
    to a complete file) and is not kept.
    """
    for offset, line in lines_backward(fd, size):
        body = line.rstrip(b"\r")
        if body[:1] == b"{" and last_non_ws(fd, offset)[1] in AFTER_END:
            continue
        if is_entry_line(body):
            try:
                parse_entry_line(body)
            except JSONDecodeError:
                pass
            else:
                return entry_line_end(offset, line), not check or _first_is_object(fd, size)
        if body[:1] == b"{":
            found, _ = parse_line_alone(offset, line)
            if found:
                end, value = found[-1]
                return end, isinstance(value, dict) and (not check or _first_is_object(fd, size))
    parser = ForwardParser()
    last_end = -1
    bracket = -1
    objects = True
    for offset, line in lines_forward(fd, 0, size):
        if bracket < 0 and b"[" in line:
            bracket = offset + line.index(b"[") + 1
        for end, value in parser.feed(offset, line):
            last_end = end
            objects = objects and isinstance(value, dict)
    for end, value in parser.flush():
        last_end = end
        objects = objects and isinstance(value, dict)
    return (last_end if last_end >= 0 else max(bracket, 0)), objects


def _first_is_object(fd: int, size: int) -> bool:
    """True when the array's first complete element is a JSON object (reads only up to it)."""
    parser = ForwardParser()
    for offset, line in lines_forward(fd, 0, size):
        for _, value in parser.feed(offset, line):
            return isinstance(value, dict)
    return any(isinstance(value, dict) for _, value in parser.flush())
