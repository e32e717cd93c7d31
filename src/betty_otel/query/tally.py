"""Counting one file's entries into stats groups: canonical lines by regex, the rest parsed.

Canonical lines are matched a block at a time by the scanner's regex, which
extracts the few fields needed in C; captures are grouped by their raw bytes and
decoded once per group. Every other line goes through the store's tolerant
parser, so the result is the same as parsing every entry, 6-8x faster (see
``benchmarks/bench_query.py``).
"""

from __future__ import annotations

import re
from array import array
from collections import Counter, defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from betty_otel._entry import NUMBER_TYPES, canonical_status
from betty_otel._store import Damage
from betty_otel.query.filters import Filters
from betty_otel.query.groups import MISSING, Group, GroupStats
from betty_otel.query.scan import LinePattern, scan_fd
from betty_otel.query.summary import Capture

__all__ = ["FileTally", "Tally", "finish_groups", "tally_file"]

_consume: Final = deque[Any](maxlen=0).extend
"""Run an iterator to its end, keeping nothing."""

_NUMERIC_TEXT: Final = b"0123456789.eE+-,"


class _Inexact(Exception):  # noqa: N818 - internal signal, never escapes this module
    """A canonical row could not be decoded exactly: read the file the exact way."""


def _key_text(value: object) -> str | None:
    """A group key or status as text: strings as they are, missing as None, others as JSON."""
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


_CONTROL: Final = re.compile(rb"[\x00-\x1f]")


def _decode(raw: bytes) -> str:
    """A captured JSON string's contents as text, exactly as a JSON parser reads them."""
    try:
        if b"\\" in raw:
            text = orjson.loads(b'"' + raw + b'"')
            assert isinstance(text, str)
            return text
        if _CONTROL.search(raw):
            raise _Inexact
        return raw.decode("utf-8")
    except (UnicodeDecodeError, orjson.JSONDecodeError) as exc:
        raise _Inexact from exc


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
        status = _key_text(entry.get("status"))
        value = entry.get(self.by)
        if value is not None and not isinstance(value, str):
            self.plain = False
        group = self.group(_key_text(value), status)
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
        self.plain = self.plain and other.plain
        for key, group in other.groups.items():
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

    def add(self, columns: list[list[bytes]]) -> None:
        """Add one block's columns: [timestamp], skill+status span, duration, [caller].

        Raises:
            _Inexact: a duration capture is not a whole JSON value.
        """
        if not columns or not columns[0]:
            return
        spans, raw = columns[1:3] if self.stamp else columns[0:2]
        keys: list[Any] = list(zip(spans, columns[-1], strict=True)) if self.caller else spans
        joined = b",".join(raw)
        try:
            values = orjson.loads(b"[" + joined + b"]")
        except orjson.JSONDecodeError as exc:
            raise _Inexact from exc
        if len(values) != len(raw):  # a capture was part of a value
            raise _Inexact
        filters = self.filters
        if not self.stamp and filters.min_duration_ms is None:
            if not joined.translate(None, _NUMERIC_TEXT):  # numbers only: all in C
                _consume(map(array.append, map(self.values.__getitem__, keys), values))
                return
            stamps: list[str | None] = [None] * len(keys)
        else:
            stamps = _texts(columns[0]) if self.stamp else [None] * len(keys)
        for key, value, stamp in zip(keys, values, stamps, strict=True):
            if (stamp is None or filters.match_time(stamp)) and filters.match_duration(value):
                if type(value) in NUMBER_TYPES:
                    self.values[key].append(value)
                else:
                    self.others[key] += 1

    def into(self, accumulator: Tally) -> None:
        """Decode, filter and add every group (raises _Inexact on anything unusual)."""
        filters = accumulator.filters
        for raw_key in {**self.values, **self.others}:
            span, raw_caller = raw_key if self.caller else (raw_key, None)
            pieces = span.split(b'","status":"')
            if len(pieces) != 2:
                raise _Inexact
            skill, status = _decode(pieces[0]), _decode(pieces[1])
            caller = _decode(raw_caller) if raw_caller is not None else None
            if not filters.match_keys(skill, status, caller):
                continue
            values = self.values.get(raw_key, _doubles())
            count = len(values) + self.others[raw_key]
            key = {"skill": skill, "caller": caller, "status": status}[accumulator.by]
            accumulator.group(key, status).add(status, count, values, numeric=True)


def _texts(raws: list[bytes]) -> list[str | None]:
    """Captured JSON strings as text (in C when none has an escape)."""
    joined = b"".join(raws)
    if b"\\" in joined or _CONTROL.search(joined):
        return [_decode(raw) for raw in raws]
    try:
        return list(map(bytes.decode, raws))
    except UnicodeDecodeError as exc:
        raise _Inexact from exc


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
    """
    try:
        return _read(fd, size, by, filters, pattern, start, capture, exact=False)
    except _Inexact:
        return _read(fd, size, by, filters, pattern, start, capture, exact=True)


def _read(
    fd: int,
    size: int,
    by: str,
    filters: Filters,
    pattern: LinePattern,
    start: int,
    capture: Capture | None,
    *,
    exact: bool,
) -> FileTally:
    """Read once: by regex where it can (raises _Inexact on anything unusual), or entry by entry."""
    partial = Tally(by, filters)
    raw = _RawStats(filters, pattern.stamp, pattern.caller)
    found = FileTally(partial, [], -1)
    for block in scan_fd(fd, size, pattern, fast=not exact, start=start):
        if isinstance(block, Damage):
            found.damage.append(block)
            continue
        if capture is not None:
            capture.add(block.base, block.data, block.last_end)
        found.end = max(found.end, block.last_end)
        raw.add(block.columns)
        for entry in block.entries:
            partial.add_entry(entry)
    raw.into(partial)
    return found
