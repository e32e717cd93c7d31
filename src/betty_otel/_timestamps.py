"""An entry's timestamp: written as ISO 8601 with microseconds and offset, read back tolerantly.

Standard library only, like the rest of the schema: writing and reading the log need
no OpenTelemetry. A timestamp is the time its execution ended (see DESIGN.md).
"""

from __future__ import annotations

import functools
from datetime import datetime, timezone, tzinfo

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: a capture does not import typing
if TYPE_CHECKING:
    from typing import Final

__all__ = ["entry_time", "format_timestamp", "parse_iso_time"]


def format_timestamp(time_ns: int, tz: tzinfo | None = None) -> str:
    """ISO 8601 with microseconds and offset, e.g. ``2025-10-24T14:30:45.123456+00:00``."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    head, offset = _second_stamp(seconds, tz)
    return f"{head}.{nanos // 1000:06d}{offset}"


@functools.lru_cache(maxsize=16)
def _second_stamp(seconds: int, tz: tzinfo | None) -> tuple[str, str]:
    """Date and time, and offset, of one second: cached, since consecutive entries
    almost always share them."""
    text = datetime.fromtimestamp(seconds, tz or timezone.utc).isoformat()
    return text[:19], text[19:]


def parse_iso_time(text: str) -> datetime | None:
    """An ISO 8601 time (a trailing Z too, which Python 3.10 does not accept), or None."""
    if text[-1:] in "zZ" and text:
        text = text[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def entry_time(value: object) -> datetime | None:
    """An entry's timestamp as an aware datetime; None when it is missing or unreadable.

    A time without an offset is UTC, the file's default. A time that is no date in
    UTC (year 1 with a positive offset, year 9999 with a negative one) is unreadable
    too: every moment returned converts to UTC and to seconds without overflowing.
    """
    if not isinstance(value, str):
        return None
    moment = parse_iso_time(value)
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    if moment.year in _EDGE_YEARS:
        try:
            moment.astimezone(timezone.utc)
        except OverflowError:
            return None
    return moment


_EDGE_YEARS: Final = frozenset({datetime.min.year, datetime.max.year})
"""The years in which an offset can move a time out of datetime's range."""
