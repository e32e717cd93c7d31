"""Time buckets: the raw ones counted while reading, and the one the charts show.

While reading, entries are counted per UTC timestamp prefix (minute ``2025-01-06T14:05``,
hour, day, month or year): a canonical timestamp's first bytes, so grouping costs
no parsing. The prefix gets shorter (coarser) when the span selected so far would need
more than `RAW_LIMIT` of them. The charts then use the finest unit of `DISPLAY`
that is no finer than the raw prefix and needs at most `MAX_BUCKETS` buckets.
Every display unit is a whole number of raw buckets, so regrouping is exact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Final

__all__ = [
    "DISPLAY",
    "MAX_BUCKETS",
    "PREFIXES",
    "RAW_LIMIT",
    "DisplayUnit",
    "choose_unit",
    "coarser_prefix",
    "prefix_start",
    "utc_moment",
    "utc_prefix",
]

PREFIXES: Final = (16, 13, 10, 7, 4)
"""Raw bucket prefixes of an ISO timestamp: minute, hour, day, month, year."""
_PREFIX_SECONDS: Final = {16: 60, 13: 3600, 10: 86_400, 7: 31 * 86_400, 4: 366 * 86_400}
_PREFIX_FORMAT: Final = {
    16: "%Y-%m-%dT%H:%M",
    13: "%Y-%m-%dT%H",
    10: "%Y-%m-%d",
    7: "%Y-%m",
    4: "%Y",
}
_DIGITS: Final = re.compile(rb"[0-9]{4}(?:-[0-9]{2}(?:-[0-9]{2}(?:T[0-9]{2}(?::[0-9]{2})?)?)?)?")
_FIELD_AT: Final = (5, 8, 11, 14)
"""Where month, day, hour and minute start in a raw bucket."""
RAW_LIMIT: Final = 1500
"""Raw buckets a span may need before the prefix gets coarser (bounds memory)."""
MAX_BUCKETS: Final = 120
"""The charts show at most about this many buckets."""
_ORIGIN: Final = 345_600
"""Fixed-size buckets count from Monday 1970-01-05 00:00 UTC: weeks start on Monday."""
_FIRST_MONTH: Final = 12
"""January of year 1, datetime's first month: a bucket that would start earlier starts there."""
_LAST_MONTH: Final = 9999 * 12 + 11
"""December of year 9999, datetime's last month."""


@dataclass(frozen=True)
class DisplayUnit:
    """A bucket size of the charts: fixed seconds, or a whole number of calendar months."""

    name: str
    prefix: int
    """The longest raw prefix it can be built from."""
    seconds: int
    """Its length when fixed; 0 for calendar units."""
    months: int = 0
    """A calendar unit's length in months (0 for fixed ones)."""

    def start(self, moment: datetime) -> float:
        """The start (epoch seconds) of the bucket that holds moment (UTC)."""
        if self.seconds:
            stamp = moment.timestamp()
            return _ORIGIN + (stamp - _ORIGIN) // self.seconds * self.seconds
        index = _month_index(moment) // self.months * self.months
        return _month_start(max(index, _FIRST_MONTH)).timestamp()

    def starts(self, first: float, last: float) -> list[float]:
        """Every bucket start from first to last (both bucket starts): the empty ones too,
        so that the charts can show a bucket without executions as such."""
        if self.seconds:
            return [
                first + n * self.seconds for n in range(int((last - first) // self.seconds) + 1)
            ]
        found = []
        index = _month_index(utc_moment(first))
        while index <= _LAST_MONTH and (start := _month_start(index).timestamp()) <= last:
            found.append(start)
            index = (index // self.months + 1) * self.months
        return found


def _month_index(moment: datetime) -> int:
    """Months since January of year 0: calendar buckets are whole multiples of it."""
    return moment.year * 12 + moment.month - 1


def _month_start(index: int) -> datetime:
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=timezone.utc)


DISPLAY: Final = (
    DisplayUnit("minute", 16, 60),
    DisplayUnit("5 minutes", 16, 300),
    DisplayUnit("15 minutes", 16, 900),
    DisplayUnit("hour", 13, 3600),
    DisplayUnit("6 hours", 13, 21_600),
    DisplayUnit("day", 10, 86_400),
    DisplayUnit("week", 10, 604_800),
    DisplayUnit("month", 7, 0, 1),
    DisplayUnit("year", 4, 0, 12),
    DisplayUnit("10 years", 4, 0, 120),
    DisplayUnit("100 years", 4, 0, 1200),
)
"""Finest first. The coarsest fits datetime's whole range (years 1 to 9999) in MAX_BUCKETS."""


def coarser_prefix(prefix: int, first: float, last: float) -> int:
    """The raw prefix to count with so that first..last needs at most RAW_LIMIT buckets."""
    index = PREFIXES.index(prefix)
    while index < len(PREFIXES) - 1 and last - first > RAW_LIMIT * _PREFIX_SECONDS[prefix]:
        index += 1
        prefix = PREFIXES[index]
    return prefix


def choose_unit(prefix: int, first: float | None, last: float | None) -> DisplayUnit:
    """The finest display unit built from raw buckets of prefix that fits first..last."""
    span = 0.0 if first is None or last is None else last - first
    for unit in DISPLAY:
        if unit.prefix > prefix:
            continue
        size = unit.seconds or unit.months * 31 * 86_400
        if span / size <= MAX_BUCKETS:
            return unit
    return DISPLAY[-1]


def utc_moment(seconds: float) -> datetime:
    """Epoch seconds as an aware UTC datetime, held to datetime's range.

    The seconds of a time in year 1 or 9999 can fall just outside it (a float near
    the end of 9999 rounds up to year 10000): the page shows the nearest date instead.
    """
    try:
        return datetime.fromtimestamp(seconds, timezone.utc)
    except (OverflowError, ValueError, OSError):
        return (datetime.min if seconds < 0 else datetime.max).replace(tzinfo=timezone.utc)


def utc_prefix(moment: datetime, prefix: int) -> bytes:
    """The raw bucket of an aware moment: its UTC ISO text cut to prefix."""
    text = moment.astimezone(timezone.utc).isoformat()
    return text[:prefix].encode()


def prefix_start(raw: bytes) -> datetime | None:
    """The UTC start of a raw bucket; None when the bytes are no time (a garbled timestamp).

    A bucket of ASCII digits in their places (all of them, but for damage) is read by
    position, which strptime would read alike at twenty times the cost.
    """
    fmt = _PREFIX_FORMAT.get(len(raw))
    if fmt is None:
        return None
    try:
        if _DIGITS.fullmatch(raw):
            month, day, hour, minute = (
                int(raw[at : at + 2]) if at < len(raw) else first
                for at, first in zip(_FIELD_AT, (1, 1, 0, 0), strict=True)
            )
            return datetime(int(raw[:4]), month, day, hour, minute, tzinfo=timezone.utc)
        return datetime.strptime(raw.decode("ascii"), fmt).replace(tzinfo=timezone.utc)
    except (UnicodeDecodeError, ValueError):
        return None
