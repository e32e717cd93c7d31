"""The forward block scanner: whole-log reads a block at a time, mostly in C.

- `scan_fd` reads a file forward a block at a time: canonical lines (keys in the
  store's order) are matched by one compiled regex that extracts the few fields
  stats needs in C; every other line (the old tools' ``indent=2``, a torn tail,
  damage) goes through the store's tolerant parser.
- `lines_with` and `trace_needles` find the lines that hold given trace ids, in C
  (`betty_otel.query.needles.scan_entries`).
"""

from __future__ import annotations

import heapq
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

import orjson

from betty_otel._store import (
    Damage,
    ForwardParser,
    open_log_files,
    read_errors,
)

__all__ = [
    "Block",
    "LinePattern",
    "line_pattern",
    "lines_with",
    "scan_fd",
    "scan_files",
    "trace_needles",
]

_SCAN_BLOCK: Final = 1 << 20
_ID: Final = rb'(?:null|"[^"\\\n]*")'
_TRACE_TAIL: Final = (
    rb'(?:[^\n]*,"trace_id":(null|"[^"\\\n]*"),"span_id":' + _ID + rb',"parent_span_id":'
    + _ID + rb"|[^\n]*)\},?"
)  # fmt: skip
"""A line's end, its trace id captured (raw, with quotes) when the line ends with the ids as
the store writes them, else None."""


@dataclass(frozen=True)
class LinePattern:
    """A canonical entry line, as the store writes it: one compact entry per line.

    ``block`` matches one whole line (after its newline) that starts with the keys
    timestamp, skill, status, duration_ms in this order and ends with ``}`` or
    ``},``. `re.split` of a block by it leaves nothing between two such lines, so
    one C call both extracts the captures of every line and proves that every
    line was one. Captured strings are raw JSON text (still escaped): ``[^"]*``
    stops at the first quote, which in valid JSON followed by ``","key":`` is the
    string's real end. A capture may span a newline (a line cut inside a value, the
    rest on the next line): the scanner takes no such match (`scan_fd`; a bare
    pattern, which captures nothing, stands for physical lines anyway), as those
    lines are damage, not an entry (``[^"\\n]`` in the pattern would cost a third
    of the scan). A duration is captured only when it is a scalar other than a
    string (a number, null, true, false), so each capture is a whole JSON value; a
    line whose captures are not valid JSON is caught when decoded
    (`betty_otel.query.stats`).
    """

    block: re.Pattern[bytes]
    groups: int
    stamp: bool
    """The timestamp is captured (first)."""
    caller: bool
    """The caller is captured (after the duration)."""


@lru_cache(maxsize=16)
def line_pattern(
    *,
    stamp: bool = False,
    caller: bool = False,
    bare: bool = False,
    trace: bool = False,
    any_caller: bool = False,
) -> LinePattern:
    """Capture, in line order: [timestamp], skill+status, duration, [caller], [trace id];
    or nothing (bare).

    skill and status are captured as one span (``SKILL","status":"STATUS``), so
    grouping needs no tuple per line. The caller key is only required when it is
    captured: every pattern left out makes the scan faster. With any_caller, the caller
    is captured when it is text right after the duration, else None. With trace, the
    trace id is captured as its raw JSON value (``"…"`` or ``null``) when the line ends
    with the ids as the store writes them (``,"trace_id":"…","span_id":"…",
    "parent_span_id":null}``), else None. Neither changes which lines match. Such a
    trace id is the entry's own: a quote after a comma is no string's content, and the
    line's last brace closes the object that holds it.
    """

    def cap(value: bytes, wanted: bool = True) -> bytes:
        return value if wanted and not bare else re.sub(rb"\((?!\?)", b"(?:", value)

    body = (
        rb'\{"timestamp":'
        + cap(rb'"([^"]*)"', stamp)
        + cap(rb',"skill":"([^"]*","status":"[^"]*)"')
        + cap(rb',"duration_ms":([^,"\[{]*),')
        + (cap(rb'"caller":"([^"]*)",') if caller and not bare else b"")
        + (cap(rb'(?:"caller":"([^"]*)",)?') if any_caller and not caller else b"")
        + (cap(_TRACE_TAIL) if trace else rb"[^\n]*\},?")
    )
    block = re.compile(b"\n" + body + rb"\r?(?=\n)")
    return LinePattern(block, block.groups, stamp and not bare, (caller or any_caller) and not bare)


@dataclass
class Block:
    """What the scanner found in one block of data.

    base: the file offset of data; columns: the captures of its canonical lines,
    one list per capture group; lines: (start, end) of its canonical lines' text
    in data, or of runs of them; entries: its other entries, parsed; last_end: the
    file offset just after the last element completed in this block (-1: none),
    where a later read can resume (see `scan_fd`'s start).
    """

    base: int
    data: bytes
    columns: list[list[bytes]]
    lines: list[tuple[int, int]]
    entries: list[dict[str, Any]]
    last_end: int = -1
    entry_ends: list[int] = field(default_factory=list)
    """The file offset just after each of entries (in the same order)."""


def scan_fd(
    fd: int,
    size: int,
    pattern: LinePattern,
    *,
    start: int = 0,
    parser: ForwardParser | None = None,
    final: bool = True,
) -> Iterator[Block | Damage]:
    """Read one file forward; yield what each block holds, then the damage found.

    With start, reading begins there, inside the array just after a complete
    element (a `Block.last_end` of an earlier read of the same bytes), or at the
    start of a line where parser (the state of a read that stopped there) goes on.
    Not final, size is the start of a line where reading stops for now: the damage
    found so far is yielded, the parser left open (for reading a file in parts).

    A block whose lines are all canonical, read while the parser is between
    elements, is taken from the regex captures alone; the parser then skips one
    entry line (with the comma of the block's last line), so its state moves on
    exactly as if it had read the block. Every other line (other
    layouts, damage, the first and last lines of the array, a last line without a
    newline) is read by the store's tolerant parser, entry by entry. Which way a
    line is read depends on its bytes and the parser's state alone, never on where
    the read started or its blocks fall.
    """
    if parser is None:
        parser = ForwardParser(in_array=start > 0)
    # Each block starts at the newline that ends the last whole line read before it (the
    # first at the one before start, when start is a line start): every line is then
    # seen whole after its newline, and so is read the same way (by the regex or the
    # parser) wherever a read starts and its blocks fall (a summary's tail, a part).
    offset = start - 1 if 0 < start < size else start
    after_newline = False
    carry = b""
    carry_offset = start
    while offset < size:
        data = os.pread(fd, min(_SCAN_BLOCK, size - offset), offset)
        if not data:
            break
        base = offset
        if base < start:  # the byte before start: taken when it is a newline
            after_newline = data[:1] == b"\n"
            if not after_newline:
                data = data[1:]
                base = offset = start
        first = data.find(b"\n")
        if first < 0:
            carry += data
            offset += len(data)
            continue
        found = Block(base, data, [[] for _ in range(pattern.groups)], [], [])
        if not after_newline:
            _feed(parser, carry_offset, carry + data[:first], found)
        last = data.rfind(b"\n")
        if first < last:
            _read_region(parser, pattern, data, base, first, last, found)
        after_newline = last > 0 and base + len(data) < size
        carry = b"" if after_newline else data[last + 1 :]
        carry_offset = base + last + 1
        offset = base + last if after_newline else base + len(data)
        yield found
    if carry:
        found = Block(carry_offset, carry, [], [], [])
        _feed(parser, carry_offset, carry, found)
        yield found
    if final:
        # An element whose closing brace is in the file is complete even before its
        # separator or the bracket (an old writer killed right after it): as the readers.
        found = Block(offset, b"", [], [], [])
        for end, value in parser.flush():
            found.last_end = max(found.last_end, end)
            if isinstance(value, dict):
                found.entries.append(value)
                found.entry_ends.append(end)
        if found.last_end >= 0:
            yield found
        parser.finish()
    yield from parser.take_damage()


def _read_region(
    parser: ForwardParser,
    pattern: LinePattern,
    data: bytes,
    base: int,
    first: int,
    last: int,
    found: Block,
) -> None:
    """Read the lines between the newlines at first and last of data (at offset base).

    When every line is canonical, one `re.split` takes them all. Otherwise the
    canonical lines are still taken by regex, and the others are fed to the parser
    in between, in order.
    """
    stride = pattern.groups + 1
    if parser.between_elements:
        parts = pattern.block.split(memoryview(data)[first : last + 1])
        gaps = parts[::stride]
        if (
            len(gaps) > 1
            and gaps[-1] == b"\n"
            and gaps.count(b"") == len(gaps) - 1
            # The matches tile the region, each from its own newline: one newline each
            # (the region ends with one more) means no match spans two lines.
            and data.count(b"\n", first, last + 1) == len(gaps)
        ):
            for index, column in enumerate(found.columns, 1):
                column.extend(parts[index::stride])
            found.lines.append((first + 1, last))
            found.last_end = max(found.last_end, base + _element_end(data, last))
            parser.skip_entry_line(comma=_ends_with_comma(data, last))
            return
    position = first  # the newline that ends the last line read
    skipped: bool | None = None  # the comma of the last line taken by regex, not yet skipped
    for match in pattern.block.finditer(data, first, last + 1):
        start, end = match.span()
        if data.find(b"\n", start + 1, end) >= 0:
            continue  # a match across two lines (the first cut inside a value): parsed
        if start > position or not parser.between_elements:
            if skipped is not None:
                parser.skip_entry_line(comma=skipped)
                skipped = None
            _feed_lines(parser, data, base, position, start, found)
        if parser.between_elements:
            for column, value in zip(found.columns, match.groups(), strict=True):
                column.append(value)
            found.lines.append((start + 1, end))
            found.last_end = max(found.last_end, base + _element_end(data, end))
            skipped = _ends_with_comma(data, end)
        else:
            _feed(parser, base + start + 1, data[start + 1 : end], found)
        position = end
    if skipped is not None:
        parser.skip_entry_line(comma=skipped)
    _feed_lines(parser, data, base, position, last, found)


def _element_end(data: bytes, end: int) -> int:
    """Offset in data just after the closing brace of the canonical line ending at end."""
    if data[end - 1 : end] == b"\r":
        end -= 1
    return end - 1 if data[end - 1 : end] == b"," else end


def _ends_with_comma(data: bytes, end: int) -> bool:
    """True when the canonical line that ends at end (a newline) ends with a separator comma."""
    return data[max(0, end - 2) : end].rstrip(b"\r").endswith(b",")


def _feed_lines(
    parser: ForwardParser, data: bytes, base: int, start: int, end: int, found: Block
) -> None:
    """Feed the lines after the newline at start, up to end (a newline or a match)."""
    position = start + 1
    while position <= end:
        newline = data.find(b"\n", position, end)
        stop = end if newline < 0 else newline
        _feed(parser, base + position, data[position:stop], found)
        position = stop + 1


def _feed(parser: ForwardParser, offset: int, line: bytes, found: Block) -> None:
    """Read one line with the store's parser; keep the objects it completes."""
    for end, value in parser.feed(offset, line):
        found.last_end = max(found.last_end, end)
        if isinstance(value, dict):
            found.entries.append(value)
            found.entry_ends.append(end)


def scan_files(path: Path, on_file: Callable[[int, int, Path], None], rotated: bool = True) -> None:
    """Call on_file(fd, size, file) for each readable log file, oldest first.

    Raises:
        StoreError: a file of the log is not a regular file or cannot be read.
    """
    for fd, size, file in open_log_files(path, rotated=rotated, newest_first=False):
        with read_errors(file):
            on_file(fd, size, file)


def trace_needles(trace_ids: Iterable[str]) -> list[bytes]:
    """The trace ids as a canonical line spells them (orjson's escapes), for a search in C."""
    return [orjson.dumps(value)[1:-1] for value in trace_ids]


def lines_with(
    data: bytes, start: int, end: int, needles: list[bytes]
) -> Iterator[tuple[int, bytes]]:
    """The lines of data[start:end] that contain one of needles, each once, in order, with
    where each starts in data."""
    positions = [(data.find(needle, start, end), needle) for needle in needles]
    heap = [(position, needle) for position, needle in positions if position >= 0]
    heapq.heapify(heap)
    while heap:
        position, needle = heapq.heappop(heap)
        if position < start:  # inside a line already yielded
            position = data.find(needle, start, end)
            if position >= 0:
                heapq.heappush(heap, (position, needle))
            continue
        line_start = data.rfind(b"\n", start, position) + 1 or start
        line_end = data.find(b"\n", position, end)
        line_end = end if line_end < 0 else line_end
        yield line_start, data[line_start:line_end].rstrip(b"\r")
        start = line_end + 1
        position = data.find(needle, start, end)
        if position >= 0:
            heapq.heappush(heap, (position, needle))
