"""Which entries to select: one definition shared by query, stats, trace and the CLI.

`FilterArgs` is the one list of filter keywords: every reading function takes
them as ``**filter_args: Unpack[FilterArgs]`` and hands them to `make_filters`,
which checks and normalises them once (times, text values, durations, case) into
a `Filters`. So a new filter is added here only, and the CLI's ``query``,
``stats``, ``report`` and ``export`` select entries identically.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Final, TypedDict

from betty_otel._entry import canonical_status, is_finite_number, is_number, value_text
from betty_otel._timestamps import entry_time, parse_iso_time

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "FilterArgs",
    "FilterOptions",
    "Filters",
    "PathArg",
    "TextFilter",
    "TimeArg",
    "check_limit",
    "filters_of",
    "make_filters",
    "parse_time",
]

PathArg = str | os.PathLike[str] | None
TextFilter = str | Iterable[str] | None
TimeArg = datetime | str | None


class FilterOptions(TypedDict, total=False):
    """The filter keywords besides skill, status and caller (see `FilterArgs`)."""

    since: TimeArg
    """``since <= timestamp``: a datetime, an ISO 8601 string or a relative time (``15m``)."""
    until: TimeArg
    """``timestamp < until`` (same forms as since)."""
    trace_id: TextFilter
    """Only these traces (exact ids)."""
    min_duration_ms: float | None
    """Only executions that took at least this long."""
    ignore_case: bool
    """Compare skill, status and caller without regard to case (``cli`` matches ``CLI``)."""


class FilterArgs(FilterOptions, total=False):
    """Every filter keyword of `query`, `iter_query`, `stats`, `report` and `make_filters`.

    skill, status, caller: a value or a collection of values; a status matches by
    its canonical status (``failure`` matches ``failed``).
    """

    skill: TextFilter
    status: TextFilter
    caller: TextFilter


FILTER_KEYWORDS: Final = frozenset(FilterArgs.__annotations__)

_UNITS: Final = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_RELATIVE: Final = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", re.IGNORECASE)
_TIME_HELP: Final = (
    "expected a datetime, an ISO 8601 time such as 2025-10-24T14:30:00+00:00, "
    "or a relative time such as 30s, 15m, 2h, 7d, 1w"
)


def parse_time(value: datetime | str, *, now: datetime | None = None) -> datetime:
    """Turn a datetime, an ISO 8601 string or a relative time (``15m``) into an aware datetime.

    Relative times count back from now: ``30s``, ``15m``, ``2h``, ``7d``, ``1w``.
    A datetime or ISO string without an offset is taken as UTC, the file's default.

    Raises:
        ValueError: the text is none of those (the message says what is accepted), or
            the time is no date in UTC.
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
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
    try:
        moment.astimezone(timezone.utc)
    except OverflowError:  # year 1 with a positive offset, year 9999 with a negative one
        msg = f"Invalid time {value!r}: it is no date in UTC (before the year 1 or after 9999)"
        raise ValueError(msg) from None
    return moment


def _text_set(name: str, value: TextFilter, fold: bool = False) -> frozenset[str] | None:
    if value is None:
        return None
    items: tuple[object, ...] = (value,) if isinstance(value, str) else tuple(value)
    for item in items:
        if not isinstance(item, str):
            msg = f"{name} filter values must be strings, got {type(item).__name__}"
            raise TypeError(msg)
    texts = (item for item in items if isinstance(item, str))
    return frozenset(map(str.casefold, texts) if fold else texts)


@dataclass(frozen=True)
class Filters:
    """Which entries to select; None means "any". Build with `make_filters`.

    Text filters match when the entry's value, as readers show it (`value_text`: a
    string as it is, any other value as its JSON with sorted keys), is in the set (so
    an empty set matches nothing; a missing value never matches). Statuses compare by
    their canonical status (`betty_otel._entry.canonical_status`): ``failure`` matches
    the ``"failed"`` of older Betty tools and ``Failed`` matches ``failure``; an unknown
    word matches only itself. With ``ignore_case``, skill, status and caller are compared
    casefolded (the sets hold casefolded values); trace ids always compare exactly.
    Times select ``since <= timestamp < until``; an
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
    ignore_case: bool = False

    @property
    def empty(self) -> bool:
        """True when every entry matches."""
        return self in (_NO_FILTERS, _NO_FILTERS_ANY_CASE)

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
        inside = _in_folded if self.ignore_case else _in
        return (
            inside(self.skill, skill)
            and (
                self.status is None
                or inside(
                    self.status, canonical_status(status) if isinstance(status, str) else status
                )
            )
            and inside(self.caller, caller)
        )

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
        """The min_duration_ms filter: the duration must be a finite number >= it."""
        if self.min_duration_ms is None:
            return True
        return is_finite_number(duration) and duration >= self.min_duration_ms


_NO_FILTERS: Final = Filters()
_NO_FILTERS_ANY_CASE: Final = Filters(ignore_case=True)


def _in(allowed: frozenset[str] | None, value: object) -> bool:
    """value is in allowed, compared as readers show and group it (`value_text`): a skill
    ``123`` or ``{"b":1,"a":2}`` that stats shows as a group is selected by that text."""
    if allowed is None:
        return True
    if isinstance(value, str):
        return value in allowed
    return value is not None and value_text(value) in allowed


def _in_folded(allowed: frozenset[str] | None, value: object) -> bool:
    if allowed is None:
        return True
    if isinstance(value, str):
        return value.casefold() in allowed
    return value is not None and value_text(value).casefold() in allowed


def make_filters(*, now: datetime | None = None, **filter_args: Unpack[FilterArgs]) -> Filters:
    """Check and normalise filter keywords (`FilterArgs`; see `query`) into a `Filters`.

    Raises:
        ValueError: an unreadable time, since after until, a non-finite duration.
        TypeError: a filter of the wrong type, or a keyword that is no filter.
    """
    unknown = filter_args.keys() - FILTER_KEYWORDS
    if unknown:
        names = ", ".join(sorted(FILTER_KEYWORDS))
        msg = f"unknown filter {sorted(unknown)[0]!r}; the filters are: {names}"
        raise TypeError(msg)
    moment = now or datetime.now(timezone.utc)
    since, until = filter_args.get("since"), filter_args.get("until")
    start = parse_time(since, now=moment) if since is not None else None
    end = parse_time(until, now=moment) if until is not None else None
    if start is not None and end is not None and start > end:
        msg = f"since ({start.isoformat()}) is after until ({end.isoformat()})"
        raise ValueError(msg)
    fold: object = filter_args.get("ignore_case", False)  # callers may pass anything
    if not isinstance(fold, bool):
        msg = f"ignore_case must be True or False, got {type(fold).__name__}"
        raise TypeError(msg)
    statuses = _text_set("status", filter_args.get("status"))
    if statuses is not None:
        statuses = frozenset(map(canonical_status, statuses))
        statuses = frozenset(map(str.casefold, statuses)) if fold else statuses
    return Filters(
        skill=_text_set("skill", filter_args.get("skill"), fold),
        status=statuses,
        caller=_text_set("caller", filter_args.get("caller"), fold),
        trace_id=_text_set("trace_id", filter_args.get("trace_id")),
        since=start,
        until=end,
        min_duration_ms=_min_duration(filter_args.get("min_duration_ms")),
        ignore_case=fold,
    )


def _min_duration(value: object) -> float | None:
    """The min_duration_ms filter checked: None or a finite number."""
    if value is None:
        return None
    if not is_number(value):
        msg = f"min_duration_ms must be a number, got {type(value).__name__}"
        raise TypeError(msg)
    minimum = float(value)
    if not math.isfinite(minimum):
        msg = f"min_duration_ms must be finite, got {value!r}"
        raise ValueError(msg)
    return minimum


def filters_of(filters: Filters | None, filter_args: FilterArgs) -> Filters:
    """The filters of a reading function: its ``filters=``, else its filter keywords.

    Raises:
        TypeError: both were given (``filters`` replaces the keywords; one would be lost).
        ValueError: see `make_filters`.
    """
    if filters is None:
        return make_filters(**filter_args)
    if filter_args:
        msg = f"give filters= or filter keywords ({', '.join(sorted(filter_args))}), not both"
        raise TypeError(msg)
    return filters


def check_limit(limit: int | None) -> int | None:
    """Check a result limit: None (no limit) or an int >= 0."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int):
        msg = f"limit must be an int or None, got {type(limit).__name__}"
        raise TypeError(msg)
    if limit < 0:
        msg = f"limit must be >= 0, got {limit}"
        raise ValueError(msg)
    return limit
