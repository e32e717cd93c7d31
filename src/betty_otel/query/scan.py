"""Newest-first queries of the log: `iter_query` and `query`.

- `iter_query` streams from the end of the file (newest first, in recording
  order); `query` returns the newest by timestamp and stops reading a few entries
  past its limit, so "the 10 newest failures" reads a few blocks however large
  the log is.

Whole-log reads (stats, traces, the report) go forward through the block scanner,
`betty_otel.query.blocks`.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from betty_otel._store import iter_entries, resolve_path, telemetry_file_of
from betty_otel._timestamps import entry_time
from betty_otel.query.filters import FilterArgs, Filters, PathArg, check_limit, filters_of

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["ORDER_WINDOW", "iter_query", "query"]


def iter_query(
    telemetry_file: PathArg = None,
    *,
    filters: Filters | None = None,
    newest_first: bool = True,
    rotated: bool = True,
    path: PathArg = None,
    **filter_args: Unpack[FilterArgs],
) -> Iterator[dict[str, Any]]:
    """Stream the entries that pass the filters in the order they were written: the
    last written first (newest_first=False: the first written first).

    Not sorted by timestamp: file order can differ from time order by a few seconds
    when processes batch their writes; `query` orders by timestamp.

    Lazy: the file is read from the end block by block as the caller iterates,
    so stopping early reads only the end of the file. The filters are the
    keywords of `query` (``filters``, from `make_filters`, replaces them). With
    rotated, the rotated backups follow the current file. A torn tail (an append
    in progress) is never yielded. The arguments are checked when this is called.
    ``path`` is the deprecated name of ``telemetry_file``.
    """
    chosen = filters_of(filters, filter_args)
    base = resolve_path(telemetry_file_of(telemetry_file, path))
    return _iter_query(base, chosen, newest_first=newest_first, rotated=rotated)


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


ORDER_WINDOW: Final = 30.0
"""Seconds by which an entry's timestamp may trail the entries written before it.

An entry's timestamp is when its execution ended; it reaches the file when its
writer appends it (a batching process waits up to its delay, 1 s by default, and
a writer may wait for the lock, 10 s by default). So file order and time order
differ by at most this window, with a wide margin."""


def query(
    telemetry_file: PathArg = None,
    *,
    limit: int | None = None,
    filters: Filters | None = None,
    path: PathArg = None,
    **filter_args: Unpack[FilterArgs],
) -> list[dict[str, Any]]:
    """Entries that pass every given filter, newest first by timestamp, at most limit of them.

    Entries are ordered by their timestamp, newest first; equal timestamps, and
    entries without a readable one (which come last), keep file order (the later
    written first). The file is read from its end, and reading stops once limit
    entries are found and an entry (any entry) is read whose timestamp is more
    than ORDER_WINDOW seconds older than the oldest of them: every entry written
    before that one ended before the limit's oldest, so none of them can belong.
    In the usual case that is a few entries past the limit.

    Args:
        telemetry_file: the log; None means $BETTY_TELEMETRY_FILE or the default.
            A missing file is an empty log.
        limit: at most this many (None: all).
        filters: from `make_filters`; replaces the filter keywords.
        path: the deprecated name of telemetry_file.
        **filter_args: the filters (`FilterArgs`), each None for "any":
            skill, status, caller, trace_id: a value or a collection of values. A
            status matches by its canonical status (``failure`` matches ``failed``).
            since, until: ``since <= timestamp < until``; each a datetime, an ISO 8601
            string or a relative time such as ``15m``, ``2h``, ``7d`` (before now).
            min_duration_ms: only entries that took at least this long.
            ignore_case: compare skill, status and caller regardless of case.

    Raises:
        ValueError / TypeError: an invalid filter or limit (before reading anything).
        StoreError: the file is not a regular file or cannot be read.
    """
    count = check_limit(limit)
    chosen = filters_of(filters, filter_args)
    base = resolve_path(telemetry_file_of(telemetry_file, path))
    if count == 0:
        return []
    return _newest(base, chosen, count)


def _newest(path: Path, filters: Filters, count: int | None) -> list[dict[str, Any]]:
    """The count newest matching entries by timestamp (all when count is None)."""
    # (seconds, -position, entry): the largest is the newest; positions are unique,
    # so entries are never compared. A heap of the count newest, oldest on top.
    found: list[tuple[float, int, dict[str, Any]]] = []
    for position, entry in enumerate(iter_entries(path)):
        seconds = _seconds(entry.get("timestamp"))
        if (
            count is not None
            and len(found) == count
            and seconds != _NO_TIME
            and seconds + ORDER_WINDOW < found[0][0]
        ):
            break  # written before an entry that ended before the oldest kept: none can belong
        if not filters.matches(entry):
            continue
        item = (seconds, -position, entry)
        if count is None or len(found) < count:
            heapq.heappush(found, item)
        elif item[:2] > found[0][:2]:
            heapq.heapreplace(found, item)
    found.sort(key=lambda item: item[:2], reverse=True)
    return [entry for _, _, entry in found]


_NO_TIME: Final = float("-inf")


def _seconds(timestamp: object) -> float:
    """A timestamp as seconds since the epoch; -inf when missing or unreadable."""
    moment = entry_time(timestamp)
    return _NO_TIME if moment is None else moment.timestamp()
