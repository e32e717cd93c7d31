"""Reading the log back: filters, newest-first queries, per-group stats and trace trees.

Everything here reads; nothing writes or locks. Entries are returned exactly as
they are in the file: entries of other tools (missing keys, extra keys, statuses
such as ``"failed"``) are never dropped or rejected, and a filter on a key an
entry lacks simply does not match it.

- `query` / `iter_query` stream from the end of the file (newest first, in
  recording order) and stop at the limit, so "the 10 newest failures" reads a few
  blocks however large the log is.
- `stats` must read every entry. Canonical lines (keys in the store's order) are
  matched a block at a time by one compiled regex that extracts the few fields it
  needs in C; every other line (the old tools' ``indent=2``, a torn tail, damage)
  goes through the store's tolerant parser, so the result is the same as parsing
  every entry, 6-8x faster (see ``benchmarks/bench_query.py``).
- `trace` builds the tree of one trace's executions from ``parent_span_id``; it
  parses only the canonical lines that contain the trace id (or an escape).

All three share one `Filters` value, built by `make_filters`, so the CLI's
``query``, ``stats`` and ``export`` select entries identically.
"""

from __future__ import annotations

import heapq
import logging
import math
import os
import re
from array import array
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import Any, Final, Literal

import orjson

from betty_otel._entry import (
    ERROR_STATUSES,
    NUMBER_TYPES,
    entry_time,
    is_number,
    parse_iso_time,
)
from betty_otel._store import (
    Damage,
    _ForwardParser,
    _warn_damage,
    iter_entries,
    open_log_files,
    resolve_path,
)

__all__ = [
    "Filters",
    "GroupStats",
    "TraceNode",
    "iter_query",
    "make_filters",
    "parse_time",
    "query",
    "stats",
    "trace",
]

logger = logging.getLogger("betty_otel")

PathArg = str | os.PathLike[str] | None
TextFilter = str | Iterable[str] | None
TimeArg = datetime | str | None
GroupBy = Literal["skill", "caller", "status"]

GROUP_KEYS: Final = ("skill", "caller", "status")
MISSING: Final = "(none)"
"""How stats name a missing status in `GroupStats.statuses`."""
_UNITS: Final = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_RELATIVE: Final = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", re.IGNORECASE)
_TIME_HELP: Final = (
    "expected a datetime, an ISO 8601 time such as 2025-10-24T14:30:00+00:00, "
    "or a relative time such as 30s, 15m, 2h, 7d, 1w"
)


# ---------------------------------------------------------------------------
# Filters: one definition shared by query, stats, trace and the CLI's export.
# ---------------------------------------------------------------------------


def parse_time(value: datetime | str, *, now: datetime | None = None) -> datetime:
    """Turn a datetime, an ISO 8601 string or a relative time (``15m``) into an aware datetime.

    Relative times count back from now: ``30s``, ``15m``, ``2h``, ``7d``, ``1w``.
    A datetime or ISO string without an offset is taken as UTC, the file's default.

    Raises:
        ValueError: the text is none of those (the message says what is accepted).
        TypeError: value is neither a datetime nor a string.
    """
    given: object = value  # checked at run time: callers may pass anything
    if isinstance(given, datetime):
        moment = given
    elif isinstance(given, str):
        text = given.strip()
        relative = _RELATIVE.fullmatch(text)
        if relative:
            seconds = float(relative.group(1)) * _UNITS[relative.group(2).lower()]
            try:
                return (now or datetime.now(timezone.utc)) - timedelta(seconds=seconds)
            except (OverflowError, ValueError):
                msg = f"Invalid time {value!r}: that is before the year 1"
                raise ValueError(msg) from None
        moment_or_none = parse_iso_time(text)
        if moment_or_none is None:
            msg = f"Invalid time {value!r}: {_TIME_HELP}"
            raise ValueError(msg)
        moment = moment_or_none
    else:
        msg = f"a time must be a datetime or a string, got {type(given).__name__}"
        raise TypeError(msg)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _text_set(name: str, value: TextFilter) -> frozenset[str] | None:
    if value is None:
        return None
    items: tuple[object, ...] = (value,) if isinstance(value, str) else tuple(value)
    for item in items:
        if not isinstance(item, str):
            msg = f"{name} filter values must be strings, got {type(item).__name__}"
            raise TypeError(msg)
    return frozenset(item for item in items if isinstance(item, str))


@dataclass(frozen=True)
class Filters:
    """Which entries to select; None means "any". Build with `make_filters`.

    Text filters match when the entry's value is a string in the set (so an
    empty set matches nothing). Times select ``since <= timestamp < until``; an
    entry whose timestamp is missing or unreadable matches no time filter.
    ``min_duration_ms`` selects entries whose duration is a number >= it.
    """

    skill: frozenset[str] | None = None
    status: frozenset[str] | None = None
    caller: frozenset[str] | None = None
    trace_id: frozenset[str] | None = None
    since: datetime | None = None
    until: datetime | None = None
    min_duration_ms: float | None = None

    @property
    def empty(self) -> bool:
        """True when every entry matches."""
        return self == _NO_FILTERS

    def matches(self, entry: Mapping[str, Any]) -> bool:
        """True when the entry passes every filter (a missing key never matches)."""
        return (
            self.match_keys(entry.get("skill"), entry.get("status"), entry.get("caller"))
            and _in(self.trace_id, entry.get("trace_id"))
            and self.match_time(entry.get("timestamp"))
            and self.match_duration(entry.get("duration_ms"))
        )

    def match_keys(self, skill: object, status: object, caller: object) -> bool:
        """The skill, status and caller filters."""
        return _in(self.skill, skill) and _in(self.status, status) and _in(self.caller, caller)

    def match_time(self, timestamp: object) -> bool:
        """The since / until filters; an unreadable timestamp never matches one."""
        if self.since is None and self.until is None:
            return True
        moment = entry_time(timestamp)
        if moment is None:
            return False
        if self.since is not None and moment < self.since:
            return False
        return self.until is None or moment < self.until

    def match_duration(self, duration: object) -> bool:
        """The min_duration_ms filter: the duration must be a number >= it."""
        if self.min_duration_ms is None:
            return True
        return is_number(duration) and duration >= self.min_duration_ms


_NO_FILTERS: Final = Filters()


def _in(allowed: frozenset[str] | None, value: object) -> bool:
    return allowed is None or (isinstance(value, str) and value in allowed)


def make_filters(
    *,
    skill: TextFilter = None,
    status: TextFilter = None,
    caller: TextFilter = None,
    since: TimeArg = None,
    until: TimeArg = None,
    trace_id: TextFilter = None,
    min_duration_ms: float | None = None,
    now: datetime | None = None,
) -> Filters:
    """Check and normalise filter arguments (see `query`) into a `Filters`.

    Raises:
        ValueError: an unreadable time, since after until, a non-finite duration.
        TypeError: a filter of the wrong type.
    """
    moment = now or datetime.now(timezone.utc)
    start = parse_time(since, now=moment) if since is not None else None
    end = parse_time(until, now=moment) if until is not None else None
    if start is not None and end is not None and start > end:
        msg = f"since ({start.isoformat()}) is after until ({end.isoformat()})"
        raise ValueError(msg)
    minimum: float | None = None
    if min_duration_ms is not None:
        if not is_number(min_duration_ms):
            msg = f"min_duration_ms must be a number, got {type(min_duration_ms).__name__}"
            raise TypeError(msg)
        minimum = float(min_duration_ms)
        if not math.isfinite(minimum):
            msg = f"min_duration_ms must be finite, got {min_duration_ms!r}"
            raise ValueError(msg)
    return Filters(
        skill=_text_set("skill", skill),
        status=_text_set("status", status),
        caller=_text_set("caller", caller),
        trace_id=_text_set("trace_id", trace_id),
        since=start,
        until=end,
        min_duration_ms=minimum,
    )


def _check_limit(limit: int | None) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int):
        msg = f"limit must be an int or None, got {type(limit).__name__}"
        raise TypeError(msg)
    if limit < 0:
        msg = f"limit must be >= 0, got {limit}"
        raise ValueError(msg)
    return limit


# ---------------------------------------------------------------------------
# query
# ---------------------------------------------------------------------------


def iter_query(
    path: PathArg = None,
    *,
    skill: TextFilter = None,
    status: TextFilter = None,
    caller: TextFilter = None,
    since: TimeArg = None,
    until: TimeArg = None,
    trace_id: TextFilter = None,
    min_duration_ms: float | None = None,
    filters: Filters | None = None,
    newest_first: bool = True,
    rotated: bool = True,
) -> Iterator[dict[str, Any]]:
    """Stream the entries that pass the filters, newest first (recording order).

    Lazy: the file is read from the end block by block as the caller iterates,
    so stopping early reads only the end of the file. ``filters`` (from
    `make_filters`) replaces the individual filter arguments. With rotated, the
    rotated backups follow the current file. A torn tail (an append in progress)
    is never yielded. The arguments are checked when this is called.
    """
    chosen = filters or make_filters(
        skill=skill,
        status=status,
        caller=caller,
        since=since,
        until=until,
        trace_id=trace_id,
        min_duration_ms=min_duration_ms,
    )
    return _iter_query(resolve_path(path), chosen, newest_first=newest_first, rotated=rotated)


def _iter_query(
    path: Path, filters: Filters, *, newest_first: bool, rotated: bool
) -> Iterator[dict[str, Any]]:
    entries = iter_entries(path, newest_first=newest_first, rotated=rotated)
    if filters.empty:
        yield from entries
        return
    matches = filters.matches
    for entry in entries:
        if matches(entry):
            yield entry


def query(
    path: PathArg = None,
    *,
    skill: TextFilter = None,
    status: TextFilter = None,
    caller: TextFilter = None,
    since: TimeArg = None,
    until: TimeArg = None,
    trace_id: TextFilter = None,
    min_duration_ms: float | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Entries that pass every given filter, newest first, at most limit of them.

    Args:
        path: the telemetry file; None means $BETTY_TELEMETRY_FILE or the default.
        skill, status, caller, trace_id: a value or a collection of values.
        since, until: ``since <= timestamp < until``; each a datetime, an ISO 8601
            string or a relative time such as ``15m``, ``2h``, ``7d`` (before now).
        min_duration_ms: only entries that took at least this long.
        limit: at most this many (None: all). Reading stops once it is reached.

    Raises:
        ValueError / TypeError: an invalid filter or limit (before reading anything).
    """
    count = _check_limit(limit)
    entries = iter_query(
        path,
        skill=skill,
        status=status,
        caller=caller,
        since=since,
        until=until,
        trace_id=trace_id,
        min_duration_ms=min_duration_ms,
    )
    if count == 0:
        return []
    return list(entries if count is None else islice(entries, count))


# ---------------------------------------------------------------------------
# Forward block scanner: canonical lines by regex, everything else by the parser.
# ---------------------------------------------------------------------------

_SCAN_BLOCK: Final = 1 << 20
_consume: Final = deque[Any](maxlen=0).extend
"""Run an iterator to its end, keeping nothing."""


@dataclass(frozen=True)
class _LinePattern:
    """A canonical entry line, as the store writes it: one compact entry per line.

    ``block`` matches one whole line (after its newline) that starts with the keys
    timestamp, skill, status, duration_ms in this order and ends with ``}`` or
    ``},``. `re.split` of a block by it leaves nothing between two such lines, so
    one C call both extracts the captures of every line and proves that every
    line was one. Captured strings are raw JSON text (still escaped): ``[^"]*``
    stops at the first quote, which in valid JSON followed by ``","key":`` is the
    string's real end. A duration is captured only when it is a scalar other than
    a string (a number, null, true, false), so each capture is a whole JSON value;
    a line whose captures are not valid JSON is caught when decoded
    (`_RawStats.into`).
    """

    block: re.Pattern[bytes]
    groups: int


@lru_cache(maxsize=16)
def _line_pattern(*, stamp: bool = False, caller: bool = False, bare: bool = False) -> _LinePattern:
    """Capture, in line order: [timestamp], skill+status, duration, [caller]; or nothing.

    skill and status are captured as one span (``SKILL","status":"STATUS``), so
    grouping needs no tuple per line. The caller key is only required when it is
    captured: every pattern left out makes the scan faster.
    """

    def cap(value: bytes, wanted: bool = True) -> bytes:
        return value if wanted and not bare else value.replace(b"(", b"(?:")

    body = (
        rb'\{"timestamp":'
        + cap(rb'"([^"]*)"', stamp)
        + cap(rb',"skill":"([^"]*","status":"[^"]*)"')
        + cap(rb',"duration_ms":([^,"\[{]*),')
        + (cap(rb'"caller":"([^"]*)",') if caller and not bare else b"")
        + rb"[^\n]*\},?"
    )
    block = re.compile(b"\n" + body + rb"\r?(?=\n)")
    return _LinePattern(block, block.groups)


@dataclass
class _Block:
    """What the scanner found in one block of data.

    columns: the captures of its canonical lines, one list per capture group;
    lines: (start, end) of its canonical lines' text in data, or of runs of them;
    entries: its other entries, parsed.
    """

    data: bytes
    columns: list[list[bytes]]
    lines: list[tuple[int, int]]
    entries: list[dict[str, Any]]


def _top_level(parser: _ForwardParser) -> bool:
    """True when the parser is between two elements of the array (a line can be one)."""
    return parser.started and not parser.closed and parser.depth == 1 and not parser.parts


def _scan_fd(
    fd: int, size: int, pattern: _LinePattern, *, fast: bool = True
) -> Iterator[_Block | Damage]:
    """Read one file forward; yield what each block holds, then the damage found.

    A block whose lines are all canonical, read while the parser is between
    elements, is taken from the regex captures alone; the parser then reads a
    stand-in line (``{}`` or ``{},``, like the block's last line), so its state
    moves on exactly as if it had read the block. Every other line (other
    layouts, damage, the first and last lines of the array, a last line without a
    newline) is read by the store's tolerant parser, entry by entry; every line
    is when not fast.
    """
    parser = _ForwardParser()
    offset = 0
    carry = b""
    carry_offset = 0
    while offset < size:
        data = os.pread(fd, min(_SCAN_BLOCK, size - offset), offset)
        if not data:
            break
        base = offset
        offset += len(data)
        first = data.find(b"\n")
        if first < 0:
            carry += data
            continue
        found = _Block(data, [[] for _ in range(pattern.groups)], [], [])
        _feed(parser, carry_offset, carry + data[:first], found)
        last = data.rfind(b"\n")
        if first < last:
            if fast:
                _read_region(parser, pattern, data, base, first, last, found)
            else:
                _feed_lines(parser, data, base, first, last, found)
        carry = data[last + 1 :]
        carry_offset = base + last + 1
        yield found
    if carry:
        found = _Block(carry, [], [], [])
        _feed(parser, carry_offset, carry, found)
        yield found
    parser.finish()
    yield from parser.damage


def _read_region(
    parser: _ForwardParser,
    pattern: _LinePattern,
    data: bytes,
    base: int,
    first: int,
    last: int,
    found: _Block,
) -> None:
    """Read the lines between the newlines at first and last of data (at offset base).

    When every line is canonical, one `re.split` takes them all. Otherwise the
    canonical lines are still taken by regex, and the others are fed to the parser
    in between, in order.
    """
    stride = pattern.groups + 1
    if _top_level(parser):
        parts = pattern.block.split(memoryview(data)[first : last + 1])
        gaps = parts[::stride]
        if len(gaps) > 1 and gaps[-1] == b"\n" and gaps.count(b"") == len(gaps) - 1:
            for index, column in enumerate(found.columns, 1):
                column.extend(parts[index::stride])
            found.lines.append((first + 1, last))
            _consume(parser.feed(base + last, _stand_in(data, last)))
            return
    position = first  # the newline that ends the last line read
    stand_in = b""
    for match in pattern.block.finditer(data, first, last + 1):
        start, end = match.span()
        if start > position or not _top_level(parser):
            if stand_in:
                _consume(parser.feed(base + position, stand_in))
                stand_in = b""
            _feed_lines(parser, data, base, position, start, found)
        if _top_level(parser):
            for column, value in zip(found.columns, match.groups(), strict=True):
                column.append(value)
            found.lines.append((start + 1, end))
            stand_in = _stand_in(data, end)
        else:
            _feed(parser, base + start + 1, data[start + 1 : end], found)
        position = end
    if stand_in:
        _consume(parser.feed(base + position, stand_in))
    _feed_lines(parser, data, base, position, last, found)


def _stand_in(data: bytes, end: int) -> bytes:
    """What the parser reads in place of canonical lines: ``{}``, with the comma of the last."""
    return b"{}," if data[max(0, end - 2) : end].rstrip(b"\r").endswith(b",") else b"{}"


def _feed_lines(
    parser: _ForwardParser, data: bytes, base: int, start: int, end: int, found: _Block
) -> None:
    """Feed the lines after the newline at start, up to end (a newline or a match)."""
    position = start + 1
    while position <= end:
        newline = data.find(b"\n", position, end)
        stop = end if newline < 0 else newline
        _feed(parser, base + position, data[position:stop], found)
        position = stop + 1


def _feed(parser: _ForwardParser, offset: int, line: bytes, found: _Block) -> None:
    """Read one line with the store's parser; keep the objects it completes."""
    for _, value in parser.feed(offset, line):
        if isinstance(value, dict):
            found.entries.append(value)


def _scan_files(
    path: Path, on_file: Callable[[int, int, Path], None], rotated: bool = True
) -> None:
    """Call on_file(fd, size, file) for each readable log file, oldest first."""
    for fd, size, file in open_log_files(path, rotated=rotated, newest_first=False):
        on_file(fd, size, file)


class _Inexact(Exception):  # noqa: N818 - internal signal, never escapes this module
    """A canonical row could not be decoded exactly: read the file the exact way."""


# ---------------------------------------------------------------------------
# stats
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupStats:
    """Aggregates of one group (one skill, caller or status).

    Percentiles are exact, by linear interpolation between the two nearest ranks
    (numpy's default "linear" method, DuckDB's ``quantile_cont``): for sorted
    durations d[0..n-1], the q-th percentile is at rank (n - 1) * q / 100.
    Durations that are not numbers are counted but left out of the duration
    figures, which are None when a group has no numeric duration. ``key`` is None
    for entries without the grouping key; a missing status counts as ``"(none)"``.
    """

    key: str | None
    """The group: a skill, caller or status."""
    count: int
    """Entries in the group."""
    statuses: dict[str, int]
    """Entries per status, most frequent first."""
    failures: int
    """Entries with status failure, error or timeout."""
    failure_rate: float
    """failures / count."""
    durations: int
    """Entries whose duration is a number (the ones the figures below describe)."""
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None
    mean: float | None


@dataclass
class _Group:
    count: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    durations: array[float] = field(default_factory=lambda: array("d"))

    def add(self, status: str, count: int, durations: Iterable[Any], numeric: bool = False) -> None:
        """Count entries of one status; numeric says durations holds only numbers."""
        self.count += count
        self.statuses[status] = self.statuses.get(status, 0) + count
        self.durations.extend(durations if numeric else _numbers(durations))

    def merge(self, other: _Group) -> None:
        self.count += other.count
        for status, count in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + count
        self.durations.extend(other.durations)

    def finish(self, key: str | None) -> GroupStats:
        values = sorted(self.durations)
        failures = sum(n for status, n in self.statuses.items() if status in ERROR_STATUSES)
        return GroupStats(
            key=key,
            count=self.count,
            statuses=dict(sorted(self.statuses.items(), key=lambda item: (-item[1], item[0]))),
            failures=failures,
            failure_rate=failures / self.count if self.count else 0.0,
            durations=len(values),
            p50=_percentile(values, 50),
            p95=_percentile(values, 95),
            p99=_percentile(values, 99),
            max=float(values[-1]) if values else None,
            mean=sum(values) / len(values) if values else None,
        )


def _numbers(values: Iterable[Any]) -> list[Any]:
    """The values that are numbers; values parsed from JSON, so bool is the only trap."""
    return [value for value in values if type(value) in NUMBER_TYPES]


_NUMERIC_TEXT: Final = b"0123456789.eE+-,"


def _percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks of sorted values (numpy "linear")."""
    if not values:
        return None
    rank = (len(values) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (rank - low)


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


class _Accumulator:
    """Stats of one pass: groups keyed by (group key, status) as text."""

    def __init__(self, by: GroupBy, filters: Filters) -> None:
        self.by = by
        self.filters = filters
        self.groups: dict[tuple[str | None, str | None], _Group] = {}

    def add_entry(self, entry: Mapping[str, Any]) -> None:
        if not self.filters.matches(entry):
            return
        status = _key_text(entry.get("status"))
        group = self.group(_key_text(entry.get(self.by)), status)
        group.add(MISSING if status is None else status, 1, [entry.get("duration_ms")])

    def group(self, key: str | None, status: str | None) -> _Group:
        found = self.groups.get((key, status))
        if found is None:
            found = self.groups[key, status] = _Group()
        return found

    def merge(self, other: _Accumulator) -> None:
        for key, group in other.groups.items():
            mine = self.groups.get(key)
            if mine is None:
                self.groups[key] = group
            else:
                mine.merge(group)

    def result(self) -> dict[str | None, GroupStats]:
        merged: dict[str | None, _Group] = {}
        for (key, _status), group in self.groups.items():
            target = merged.get(key)
            if target is None:
                merged[key] = group
            else:
                target.merge(group)
        finished = [group.finish(key) for key, group in merged.items()]
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

    def into(self, accumulator: _Accumulator) -> None:
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


def stats(
    path: PathArg = None,
    *,
    by: GroupBy = "skill",
    skill: TextFilter = None,
    status: TextFilter = None,
    caller: TextFilter = None,
    since: TimeArg = None,
    until: TimeArg = None,
    trace_id: TextFilter = None,
    min_duration_ms: float | None = None,
    filters: Filters | None = None,
) -> dict[str | None, GroupStats]:
    """Per-group count, count per status, failure rate and duration percentiles.

    Groups are the values of ``by`` (skill, caller or status); an entry without
    that key falls in the group None. Largest groups first. The filters are those
    of `query` (``filters``, from `make_filters`, replaces them). Reads every entry
    (all rotated files included).

    The result equals parsing every entry, with one exception no writer produces:
    a canonical line damaged in place between the fields stats reads and its
    closing brace is counted here though `query` skips it (``check`` reports it).

    Raises:
        ValueError / TypeError: an invalid ``by`` or filter.
    """
    if by not in GROUP_KEYS:
        msg = f"by must be one of: {', '.join(GROUP_KEYS)}; got {by!r}"
        raise ValueError(msg)
    filters = filters or make_filters(
        skill=skill,
        status=status,
        caller=caller,
        since=since,
        until=until,
        trace_id=trace_id,
        min_duration_ms=min_duration_ms,
    )
    total = _Accumulator(by, filters)
    if filters.trace_id is not None:  # few entries: find them, then count them one by one
        for entry in _scan_entries(resolve_path(path), filters):
            total.add_entry(entry)
        return total.result()
    timed = filters.since is not None or filters.until is not None
    with_caller = by == "caller" or filters.caller is not None
    pattern = _line_pattern(stamp=timed, caller=with_caller)

    def on_file(fd: int, size: int, file: Path) -> None:
        for exact in (False, True):
            partial = _Accumulator(by, filters)
            raw = _RawStats(filters, timed, with_caller)
            damage: list[Damage] = []
            try:
                for found in _scan_fd(fd, size, pattern, fast=not exact):
                    if isinstance(found, Damage):
                        damage.append(found)
                        continue
                    raw.add(found.columns)
                    for entry in found.entries:
                        partial.add_entry(entry)
                raw.into(partial)
            except _Inexact:
                logger.debug("%s: unusual canonical lines; reading it entry by entry", file)
                continue
            report = _warn_damage(file)
            for item in damage:
                report(item)
            total.merge(partial)
            return

    _scan_files(resolve_path(path), on_file)
    return total.result()


# ---------------------------------------------------------------------------
# trace
# ---------------------------------------------------------------------------


def _scan_entries(path: Path, filters: Filters) -> list[dict[str, Any]]:
    """Every entry passing filters (which must select trace ids), oldest first.

    Canonical lines are searched for the wanted ids as orjson writes them, in C,
    and only the lines that contain one, or a backslash (an escape could spell an
    id differently), are parsed.
    """
    assert filters.trace_id is not None
    pattern = _line_pattern(bare=True)
    needles = [orjson.dumps(value)[1:-1] for value in filters.trace_id]
    needles.append(b"\\")
    found_entries: list[dict[str, Any]] = []

    def on_file(fd: int, size: int, file: Path) -> None:
        report = _warn_damage(file)
        for found in _scan_fd(fd, size, pattern):
            if isinstance(found, Damage):
                report(found)
                continue
            for start, end in found.lines:
                for line in _lines_with(found.data, start, end, needles):
                    try:
                        value = orjson.loads(line[:-1] if line[-1:] == b"," else line)
                    except orjson.JSONDecodeError:
                        report(Damage(-1, len(line), "entry line is not valid JSON"))
                        continue
                    if isinstance(value, dict) and filters.matches(value):
                        found_entries.append(value)
            found_entries.extend(entry for entry in found.entries if filters.matches(entry))

    _scan_files(path, on_file)
    return found_entries


def _lines_with(data: bytes, start: int, end: int, needles: list[bytes]) -> Iterator[bytes]:
    """The lines of data[start:end] that contain one of needles, each once, in order."""
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
        yield data[line_start:line_end].rstrip(b"\r")
        start = line_end + 1
        position = data.find(needle, start, end)
        if position >= 0:
            heapq.heappush(heap, (position, needle))


@dataclass(eq=False)
class TraceNode:
    """One execution in a trace and the executions it called (children in time order)."""

    entry: dict[str, Any]
    children: list[TraceNode] = field(default_factory=list)

    @property
    def skill(self) -> Any:
        """The entry's skill (None when missing)."""
        return self.entry.get("skill")

    @property
    def status(self) -> Any:
        """The entry's status (None when missing)."""
        return self.entry.get("status")

    @property
    def duration_ms(self) -> Any:
        """The entry's duration in milliseconds (None when missing)."""
        return self.entry.get("duration_ms")

    @property
    def span_id(self) -> Any:
        """The entry's span id (None when missing)."""
        return self.entry.get("span_id")

    def walk(self, depth: int = 0) -> Iterator[tuple[int, TraceNode]]:
        """(depth, node) for this node and its descendants, depth first, in order."""
        stack: list[tuple[int, TraceNode]] = [(depth, self)]
        while stack:
            level, node = stack.pop()
            yield level, node
            stack.extend((level + 1, child) for child in reversed(node.children))


def _start_key(index: int, entry: Mapping[str, Any]) -> tuple[int, float, int]:
    """Sort key: start time (end minus duration), unreadable times last, then recording order."""
    moment = entry_time(entry.get("timestamp"))
    if moment is None:
        return (1, 0.0, index)
    duration = entry.get("duration_ms")
    start = moment.timestamp() - (float(duration) / 1000 if is_number(duration) else 0.0)
    return (0, start, index)


def trace(trace_id: str, path: PathArg = None) -> list[TraceNode]:
    """The tree of executions of one trace: its roots, each with its children.

    A child's ``parent_span_id`` is its parent's ``span_id``; entries whose parent
    is not in the file (or who have none) are roots. Siblings are in order of
    start time. Returns [] when no entry has this trace id.
    """
    given: object = trace_id
    if not isinstance(given, str):
        msg = f"trace_id must be a string, got {type(given).__name__}"
        raise TypeError(msg)
    entries = _scan_entries(resolve_path(path), make_filters(trace_id=trace_id))
    order = sorted(range(len(entries)), key=lambda i: _start_key(i, entries[i]))
    nodes = [TraceNode(entries[i]) for i in order]
    by_span: dict[str, TraceNode] = {}
    for node in nodes:
        span = node.span_id
        if isinstance(span, str):
            by_span.setdefault(span, node)
    roots: list[TraceNode] = []
    parent_of: dict[int, TraceNode] = {}
    for node in nodes:
        parent_id = node.entry.get("parent_span_id")
        parent = by_span.get(parent_id) if isinstance(parent_id, str) else None
        if parent is None or parent is node:
            roots.append(node)
        else:
            parent.children.append(node)
            parent_of[id(node)] = parent
    # A cycle of parent links (damaged data) has no root: its members become roots.
    reached = {id(node) for root in roots for _, node in root.walk()}
    for node in nodes:
        if id(node) not in reached:
            siblings = parent_of[id(node)].children
            siblings[:] = [child for child in siblings if child is not node]
            roots.append(node)
            reached.update(id(item) for _, item in node.walk())
    position = {id(node): index for index, node in enumerate(nodes)}
    roots.sort(key=lambda root: position[id(root)])
    return roots
