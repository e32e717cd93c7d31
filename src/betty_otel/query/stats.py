"""Per-group stats of the log: count, statuses, failure rate, duration percentiles.

Stats must read every entry. Canonical lines are matched a block at a time by the
scanner's regex, which extracts the few fields needed in C; captures are grouped
by their raw bytes and decoded once per group. Every other line goes through the
store's tolerant parser, so the result is the same as parsing every entry, 6-8x
faster (see ``benchmarks/bench_query.py``).
"""

from __future__ import annotations

import logging
import math
import re
from array import array
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import orjson

from betty_otel._entry import ERROR_STATUSES, NUMBER_TYPES, canonical_status
from betty_otel._store import Damage, resolve_path, telemetry_file_of, warn_damage
from betty_otel.query.filters import FilterArgs, Filters, PathArg, filters_of
from betty_otel.query.scan import LinePattern, line_pattern, scan_entries, scan_fd, scan_files

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["GROUP_KEYS", "MISSING", "GroupBy", "GroupStats", "stats"]

logger = logging.getLogger(__name__)

GroupBy = Literal["skill", "caller", "status"]

GROUP_KEYS: Final = ("skill", "caller", "status")
MISSING: Final = "(none)"
"""How stats name a missing status in `GroupStats.statuses`."""

_consume: Final = deque[Any](maxlen=0).extend
"""Run an iterator to its end, keeping nothing."""


class _Inexact(Exception):  # noqa: N818 - internal signal, never escapes this module
    """A canonical row could not be decoded exactly: read the file the exact way."""


@dataclass(frozen=True)
class GroupStats:
    """Aggregates of one group (one skill, caller or status).

    Percentiles are exact, by linear interpolation between the two nearest ranks
    (numpy's default "linear" method, DuckDB's ``quantile_cont``): for sorted
    durations d[0..n-1], the q-th percentile is at rank (n - 1) * q / 100.
    Durations that are not numbers are counted but left out of the duration
    figures, which are None when a group has no numeric duration. ``key`` is None
    for entries without the grouping key; a missing status counts as ``"(none)"``.

    Statuses count by their canonical status (`betty_otel._entry.canonical_status`):
    the ``"failed"`` of older Betty tools is a failure, in ``statuses``,
    ``failures`` and, with ``by="status"``, in the group ``"failure"``. The words
    as the file holds them are kept in ``original_statuses``. A word that is no
    known status stays its own status, never counted as a success or a failure.
    """

    key: str | None
    """The group: a skill, caller or status."""
    count: int
    """Entries in the group."""
    statuses: dict[str, int]
    """Entries per canonical status, most frequent first."""
    original_statuses: dict[str, int]
    """Entries per status word as written in the file (``failed``, ``failure``...),
    most frequent first; the same as statuses when the file holds only Betty's words."""
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
        canonical: Counter[str] = Counter()
        for word, count in self.statuses.items():
            canonical[canonical_status(word)] += count
        failures = sum(n for status, n in canonical.items() if status in ERROR_STATUSES)
        return GroupStats(
            key=key,
            count=self.count,
            statuses=_most_first(canonical),
            original_statuses=_most_first(self.statuses),
            failures=failures,
            failure_rate=failures / self.count if self.count else 0.0,
            durations=len(values),
            p50=_percentile(values, 50),
            p95=_percentile(values, 95),
            p99=_percentile(values, 99),
            max=float(values[-1]) if values else None,
            mean=sum(values) / len(values) if values else None,
        )


def _most_first(counts: Mapping[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


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
        """The group of key and one status word (by status, key is that word: made canonical)."""
        if self.by == "status" and key is not None:
            key = canonical_status(key)
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
    telemetry_file: PathArg = None,
    *,
    by: GroupBy = "skill",
    filters: Filters | None = None,
    path: PathArg = None,
    **filter_args: Unpack[FilterArgs],
) -> dict[str | None, GroupStats]:
    """Per-group count, count per status, failure rate and duration percentiles.

    Groups are the values of ``by`` (skill, caller or status); an entry without
    that key falls in the group None. Largest groups first. The filters are the
    keywords of `query` (``filters``, from `make_filters`, replaces them); with
    ``ignore_case`` they select regardless of case, and groups stay as written.
    Reads every entry (all rotated files included). ``path`` is the deprecated
    name of ``telemetry_file``.

    The result equals parsing every entry, with one exception no writer produces:
    a canonical line damaged in place between the fields stats reads and its
    closing brace is counted here though `query` skips it (``check`` reports it).

    Raises:
        ValueError / TypeError: an invalid ``by`` or filter.
    """
    if by not in GROUP_KEYS:
        msg = f"by must be one of: {', '.join(GROUP_KEYS)}; got {by!r}"
        raise ValueError(msg)
    filters = filters_of(filters, filter_args)
    base = resolve_path(telemetry_file_of(telemetry_file, path))
    total = _Accumulator(by, filters)
    if filters.trace_id is not None:  # few entries: find them, then count them one by one
        for entry in scan_entries(base, filters):
            total.add_entry(entry)
        return total.result()
    timed = filters.since is not None or filters.until is not None
    with_caller = by == "caller" or filters.caller is not None
    pattern = line_pattern(stamp=timed, caller=with_caller)

    def on_file(fd: int, size: int, file: Path) -> None:
        for exact in (False, True):
            try:
                partial, damage = _file_stats(fd, size, total, pattern, exact=exact)
            except _Inexact:
                logger.debug("%s: unusual canonical lines; reading it entry by entry", file)
                continue
            report = warn_damage(file)
            for item in damage:
                report(item)
            total.merge(partial)
            return

    scan_files(base, on_file)
    return total.result()


def _file_stats(
    fd: int, size: int, total: _Accumulator, pattern: LinePattern, *, exact: bool
) -> tuple[_Accumulator, list[Damage]]:
    """One file's stats (grouped as total is) and the damage found in it.

    Raises:
        _Inexact: a canonical capture could not be decoded exactly (only when not exact).
    """
    partial = _Accumulator(total.by, total.filters)
    raw = _RawStats(total.filters, pattern.stamp, pattern.caller)
    damage: list[Damage] = []
    for found in scan_fd(fd, size, pattern, fast=not exact):
        if isinstance(found, Damage):
            damage.append(found)
            continue
        raw.add(found.columns)
        for entry in found.entries:
            partial.add_entry(entry)
    raw.into(partial)
    return partial, damage
