"""What the report shows, aggregated while the entries stream by.

Memory is bounded by the number of raw time buckets and (skill, status) pairs,
plus one 8-byte duration per entry (as `betty_otel.query.stats` keeps, for exact
percentiles); entries themselves are dropped once counted, except the few the
tables show (the newest failures and the slowest executions).

Canonical lines arrive as columns of raw captures (`add_columns`): they are
grouped by raw bytes (timestamp prefix + skill/status span) in C, and decoded
once per group at the end. Entries in other layouts arrive parsed (`add_entry`).
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from itertools import compress
from operator import itemgetter
from pathlib import Path
from typing import Any, Final

from betty_otel._entry import ERROR_STATUSES, canonical_status, has_foreign_text
from betty_otel._jsontext import JSONDecodeError
from betty_otel._report.buckets import coarser_prefix, utc_prefix
from betty_otel._report.traceindex import TraceIndex
from betty_otel._store import Damage, parse_entry_line
from betty_otel._timestamps import entry_time
from betty_otel.query.columns import key_text, span_texts

__all__ = ["NO_SKILL", "TOP", "Health", "ReportCounts", "Source", "SpanKey"]

TOP: Final = 20
"""Rows in the tables of newest failures and slowest executions."""
NO_SKILL: Final = "(no skill)"
NO_STATUS: Final = "(none)"
_SHOWN_DAMAGE: Final = 50
_consume: Final = deque[Any](maxlen=0).extend

Source = bytes | Mapping[str, Any]
"""An entry as its canonical line (parsed only if it is shown) or already parsed."""
Cells = dict[tuple[bytes | None, str, str], "Cell"]
"""(raw time bucket or None, skill, canonical status) -> its count and durations."""


@dataclass
class Health:
    """The log as a whole (before filters): what was read and what was wrong with it."""

    path: Path
    files: list[tuple[Path, int]] = field(default_factory=list)
    """Each file read (oldest first) and its size in bytes."""
    entries: int = 0
    legacy: int = 0
    """Entries of the old Betty tools: no trace_id, the old error key, or a status like "failed"."""
    damaged: int = 0
    damage: list[tuple[Path, Damage]] = field(default_factory=list)
    """The first damaged regions (at most 50), with their file."""
    untimed: int = 0
    """Selected entries without a readable timestamp (left out of the charts over time)."""
    foreign: int = 0
    """Selected entries whose skill, status or caller is not text (shown as JSON text)."""
    no_duration: int = 0
    """Selected entries without a numeric duration (left out of the duration figures)."""
    first: float | None = None
    last: float | None = None
    """Oldest and newest timestamp of the log, in seconds since the epoch."""


@dataclass
class Cell:
    """Entries of one skill and status in one raw time bucket."""

    count: int = 0
    durations: array[float] = field(default_factory=lambda: array("d"))

    def merge(self, other: Cell) -> None:
        self.count += other.count
        self.durations.extend(other.durations)


@dataclass(frozen=True)
class SpanKey:
    """A canonical line's raw skill+status span, decoded."""

    skill: str
    word: str
    """The status as the log spells it (what status filters compare)."""
    status: str
    """The canonical status."""

    @property
    def failed(self) -> bool:
        return self.status in ERROR_STATUSES


def _doubles() -> array[float]:
    return array("d")


def _epoch(value: object) -> float | None:
    moment = entry_time(value)
    return None if moment is None else moment.timestamp()


class ReportCounts:
    """Aggregates the log: `add_columns` / `add_entry` while reading, `cells` at the end."""

    def __init__(self, path: Path) -> None:
        self.health = Health(path)
        self.matched = 0
        self.prefix = 16
        self.span: tuple[float, float] | None = None
        """Oldest and newest time of the selected entries (the raw prefix fits them)."""
        self.raw_durations: defaultdict[bytes, array[float]] = defaultdict(_doubles)
        self.raw_missing: Counter[bytes] = Counter()
        """Lines without a numeric duration per raw key; every key has its durations, empty
        perhaps, in the order keys were first met (the order of ties in the page's tables)."""
        self.parsed: Cells = {}
        self.spans: dict[bytes, SpanKey] = {}
        self.seq = 0
        """The number of the next selected entry: items of the top lists never tie, so
        their sources (lines or parsed entries) are never compared."""
        self.newest_failures: list[tuple[float, int, Source]] = []
        self.slowest: list[tuple[float, int, Source]] = []
        self.abandoned = 0
        """Selected entries a reaper wrote for executions whose process died."""
        self.abandoned_kept: list[tuple[float, int, Source]] = []
        self.traces = TraceIndex()
        """Where each trace's entries are (every entry of the log, selected or not)."""

    # -- health ---------------------------------------------------------------

    def add_damage(self, file: Path, item: Damage) -> None:
        self.health.damaged += 1
        if len(self.health.damage) < _SHOWN_DAMAGE:
            self.health.damage.append((file, item))

    def span_key(self, span: bytes) -> SpanKey:
        """The decoded skill and status of a raw span (cached).

        Raises:
            InexactCapture: the span is not two JSON strings' contents.
        """
        found = self.spans.get(span)
        if found is None:
            skill, word = span_texts(span)
            found = self.spans[span] = SpanKey(skill, word, canonical_status(word))
        return found

    def seen_columns(self, stamps: list[bytes], spans: list[bytes]) -> None:
        """Count canonical lines of the log, selected or not (their spans are decoded)."""
        health = self.health
        health.entries += len(stamps)
        for span in set(spans):
            key = self.span_key(span)
            if key.word != key.status:
                health.legacy += spans.count(span)
        if stamps:
            self._seen_times(_epoch(min(stamps).decode()), _epoch(max(stamps).decode()))

    def seen_entry(self, entry: Mapping[str, Any]) -> datetime | None:
        """Count one parsed entry of the log, selected or not; return its time."""
        health = self.health
        health.entries += 1
        status = entry.get("status")
        synonym = isinstance(status, str) and canonical_status(status) != status
        health.legacy += synonym or "trace_id" not in entry or "error" in entry
        moment = entry_time(entry.get("timestamp"))
        stamp = None if moment is None else moment.timestamp()
        self._seen_times(stamp, stamp)
        return moment

    def expect(self, first: datetime | None, last: datetime | None) -> None:
        """The selection's likely time span (without filters, the log's first and last
        entries): start with buckets that fit."""
        if first is not None and last is not None:
            self.prefix = coarser_prefix(self.prefix, first.timestamp(), last.timestamp())

    def _seen_times(self, first: float | None, last: float | None) -> None:
        health = self.health
        if first is not None and (health.first is None or first < health.first):
            health.first = first
        if last is not None and (health.last is None or last > health.last):
            health.last = last

    def _selected_times(self, first: float | None, last: float | None) -> None:
        """Widen the selected entries' span: the raw buckets coarsen to fit it (not the
        log's span, which filters may leave mostly out)."""
        if first is None or last is None:
            return
        if self.span is not None:
            first, last = min(first, self.span[0]), max(last, self.span[1])
        self.span = first, last
        prefix = coarser_prefix(self.prefix, first, last)
        if prefix != self.prefix:
            self._rekey(prefix)

    def _rekey(self, prefix: int) -> None:
        """Merge every raw bucket into the coarser bucket of the shorter prefix."""
        old = self.prefix
        missing: Counter[bytes] = Counter()
        for key, count in self.raw_missing.items():
            missing[key[:prefix] + key[old:]] += count
        durations: defaultdict[bytes, array[float]] = defaultdict(_doubles)
        for key, values in self.raw_durations.items():
            durations[key[:prefix] + key[old:]].extend(values)
        parsed: Cells = {}
        for (bucket, skill, status), cell in self.parsed.items():
            target = (None if bucket is None else bucket[:prefix], skill, status)
            parsed.setdefault(target, Cell()).merge(cell)
        self.raw_missing, self.raw_durations, self.parsed = missing, durations, parsed
        self.prefix = prefix

    def merge(self, other: ReportCounts) -> None:
        """Add the counts of the stretch of the log that follows what was read here (a
        helper's part, counted from the same start prefix), as if read here; its damage
        comes apart (`add_damage`)."""
        health, theirs = self.health, other.health
        health.entries += theirs.entries
        health.legacy += theirs.legacy
        health.foreign += theirs.foreign
        health.no_duration += theirs.no_duration
        prefix = min(self.prefix, other.prefix)
        for counts in (self, other):
            if counts.prefix != prefix:
                counts._rekey(prefix)
        self.raw_missing.update(other.raw_missing)
        for key, values in other.raw_durations.items():
            self.raw_durations[key].extend(values)
        for where, cell in other.parsed.items():
            self.parsed.setdefault(where, Cell()).merge(cell)
        self.spans.update(other.spans)
        self.traces.merge(other.traces)
        for mine, kept, shift in (
            (self.newest_failures, other.newest_failures, self.seq),
            (self.slowest, other.slowest, self.seq),
            (self.abandoned_kept, other.abandoned_kept, self.abandoned),
        ):
            for value, seq, source in kept:
                _keep_top(mine, (value, shift + seq, source))
        self.seq += other.seq
        self.matched += other.matched
        self.abandoned += other.abandoned
        self._seen_times(theirs.first, theirs.last)
        if other.span is not None:
            self._selected_times(*other.span)

    # -- selected entries -----------------------------------------------------

    def add_columns(
        self,
        stamps: list[bytes],
        spans: list[bytes],
        values: list[float | None],
        lines: Callable[[list[int]], list[bytes]],
    ) -> None:
        """Selected canonical lines: UTC timestamps (32 bytes), spans, durations (None: none).

        lines(indices) gives those lines themselves, for the few the tables keep.
        """
        self.matched += len(stamps)
        self._selected_times(_epoch(min(stamps).decode()), _epoch(max(stamps).decode()))
        keys = list(map(bytes.__add__, map(itemgetter(slice(0, self.prefix)), stamps), spans))
        getter = self.raw_durations.__getitem__
        numbers = [value for value in values if value is not None]
        if len(numbers) < len(values):
            self.health.no_duration += len(values) - len(numbers)
            have = [value is not None for value in values]
            _consume(map(getter, keys))  # every key met, in order, with durations or not
            self.raw_missing.update(compress(keys, [not value for value in have]))
            keys = list(compress(keys, have))
        _consume(map(array.append, map(getter, keys), numbers))
        fails = self._newest_failures(stamps, spans)
        slow = self._slowest(values, numbers)
        if not fails and not slow:
            self.seq += len(stamps)
            return
        source = dict(zip(fails + slow, lines(fails + slow), strict=True))
        for index in fails:
            moment = _epoch(stamps[index].decode())
            order = -math.inf if moment is None else moment
            _keep_top(self.newest_failures, (order, self.seq + index, source[index]))
        for index in slow:
            _keep_top(self.slowest, (values[index] or 0.0, self.seq + index, source[index]))
        self.seq += len(stamps)

    def _newest_failures(self, stamps: list[bytes], spans: list[bytes]) -> list[int]:
        """Indexes of the newest failures of a block (at most TOP)."""
        failed = {span for span in set(spans) if self.spans[span].failed}
        if not failed:
            return []
        found = list(compress(range(len(spans)), map(failed.__contains__, spans)))
        return sorted(found, key=stamps.__getitem__, reverse=True)[:TOP]

    def _slowest(self, values: list[float | None], numbers: list[float]) -> list[int]:
        """Indexes of a block's executions slower than the slowest kept so far (at most TOP);
        numbers: the values that are not None."""
        bar = self.slowest[0][0] if len(self.slowest) >= TOP else -math.inf
        if not numbers or max(numbers) <= bar:  # in C: the common case, once the list is full
            return []
        found = [i for i, value in enumerate(values) if value is not None and value > bar]
        return sorted(found, key=lambda i: values[i] or 0.0, reverse=True)[:TOP]

    def add_entry(
        self, entry: Mapping[str, Any], moment: datetime | None, duration: float | None
    ) -> None:
        """One selected parsed entry, its time (None: unreadable) and duration."""
        self.matched += 1
        seq = self.seq
        self.seq += 1
        self.health.foreign += has_foreign_text(entry)
        if moment is not None:
            self._selected_times(moment.timestamp(), moment.timestamp())
        status = entry.get("status")
        canonical = canonical_status(status) if isinstance(status, str) else key_text(status)
        canonical = NO_STATUS if canonical is None else canonical
        name = key_text(entry.get("skill"))
        name = NO_SKILL if name is None else name
        bucket = None if moment is None else utc_prefix(moment, self.prefix)
        cell = self.parsed.setdefault((bucket, name, canonical), Cell())
        cell.count += 1
        if canonical in ERROR_STATUSES:
            order = -math.inf if moment is None else moment.timestamp()
            _keep_top(self.newest_failures, (order, seq, entry))
        if duration is None:
            self.health.no_duration += 1
        else:
            cell.durations.append(duration)
            _keep_top(self.slowest, (duration, seq, entry))

    def add_abandoned(self, entry: Mapping[str, Any]) -> None:
        """A selected entry recorded as abandoned (`betty_otel._inflight.view.is_abandoned`)."""
        moment = _epoch(entry.get("timestamp"))
        order = -math.inf if moment is None else moment
        _keep_top(self.abandoned_kept, (order, self.abandoned, entry))
        self.abandoned += 1

    def newest_abandoned(self) -> list[dict[str, Any]]:
        """The newest abandoned entries kept (at most TOP), newest first."""
        return _entries(self.abandoned_kept)

    def cells(self) -> Cells:
        """Every selected entry's group: the raw columns decoded, merged with the parsed ones.

        Called once, when the counting is done: the durations are handed over, not
        copied (a million entries' take 8 MB), and the counts are left empty.
        """
        cells, self.parsed = self.parsed, {}
        prefix = self.prefix
        durations, missing = self.raw_durations, self.raw_missing
        for key, values in durations.items():
            span = self.spans[key[prefix:]]
            count = missing[key] + len(values)
            where = (key[:prefix], span.skill, span.status)
            cell = cells.get(where)
            if cell is None:
                cells[where] = Cell(count, values)
            else:
                cell.count += count
                cell.durations.extend(values)
        self.raw_durations = defaultdict(_doubles)
        self.raw_missing = Counter()
        return cells

    def failures(self) -> list[dict[str, Any]]:
        """The newest failures kept, newest first."""
        return _entries(self.newest_failures)

    def slowest_entries(self) -> list[dict[str, Any]]:
        """The slowest executions kept, slowest first."""
        return _entries(self.slowest)


def _keep_top(heap: list[tuple[float, int, Source]], item: tuple[float, int, Source]) -> None:
    """Keep the TOP largest items (by value, then by recording order) in a min-heap."""
    if len(heap) < TOP:
        heapq.heappush(heap, item)
    elif item[:2] > heap[0][:2]:
        heapq.heapreplace(heap, item)


def _entries(heap: Iterable[tuple[float, int, Source]]) -> list[dict[str, Any]]:
    """The kept entries, largest first, parsed now (a line that does not parse is left out)."""
    found = []
    for _, _, source in sorted(heap, key=itemgetter(0, 1), reverse=True):
        if isinstance(source, bytes):
            try:
                value = parse_entry_line(source)
            except JSONDecodeError:
                continue
            if isinstance(value, dict):
                found.append(value)
        else:
            found.append(dict(source))
    return found
