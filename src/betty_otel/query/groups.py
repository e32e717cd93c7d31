"""The figures of one stats group: counts per status, failure rate, exact duration percentiles.

A group's durations may come as one sorted run (from the stats summary) plus a few
new values: `SortedValues` then finds each rank by a binary search across the two,
so a percentile costs O(log n) instead of a sort of every duration.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from betty_otel._entry import ERROR_STATUSES, canonical_status, is_finite_number

__all__ = [
    "MISSING",
    "Group",
    "GroupStats",
    "SortedDurations",
    "SortedValues",
    "most_first",
    "numbers",
    "ordered",
]

MISSING: Final = "(none)"
"""How stats name a missing status in `GroupStats.statuses`."""


@dataclass(frozen=True)
class GroupStats:
    """Aggregates of one group (one skill, caller or status).

    Percentiles are exact, by linear interpolation between the two nearest ranks
    (numpy's default "linear" method, DuckDB's ``quantile_cont``): for sorted
    durations d[0..n-1], the q-th percentile is at rank (n - 1) * q / 100.
    Durations that are not numbers are counted but left out of the duration
    figures, which are None when a group has no numeric duration. ``key`` is None
    for entries without the grouping key; a missing status counts as ``"(none)"``.
    ``mean`` is the floating-point sum over the count: read from the summary, its
    last digits may differ from a whole read's (summation order).

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


@dataclass(frozen=True)
class SortedDurations:
    """Durations in ascending order, and their sum in that order."""

    values: Sequence[float]
    total: float


def ordered(values: Iterable[float]) -> list[float]:
    """values sorted, each -0.0 before every 0.0: the same list whatever order they came in.

    The two zeros compare equal, so a sort alone keeps them in input order, and a read
    in parts (`betty_otel.query.parallel`) would write another summary or percentile sign.
    """
    found = sorted(values)
    low, high = bisect.bisect_left(found, 0.0), bisect.bisect_right(found, 0.0)
    if high > low:
        negative = sum(1 for zero in found[low:high] if math.copysign(1.0, zero) < 0)
        found[low:high] = [-0.0] * negative + [0.0] * (high - low - negative)
    return found


class SortedValues:
    """The sorted union of runs of values, by rank, without sorting it all when it is cheap.

    One long sorted run plus a few loose values: each rank is found by binary search
    across the two. Anything else is sorted whole.
    """

    def __init__(self, runs: Sequence[SortedDurations], loose: Iterable[float]) -> None:
        extra = ordered(loose)
        runs = [run for run in runs if run.values]
        if len(runs) == 1 and len(extra) * 4 <= len(runs[0].values):
            self.big: Sequence[float] = runs[0].values
            self.small: Sequence[float] = extra
            self.total = runs[0].total + sum(extra)
        else:
            self.big = ordered([*(value for run in runs for value in run.values), *extra])
            self.small = []
            self.total = sum(self.big)
        self.size = len(self.big) + len(self.small)

    def at(self, rank: int) -> float:
        """The value of the given rank (0: the smallest)."""
        big, small = self.big, self.small
        if not small:
            return big[rank]
        low, high = max(0, rank + 1 - len(big)), min(rank + 1, len(small))
        while low < high:  # how many of the rank + 1 smallest come from small
            taken = (low + high) // 2
            if small[taken] < big[rank - taken]:
                low = taken + 1
            else:
                high = taken
        from_small = small[low - 1] if low > 0 else -math.inf
        from_big = big[rank - low] if rank - low >= 0 else -math.inf
        return max(from_small, from_big)

    def percentile(self, q: float) -> float | None:
        """Linear interpolation between closest ranks (numpy "linear").

        Between two values whose difference overflows (durations near the float's
        limit, only in a foreign entry) the weighted mean is taken instead: a figure
        between them, never infinity or NaN.
        """
        if not self.size:
            return None
        rank = (self.size - 1) * q / 100
        low = math.floor(rank)
        high = min(low + 1, self.size - 1)
        low_value = self.at(low)
        if high == low:
            return low_value
        high_value, part = self.at(high), rank - low
        found = low_value + (high_value - low_value) * part
        return found if math.isfinite(found) else low_value * (1 - part) + high_value * part

    def mean(self) -> float | None:
        """The mean; the sum's overflow (durations near the float's limit) avoided."""
        if not self.size:
            return None
        found = self.total / self.size
        if math.isfinite(found):
            return found
        return math.fsum(value / self.size for values in (self.big, self.small) for value in values)


@dataclass
class Group:
    """A group being counted: entries, entries per status word, durations (as read)."""

    count: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    durations: array[float] = field(default_factory=lambda: array("d"))
    runs: list[SortedDurations] = field(default_factory=list)
    """Sorted runs of durations (from the summary), besides durations."""

    def add(self, status: str, count: int, durations: Iterable[Any], numeric: bool = False) -> None:
        """Count entries of one status; numeric says durations holds only numbers."""
        self.count += count
        self.statuses[status] = self.statuses.get(status, 0) + count
        self.durations.extend(durations if numeric else numbers(durations))

    def merge(self, other: Group) -> None:
        self.count += other.count
        for status, count in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + count
        self.durations.extend(other.durations)
        self.runs.extend(other.runs)

    def sorted_values(self) -> SortedValues:
        return SortedValues(self.runs, self.durations)

    def finish(self, key: str | None, values: SortedValues | None = None) -> GroupStats:
        values = values or self.sorted_values()
        canonical: Counter[str] = Counter()
        for word, count in self.statuses.items():
            canonical[canonical_status(word)] += count
        failures = sum(n for status, n in canonical.items() if status in ERROR_STATUSES)
        size = values.size
        return GroupStats(
            key=key,
            count=self.count,
            statuses=most_first(canonical),
            original_statuses=most_first(self.statuses),
            failures=failures,
            failure_rate=failures / self.count if self.count else 0.0,
            durations=size,
            p50=values.percentile(50),
            p95=values.percentile(95),
            p99=values.percentile(99),
            max=float(values.at(size - 1)) if size else None,
            mean=values.mean(),
        )


def most_first(counts: Mapping[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def numbers(values: Iterable[Any]) -> list[Any]:
    """The values that are durations to compute with (`is_finite_number`)."""
    return [value for value in values if is_finite_number(value)]
