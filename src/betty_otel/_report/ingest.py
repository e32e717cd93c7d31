"""Reading the log for the report: one forward pass over every file, in bounded memory.

Canonical lines (the store's layout) come from the query layer's block scanner as
columns of raw captures (timestamp, skill+status, duration, and caller when a
filter needs it), which are selected and grouped a block at a time, mostly in C.
A block whose captures are unusual (a timestamp not in UTC, an escape, a duration
that is not a number) is parsed line by line instead, as is every entry in another
layout (the old tools' indent=2). Damage is counted for the page and logged, as
by every reader.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timezone
from itertools import compress
from operator import itemgetter
from pathlib import Path
from typing import Any, Final

from betty_otel._entry import is_finite_number
from betty_otel._inflight.view import ABANDONED_TEXT, is_abandoned
from betty_otel._jsontext import JSONDecodeError
from betty_otel._report.collect import ReportCounts
from betty_otel._store import (
    Damage,
    iter_entries,
    log_files,
    open_log_files,
    parse_entry_line,
    warn_damage,
)
from betty_otel._timestamps import entry_time
from betty_otel.query import Filters
from betty_otel.query.blocks import Block, line_pattern, lines_with, trace_needles
from betty_otel.query.columns import (
    ColumnReader,
    InexactCapture,
    capture_durations,
    capture_text,
    is_duration,
    read_file,
)

__all__ = ["Progress", "read_log"]

Progress = Callable[[int, int], None]
"""Called with (bytes read, bytes in all files) after each block."""
Progress1 = Callable[[int], None]
"""Called with the bytes of each block (or helper's part) read."""

_ABANDONED_NEEDLES: Final = [ABANDONED_TEXT, b"\\"]
_STAMP_MARKS: Final = ((4, b"-"), (7, b"-"), (10, b"T"), (13, b":"), (16, b":"), (19, b"."))
_STAMP_MARKS_UTC: Final = ((26, b"+"), (27, b"0"), (28, b"0"), (29, b":"), (30, b"0"), (31, b"0"))
_STAMP_DIGITS: Final = (0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22, 23, 24, 25)
_OLD_ERROR: Final = b'"error":'


def _current_layout(block: Block) -> bool:
    """True when no canonical line of a block is a legacy entry but for its status (each
    ends with the ids, none has the old ``error`` key) nor has a caller that is not
    text, checked in C.

    Else the block's canonical lines are parsed whole, so each entry is counted by one
    rule whatever path reads it (`ReportCounts.seen_entry`, `add_entry`). The captures
    (`_Selection.pattern`) tell which lines end with the ids as the store writes them
    (then their trace_id is their own) and which have a text caller after their
    duration: when all have, one ``"caller"`` a line means no other (a duplicate key
    counts by its last value). Conservative: a line that only looks doubtful (an
    ``"error":`` key or a ``"caller"`` text inside inputs, an escape ``\\u`` that could
    spell a key) costs a parse, no more.
    """
    callers, ids = block.columns[3], block.columns[-1]
    if None in ids or None in callers:
        return False
    data = block.data
    found = 0
    for start, end in block.lines:  # the canonical lines only: each is judged by its bytes
        if data.find(_OLD_ERROR, start, end) >= 0:
            return False
        if data.find(b"\\", start, end) >= 0 and data.find(b"\\u", start, end) >= 0:
            return False
        found += data.count(b'"caller"', start, end)
    return found == len(callers)


def _utc_stamps(stamps: list[bytes]) -> bool:
    """True when every timestamp has the store's UTC layout (``2025-01-06T14:05:09.123456+00:00``).

    Then bytes order is time order and a prefix is a time bucket (once each is a real
    time: `_real_times`). Checked in C. A byte that is not ASCII (not UTF-8, perhaps:
    the line is then no JSON) sends the block to the line-by-line parse.
    """
    if set(map(len, stamps)) != {32}:
        return False
    joined = b"".join(stamps)
    if not joined.isascii():
        return False
    count = len(stamps)
    return all(joined[at::32] == mark * count for at, mark in (*_STAMP_MARKS, *_STAMP_MARKS_UTC))


def _real_times(stamps: list[bytes]) -> bool:
    """True when every timestamp in the store's UTC layout (`_utc_stamps`) is a real time:
    digits, a date that exists, an hour below 24, minutes and seconds below 60.

    Else the block is parsed whole, where an unreadable time is untimed and matches no
    time filter, as `betty_otel.query.query` and stats read it. In C but for one check
    per distinct hour of the block (a few: a block spans a short time).
    """
    joined = b"".join(stamps)
    if not all(joined[at::32].isdigit() for at in _STAMP_DIGITS):
        return False
    if (joined[14::32] + joined[17::32]).translate(None, b"012345"):  # minutes, seconds
        return False
    return all(map(_is_hour, set(map(itemgetter(slice(0, 13)), stamps))))


def _is_hour(text: bytes) -> bool:
    """A ``YYYY-MM-DDTHH`` of digits that is an hour (year 1 to 9999, a day of its month)."""
    try:
        date.fromisoformat(text[:10].decode())
    except ValueError:
        return False
    return text[11:] < b"24"


def _stamp(moment: datetime | None) -> bytes | None:
    """A time filter bound in the store's timestamp format, for comparing raw bytes.

    Written from the moment itself, not through float seconds, which would round a
    bound near the end of year 9999 past it (and move any bound by a microsecond).
    """
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").encode()


class _Selection:
    """What the filters select, as compared with raw captures (shared by every file's read)."""

    def __init__(self, counts: ReportCounts, filters: Filters) -> None:
        self.counts = counts
        self.filters = filters
        self.pattern = line_pattern(stamp=True, any_caller=True, trace=True)
        self.since = _stamp(filters.since)
        self.until = _stamp(filters.until)
        self.wanted: dict[tuple[bytes, bytes | None], bool] = {}
        """(span, raw caller) -> whether the skill, status and caller filters pass."""
        ids = filters.trace_id
        self.needles = None if ids is None else trace_needles(ids)

    def mask(
        self,
        stamps: list[bytes],
        spans: list[bytes],
        values: list[float | None],
        callers: list[bytes] | None,
        lines: Callable[[], list[bytes]],
    ) -> list[bool] | None:
        """Which lines the filters select; None: all of them (raises InexactCapture)."""
        filters = self.filters
        if filters.empty:
            return None
        given: list[bytes | None] = list(callers) if callers is not None else [None] * len(spans)
        mask = [self._keys_pass(span, caller) for span, caller in zip(spans, given, strict=True)]
        since, until = self.since, self.until
        if since is not None or until is not None:
            low, high = since or b"", until or b"\xff"
            mask = [ok and low <= stamp < high for ok, stamp in zip(mask, stamps, strict=True)]
        minimum = filters.min_duration_ms
        if minimum is not None:
            mask = [
                ok and value is not None and value >= minimum
                for ok, value in zip(mask, values, strict=True)
            ]
        if self.needles is not None:
            mask = [ok and self._in_trace(line) for ok, line in zip(mask, lines(), strict=True)]
        return mask

    def _keys_pass(self, span: bytes, raw_caller: bytes | None) -> bool:
        """The skill, status and caller filters (raises InexactCapture on a capture that is
        not exact JSON text)."""
        found = self.wanted.get((span, raw_caller))
        if found is None:
            key = self.counts.span_key(span)
            caller = None if raw_caller is None else capture_text(raw_caller)
            found = self.filters.match_keys(key.skill, key.word, caller)
            self.wanted[span, raw_caller] = found
        return found

    def _in_trace(self, line: bytes) -> bool:
        """A line with a wanted trace id (parsed to be sure, since only few lines have one)."""
        if not any(needle in line for needle in self.needles or ()):
            return False
        try:
            entry = parse_entry_line(line)
        except JSONDecodeError:
            return False
        return isinstance(entry, dict) and self.filters.matches(entry)


class _Reader(ColumnReader):
    """Feeds every entry of one file to the report's counts, selecting with the filters.

    report: what to do with each damaged region (log it; a helper keeps it for the
    parent, which counts and logs it when it takes the part).
    """

    def __init__(
        self,
        fd: int,
        selection: _Selection,
        progress: Callable[[int], None],
        report: Callable[[Damage], None],
        *,
        start: int = 0,
    ) -> None:
        super().__init__(fd, selection.pattern, start=start)
        self.selection = selection
        self.counts = selection.counts
        self.report = report
        self.progress = progress
        stat = os.fstat(fd)
        self.file = stat.st_dev, stat.st_ino

    def take_columns(self, block: Block) -> list[int]:
        """The canonical lines of one block, from their captures (all parsed whole when
        a capture is not exact or a timestamp is not in the store's UTC layout); every
        line's trace id is indexed, whichever way it is counted."""
        stamps, spans, raw = block.columns[0], block.columns[1], block.columns[2]
        callers = block.columns[3] if self.selection.filters.caller is not None else None
        self.counts.traces.add(self.file, block, block.columns[-1])
        lines = _Lines(block)
        try:
            values = _durations(raw)
            for span in set(spans):
                self.counts.span_key(span)
            mask = self.selection.mask(stamps, spans, values, callers, lines)
        except InexactCapture:
            return list(range(len(stamps)))
        if not (_utc_stamps(stamps) and _real_times(stamps) and _current_layout(block)):
            return list(range(len(stamps)))
        self.counts.seen_columns(stamps, spans)
        if mask is not None:
            stamps = list(compress(stamps, mask))
            spans = list(compress(spans, mask))
            values = list(compress(values, mask))
            lines = _Lines(block, mask, lines())
        if stamps:
            self.counts.add_columns(stamps, spans, values, lines.at)
        self._abandoned(block)
        return []

    def _abandoned(self, block: Block) -> None:
        """The selected abandoned entries among a block's canonical lines: only the lines
        that hold the reaper's mark (or an escape, which could spell it otherwise) are parsed."""
        data = block.data
        if ABANDONED_TEXT not in data and b"\\" not in data:
            return
        for start, end in block.lines:
            for _, line in lines_with(data, start, end, _ABANDONED_NEEDLES):
                try:
                    entry = parse_entry_line(line)
                except JSONDecodeError:
                    continue  # damage: counted by the read of the block
                if isinstance(entry, dict):
                    self._count_abandoned(entry)

    def _count_abandoned(self, entry: dict[str, Any]) -> None:
        if is_abandoned(entry) and self.selection.filters.matches(entry):
            self.counts.add_abandoned(entry)

    def add_entry(self, entry: dict[str, Any]) -> None:
        """One parsed entry: counted for the log's health, then added if selected."""
        moment = self.counts.seen_entry(entry)
        if not self.selection.filters.matches(entry):
            return
        value = entry.get("duration_ms")
        duration = float(value) if is_finite_number(value) else None
        self.counts.add_entry(entry, moment, duration)
        if is_abandoned(entry):
            self.counts.add_abandoned(entry)

    def add_damage(self, item: Damage) -> None:
        self.report(item)

    def seen(self, block: Block) -> None:
        if block.entries:  # read by the parser: not in the trace index
            self.counts.traces.lose()
        self.progress(len(block.data))

    def take(self, part: _Part) -> None:
        """Add a helper's part: its counts, then its damage (counted and logged here)."""
        self.counts.merge(part.counts)
        for item in part.damage:
            self.add_damage(item)
        self.end = max(self.end, part.end)
        self.progress(part.size)


@dataclass
class _Part:
    """What a helper counted in one part of a file (`read_parts`), and its damage."""

    index: int
    counts: ReportCounts
    damage: list[Damage]
    end: int
    seam: bool
    size: int
    """The bytes of the part (for progress)."""


def _read_file(fd: int, size: int, file: Path, selection: _Selection, advance: Progress1) -> None:
    """Read one file, a large one on two CPUs: a forked helper counts its last parts
    (`betty_otel.query.parallel`), as stats reads; the counts are those of one read."""
    counts = selection.counts
    warn = warn_damage(file)

    def report(item: Damage) -> None:
        counts.add_damage(file, item)
        warn(item)

    def part(points: list[int], index: int) -> _Part:
        return _read_part(fd, size, points, index, selection)

    read_file(_Reader(fd, selection, advance, report), size, part, _Part)


def _read_part(fd: int, size: int, points: list[int], index: int, selection: _Selection) -> _Part:
    """What a helper reads: part index of the file, counted from the parent's prefix."""
    low, high = points[index], points[index + 1]
    counts = ReportCounts(selection.counts.health.path)
    counts.prefix = selection.counts.prefix
    damage: list[Damage] = []
    reader = _Reader(fd, _Selection(counts, selection.filters), _no_progress, damage.append,
                     start=low)  # fmt: skip
    reader.read(low, high, final=high == size)
    return _Part(index, counts, damage, reader.end, reader.parser.at_seam, high - low)


def _no_progress(_: int) -> None:
    """A helper's blocks: the parent shows the progress of a part when it takes it."""


def _durations(raw: list[bytes]) -> list[float | None]:
    """The durations of a block (None each where not a number; raises InexactCapture)."""
    values, numbers = capture_durations(raw)
    if numbers:  # ints and floats only: compared and stored (as doubles) as they are
        return values
    return [float(value) if is_duration(value) else None for value in values]


def _lines(found: Block) -> list[bytes]:
    """The canonical lines of a block, in the order of its captures."""
    data = found.data
    return [line for start, end in found.lines for line in data[start:end].split(b"\n")]


class _Lines:
    """The canonical lines of a block (selected by mask), split only when asked for."""

    def __init__(
        self, found: Block, mask: list[bool] | None = None, split: list[bytes] | None = None
    ) -> None:
        self.found = found
        self.mask = mask
        self.split = split
        """Every canonical line of the block, when already split."""
        self.cache: list[bytes] | None = None

    def __call__(self) -> list[bytes]:
        if self.cache is None:
            lines = _lines(self.found) if self.split is None else self.split
            self.cache = lines if self.mask is None else list(compress(lines, self.mask))
        return self.cache

    def at(self, indices: list[int]) -> list[bytes]:
        """The selected lines at indices: in a block of one run of lines (the usual one),
        split from the nearer end only as far as the farthest index (the tables keep
        the newest failures, near the end of a block, and a few slow ones)."""
        found = self.found
        if self.cache is not None or len(found.lines) != 1 or not indices:
            lines = self()
            return [lines[index] for index in indices]
        if self.mask is not None:
            chosen = list(compress(range(len(self.mask)), self.mask))
            indices = [chosen[index] for index in indices]
        start, end = found.lines[0]
        text = found.data[start:end]
        count = len(found.columns[0])
        low, high = min(indices), max(indices)
        if count - low <= high:
            pieces = text.rsplit(b"\n", count - low)
            return [pieces[index - count + len(pieces)] for index in indices]
        pieces = text.split(b"\n", high + 1)
        return [pieces[index] for index in indices]


def _ignore(_: Damage) -> None:
    """Damage met while peeking at the ends of the log: the full read reports it."""


def read_log(path: Path, filters: Filters, progress: Progress | None = None) -> ReportCounts:
    """Read every file of the log once (oldest first) into the report's counts."""
    counts = ReportCounts(path)
    selection = _Selection(counts, filters)
    total = 0
    for file in log_files(path):
        try:
            total += file.stat().st_size
        except OSError:
            continue
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(min(done, total), total)

    def on_damage(item: Damage) -> None:
        counts.add_damage(path, item)
        warn_damage(path)(item)

    newest = next(iter_entries(path, on_damage=_ignore), None)
    oldest = next(iter_entries(path, newest_first=False, on_damage=_ignore), None)
    if newest is not None and oldest is not None and filters.empty:
        counts.expect(entry_time(oldest.get("timestamp")), entry_time(newest.get("timestamp")))
    for fd, size, file in open_log_files(path, newest_first=False, on_damage=on_damage):
        counts.health.files.append((file, size))
        _read_file(fd, size, file, selection, advance)
    return counts
