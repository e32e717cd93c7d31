"""Entries found by their text: the few entries of given trace ids, without parsing the rest.

`scan_entries` reads each file with the column reader (`betty_otel.query.columns`), a
large one on two CPUs as stats reads it. Canonical lines are searched for the wanted
ids as orjson writes them (or for other needles), in C, and only the lines that
contain one, or a backslash (an escape could spell an id differently), are parsed;
every other entry is parsed as the reader meets it. The entries come in the order of
one read of the log; damage is logged, by the process that reads here.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

from betty_otel._jsontext import JSONDecodeError
from betty_otel._store import Damage, parse_entry_line, warn_damage
from betty_otel.query.blocks import Block, line_pattern, lines_with, scan_files, trace_needles
from betty_otel.query.columns import ColumnReader, read_file
from betty_otel.query.filters import Filters

__all__ = ["scan_entries"]

NOT_AN_ENTRY = "entry line is not valid JSON"
"""The damage of a canonical line with a needle that does not parse."""


class _Finder(ColumnReader):
    """The entries of one file (or part of it) that pass filters, in file order.

    A block's entries are taken with the block (`seen`), its canonical lines and the
    entries the parser completed in it merged by their place in the file, so the
    order does not depend on where blocks or parts fall.
    """

    def __init__(
        self,
        fd: int,
        filters: Filters,
        needles: list[bytes],
        report: Callable[[Damage], None],
        *,
        start: int = 0,
    ) -> None:
        super().__init__(fd, line_pattern(bare=True), start=start)
        self.filters = filters
        self.needles = needles
        self.report = report
        self.found: list[dict[str, Any]] = []

    def add_entry(self, entry: dict[str, Any]) -> None:
        """Nothing: a block's parsed entries are taken with it, in their place (`seen`)."""

    def add_damage(self, item: Damage) -> None:
        self.report(item)

    def seen(self, block: Block) -> None:
        """The block's canonical lines with a needle, parsed, and its other entries, in the
        order of the file."""
        matches = self.filters.matches
        lines: list[tuple[int, dict[str, Any]]] = []
        for start, end in block.lines:
            for at, line in lines_with(block.data, start, end, self.needles):
                try:
                    value = parse_entry_line(line)
                except JSONDecodeError:
                    self.report(Damage(-1, len(line), NOT_AN_ENTRY))
                    continue
                if isinstance(value, dict) and matches(value):
                    lines.append((block.base + at, value))
        parsed = [
            (end, entry)
            for end, entry in zip(block.entry_ends, block.entries, strict=True)
            if matches(entry)
        ]
        self.found.extend(entry for _, entry in heapq.merge(lines, parsed, key=itemgetter(0)))

    def take(self, part: _Part) -> None:
        """A helper's part: its entries, then its damage (logged here)."""
        self.found.extend(part.found)
        for item in part.damage:
            self.report(item)
        self.end = max(self.end, part.end)


@dataclass
class _Part:
    """What a helper found in one part of a file (`betty_otel.query.columns.read_parts`)."""

    index: int
    found: list[dict[str, Any]]
    damage: list[Damage]
    end: int
    seam: bool


def _read_part(
    fd: int, size: int, points: list[int], index: int, filters: Filters, needles: list[bytes]
) -> _Part:
    """What a helper reads: part index of the file."""
    low, high = points[index], points[index + 1]
    damage: list[Damage] = []
    reader = _Finder(fd, filters, needles, damage.append, start=low)
    reader.read(low, high, final=high == size)
    return _Part(index, reader.found, damage, reader.end, reader.parser.at_seam)


def scan_entries(
    path: Path, filters: Filters, *, needles: list[bytes] | None = None
) -> list[dict[str, Any]]:
    """Every entry passing filters (which must select trace ids, unless needles are
    given), oldest first.

    Raises:
        StoreError: a file of the log is not a regular file or cannot be read.
    """
    if needles is None:
        assert filters.trace_id is not None
        needles = trace_needles(filters.trace_id)
    wanted = [*needles, b"\\"]
    found: list[dict[str, Any]] = []

    def on_file(fd: int, size: int, file: Path) -> None:
        reader = _Finder(fd, filters, wanted, warn_damage(file))

        def part(points: list[int], index: int) -> _Part:
            return _read_part(fd, size, points, index, filters, wanted)

        read_file(reader, size, part, _Part)
        found.extend(reader.found)

    scan_files(path, on_file)
    return found
