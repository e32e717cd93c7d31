"""Counting one file's entries into stats groups, through the column reader.

`betty_otel.query.columns.ColumnReader` hands over canonical lines as columns of
raw captures; here they are grouped by their raw bytes and decoded once per group.
Every other line goes through the store's tolerant parser, and so does a canonical
line whose captures are not exact JSON text (a damaged number, a control
character): each line is read one way or the other by its own bytes alone, so a
file read whole, in parts (a helper's) or from a summary's offset on counts the
very same lines. The result is the same as parsing every
entry, 6-8x faster (see ``benchmarks/bench_query.py``).
"""

from __future__ import annotations

import sys
from array import array
from collections import Counter, defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from betty_otel._entry import canonical_status
from betty_otel._store import Damage
from betty_otel.query.blocks import Block, LinePattern
from betty_otel.query.columns import (
    ColumnReader,
    InexactCapture,
    capture_durations,
    capture_text,
    capture_texts,
    is_duration,
    key_text,
    read_parts,
    span_texts,
)
from betty_otel.query.filters import Filters
from betty_otel.query.groups import MISSING, Group, GroupStats, ordered
from betty_otel.query.parallel import Helper, plan, serve
from betty_otel.query.summary import Capture, Span

__all__ = [
    "FileTally",
    "PartResult",
    "Tally",
    "decode_part",
    "encode_part",
    "finish_groups",
    "serve_parts",
    "tally_file",
    "tally_part",
]

_consume: Final = deque[Any](maxlen=0).extend
"""Run an iterator to its end, keeping nothing."""


@dataclass
class PartResult:
    """What a helper found in one part: groups by (key, status), damage, where it ended.

    seam: the part ends between elements with nothing pending (`ForwardParser.at_seam`).
    start and spans are for the stats summary (`summary.Capture.take`): the digests of
    the bytes the part counted, from its start on (None: no summary asked, or the
    bytes were not all seen).
    """

    index: int
    groups: dict[tuple[str | None, str | None], Group]
    plain: bool
    damage: list[Damage]
    end: int
    seam: bool
    start: int = 0
    spans: list[Span] | None = None


def encode_part(part: PartResult) -> bytes:
    """A part as bytes: a JSON header, then the durations (doubles)."""
    blob = bytearray()
    groups = []
    for (key, status), group in part.groups.items():
        groups.append([key, status, group.count, group.statuses, len(group.durations)])
        blob += group.durations.tobytes()
    header = orjson.dumps(
        {
            "index": part.index,
            "groups": groups,
            "plain": part.plain,
            "damage": [[d.offset, d.length, d.reason] for d in part.damage],
            "end": part.end,
            "seam": part.seam,
            "start": part.start,
            "spans": part.spans,
            "order": sys.byteorder,
        }
    )
    return len(header).to_bytes(4, "big") + header + bytes(blob)


def decode_part(data: bytes) -> PartResult:
    """The part encode_part wrote (raises ValueError, TypeError or KeyError when it is not one)."""
    length = int.from_bytes(data[:4], "big")
    head = orjson.loads(data[4 : 4 + length])
    if head["order"] != sys.byteorder:
        raise ValueError("byte order")
    view = memoryview(data)[4 + length :]
    groups: dict[tuple[str | None, str | None], Group] = {}
    for key, status, count, statuses, numeric in head["groups"]:
        group = Group(count, dict(statuses))
        group.durations.frombytes(view[: numeric * 8])
        view = view[numeric * 8 :]
        groups[key, status] = group
    if len(view):
        raise ValueError("length")
    damage = [Damage(offset, size, reason) for offset, size, reason in head["damage"]]
    spans = head["spans"]
    if spans is not None:
        spans = [(int(end), str(digest)) for end, digest in spans]
    return PartResult(
        head["index"], groups, head["plain"], damage, head["end"], head["seam"],
        int(head["start"]), spans,
    )  # fmt: skip


class Tally:
    """Stats of one pass: groups keyed by (group key, status) as text."""

    def __init__(self, by: str, filters: Filters) -> None:
        self.by = by
        self.filters = filters
        self.groups: dict[tuple[str | None, str | None], Group] = {}
        self.plain = True
        """Every grouping value counted was a string or missing (never a number, list...)."""

    def add_entry(self, entry: Mapping[str, Any]) -> None:
        if not self.filters.matches(entry):
            return
        status = key_text(entry.get("status"))
        value = entry.get(self.by)
        if value is not None and not isinstance(value, str):
            self.plain = False
        group = self.group(key_text(value), status)
        group.add(MISSING if status is None else status, 1, [entry.get("duration_ms")])

    def group(self, key: str | None, status: str | None) -> Group:
        """The group of key and one status word (by status, key is that word: made canonical)."""
        if self.by == "status" and key is not None:
            key = canonical_status(key)
        found = self.groups.get((key, status))
        if found is None:
            found = self.groups[key, status] = Group()
        return found

    def merge(self, other: Tally) -> None:
        self.merge_groups(other.groups, other.plain)

    def merge_groups(
        self, groups: Mapping[tuple[str | None, str | None], Group], plain: bool
    ) -> None:
        """Take the groups of another pass (of the same grouping and filters)."""
        self.plain = self.plain and plain
        for key, group in groups.items():
            mine = self.groups.get(key)
            if mine is None:
                self.groups[key] = group
            else:
                mine.merge(group)

    def by_key(self) -> dict[str | None, Group]:
        """The groups merged per group key (the statuses of each kept apart in it)."""
        merged: dict[str | None, Group] = {}
        for (key, _status), group in self.groups.items():
            target = merged.get(key)
            if target is None:
                merged[key] = target = Group()
            target.merge(group)
        return merged

    def result(self) -> dict[str | None, GroupStats]:
        return finish_groups(self.by_key())


def finish_groups(groups: Mapping[str | None, Group]) -> dict[str | None, GroupStats]:
    """The figures of each group, largest first (then by key, the group None last)."""
    finished = [group.finish(key) for key, group in groups.items()]
    finished.sort(key=lambda item: (-item.count, item.key is None, item.key or ""))
    return {item.key: item for item in finished}


class _RawStats:
    """Canonical captures of one file, grouped by their raw bytes; decoded once per group.

    Grouping on the raw skill+status span (and caller, when needed) keeps the work
    per line to one dict lookup in C. Each block's durations are parsed by one
    orjson call and kept as arrays of doubles (compact, and not traversed by the
    garbage collector); text filters apply once per group, at the end.
    """

    def __init__(self, filters: Filters, stamp: bool, caller: bool) -> None:
        self.filters = filters
        self.stamp = stamp
        self.caller = caller
        self.values: defaultdict[Any, array[float]] = defaultdict(_doubles)
        self.others: Counter[Any] = Counter()
        """Entries counted whose duration is not a number, per key."""
        self.settled: dict[Any, int] = {}
        """How many values of each key are in sorted runs already (`settle`)."""
        self.keys: dict[Any, tuple[str, str, str | None]] = {}
        """Each raw key met, decoded: skill, status, caller (None when not captured)."""

    def settle(self) -> None:
        """Sort the values added since the last call, as one more run of each key.

        A read with a helper calls this after each part: the sorting is then done
        while the helper still reads, and the final sort only merges runs.
        """
        for key, values in self.values.items():
            start = self.settled.get(key, 0)
            if len(values) - start > 1:
                values[start:] = array("d", ordered(values[start:]))
            self.settled[key] = len(values)

    def add(self, columns: list[list[bytes]]) -> list[int]:
        """Add one block's columns: [timestamp], skill+status span, duration, [caller].

        Returns the indices of the lines left out, whose captures are not exact JSON
        text (the caller parses those lines whole); in C unless the block has one.
        """
        if not columns or not columns[0]:
            return []
        left_out = []
        try:
            self._add_lines(columns)
        except InexactCapture:
            for index in range(len(columns[0])):
                try:
                    self._add_lines([column[index : index + 1] for column in columns])
                except InexactCapture:
                    left_out.append(index)
        bad = self._learn_keys()
        if bad:
            keys = self._keys(columns)
            left_out = sorted({*left_out, *(i for i, key in enumerate(keys) if key in bad)})
        return left_out

    def _keys(self, columns: list[list[bytes]]) -> list[Any]:
        """The raw key of each line: its skill+status span, or (span, caller)."""
        spans = columns[1] if self.stamp else columns[0]
        return list(zip(spans, columns[-1], strict=True)) if self.caller else spans

    def _learn_keys(self) -> set[Any]:
        """Decode the keys counted for the first time; drop and return those that are not
        exact JSON text (dropped in the block they first came in, their lines are all in it)."""
        bad = set()
        for raw_key in (self.values.keys() | self.others.keys()) - self.keys.keys():
            try:
                self.keys[raw_key] = self._decoded(raw_key)
            except InexactCapture:
                bad.add(raw_key)
                self.values.pop(raw_key, None)
                self.others.pop(raw_key, None)
        return bad

    def _add_lines(self, columns: list[list[bytes]]) -> None:
        """Add the lines of columns, or none of them (raises InexactCapture when a duration or
        timestamp capture is not exact JSON text: not one whole value, bad UTF-8...)."""
        raw = columns[2] if self.stamp else columns[1]
        keys = self._keys(columns)
        values, numbers = capture_durations(raw)
        filters = self.filters
        if not self.stamp and filters.min_duration_ms is None:
            if numbers:  # all in C
                _consume(map(array.append, map(self.values.__getitem__, keys), values))
                return
            stamps: list[str | None] = [None] * len(keys)
        else:
            stamps = list(capture_texts(columns[0])) if self.stamp else [None] * len(keys)
        for key, value, stamp in zip(keys, values, stamps, strict=True):
            if (stamp is None or filters.match_time(stamp)) and filters.match_duration(value):
                if is_duration(value):
                    self.values[key].append(value)
                else:
                    self.others[key] += 1

    def _decoded(self, raw_key: Any) -> tuple[str, str, str | None]:
        """A raw key's skill, status and caller as text (raises InexactCapture when not exact)."""
        span, raw_caller = raw_key if self.caller else (raw_key, None)
        caller = capture_text(raw_caller) if raw_caller is not None else None
        skill, status = span_texts(span)
        return skill, status, caller

    def into(self, accumulator: Tally) -> None:
        """Filter and add every group."""
        filters = accumulator.filters
        for raw_key in {**self.values, **self.others}:
            skill, status, caller = self.keys[raw_key]
            if not filters.match_keys(skill, status, caller):
                continue
            values = self.values.get(raw_key, _doubles())
            count = len(values) + self.others[raw_key]
            key = {"skill": skill, "caller": caller, "status": status}[accumulator.by]
            accumulator.group(key, status).add(status, count, values, numeric=True)


def _doubles() -> array[float]:
    return array("d")


@dataclass
class FileTally:
    """What reading (part of) one file found: its groups, damage, and where it can resume."""

    tally: Tally
    damage: list[Damage]
    end: int
    """Offset just after the last complete element read (-1: none)."""


def tally_file(
    fd: int,
    size: int,
    by: str,
    filters: Filters,
    pattern: LinePattern,
    *,
    start: int = 0,
    capture: Capture | None = None,
) -> FileTally:
    """The groups of one file's entries from start (a resumable offset) to size.

    capture, when given, takes the window bytes of what is read (for a summary).
    A large file is read with a helper process on a second CPU
    (`betty_otel.query.parallel`), with the same result.
    """
    points = plan(fd, size, start)
    if points is not None:
        seed = None if capture is None else capture.seed
        options = {"size": size, "by": by, "stamp": pattern.stamp, "caller": pattern.caller}
        options["capture"] = seed

        def work(out: int, notes: int) -> None:
            serve_parts(fd, size, points, by, filters, pattern, capture=seed,
                        out=out, notes=notes)  # fmt: skip

        with Helper(fd, points, work, decode_part, spawn=(options, filters)) as helper:
            reader = _Reader(fd, by, filters, pattern, capture)
            read_parts(reader, helper)
            return reader.finish()
    reader = _Reader(fd, by, filters, pattern, capture, start=start)
    reader.read(start, size, final=True)
    return reader.finish()


def serve_parts(
    fd: int, size: int, points: list[int], by: str, filters: Filters, pattern: LinePattern,
    *, capture: int | None, out: int, notes: int,
) -> None:  # fmt: skip
    """What a helper does (`betty_otel.query.parallel.serve`): each part's `tally_part`."""

    def part(index: int) -> bytes:
        found = tally_part(fd, size, points, index, by, filters, pattern, capture=capture)
        return encode_part(found)

    serve(points, part, out, notes)


def tally_part(
    fd: int, size: int, points: list[int], index: int, by: str, filters: Filters,
    pattern: LinePattern, *, capture: int | None,
) -> PartResult:  # fmt: skip
    """What a helper reads: part index of the file's split points (`betty_otel.query.worker`);
    capture: the summary's seed (None: no summary)."""
    low, high = points[index], points[index + 1]
    taken = None if capture is None else Capture(low, capture)
    reader = _Reader(fd, by, filters, pattern, taken, start=low)
    reader.read(low, high, final=high == size)
    found = reader.finish()
    for group in found.tally.groups.values():  # sorted here, merged cheaply by the parent
        group.durations = array("d", ordered(group.durations))
    seam = reader.parser.at_seam
    part = PartResult(index, found.tally.groups, found.tally.plain, found.damage, found.end, seam)
    if taken is not None:  # every byte of the part, the last one's up to its last element
        part.start, part.spans = low, taken.close(high if high < size else found.end)
    return part


class _Reader(ColumnReader):
    """One read of (parts of) a file into one FileTally."""

    def __init__(
        self, fd: int, by: str, filters: Filters, pattern: LinePattern,
        capture: Capture | None, *, start: int = 0,
    ) -> None:  # fmt: skip
        super().__init__(fd, pattern, start=start, capture=capture)
        self.raw = _RawStats(filters, pattern.stamp, pattern.caller)
        self.found = FileTally(Tally(by, filters), [], -1)

    def take_columns(self, block: Block) -> list[int]:
        return self.raw.add(block.columns)

    def add_entry(self, entry: dict[str, Any]) -> None:
        self.found.tally.add_entry(entry)

    def add_damage(self, item: Damage) -> None:
        self.found.damage.append(item)

    def part_read(self) -> None:
        self.raw.settle()

    def take(self, part: PartResult) -> None:
        """Add a helper's part (and the digests of its bytes, in file order)."""
        found = self.found
        found.tally.merge_groups(part.groups, part.plain)
        found.damage.extend(part.damage)
        self.end = max(self.end, part.end)
        if self.capture is not None:
            self.capture.take(part.start, part.spans)

    def finish(self) -> FileTally:
        """The tally, its damage in file order (the parser's comes at the end of each read)."""
        self.raw.into(self.found.tally)
        self.found.damage.sort(key=lambda item: (item.offset < 0, item.offset))
        self.found.end = self.end
        return self.found
